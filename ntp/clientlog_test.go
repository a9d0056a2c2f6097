package ntp

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// retained is how many of addrs a fresh log of 4-way sets keeps when the
// set is chosen by h: ~3300 of 4096 for a hash that spreads them like a
// random function (1024 sets, E[min(4, Poisson(4))] ≈ 3.22 each).
func retained(addrs []netip.Addr, h func(netip.Addr) uint64) int {
	per := make([]int, clSets)
	n := 0
	for _, a := range addrs {
		s := h(a.Unmap()) % clSets
		if per[s] < clWays {
			per[s]++
			n++
		}
	}
	return n
}

// The client log's keyed hash spreads the address patterns a flood or a
// real population has — one IPv4 /20, one IPv6 /64's interface IDs, many
// /64s with one interface ID — over its sets as a random function would.
// A hash of the address's first eight bytes (constant for IPv4, and for one
// /64) is the negative control: it puts them all in one set.
func TestClientLogHashSpreads(t *testing.T) {
	patterns := map[string][]netip.Addr{}
	for i := range ClientLogSize {
		var v6 [16]byte
		v6[0], v6[1] = 0x20, 0x01
		binary.BigEndian.PutUint64(v6[8:], uint64(i))
		patterns["v4 /20"] = append(patterns["v4 /20"], netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
		patterns["v6 one /64"] = append(patterns["v6 one /64"], netip.AddrFrom16(v6))
		var v6b [16]byte
		v6b[0], v6b[1] = 0x20, 0x01
		binary.BigEndian.PutUint32(v6b[2:], uint32(i)<<8)
		v6b[15] = 1
		patterns["v6 many /64, ::1"] = append(patterns["v6 many /64, ::1"], netip.AddrFrom16(v6b))
	}
	c := newClientLog()
	firstWord := func(a netip.Addr) uint64 { b := a.As16(); return binary.BigEndian.Uint64(b[:8]) }
	for name, addrs := range patterns {
		if n := retained(addrs, c.key.sum); n < 3100 {
			t.Errorf("%s: keyed hash keeps %d of %d, want ~3300", name, n, len(addrs))
		}
		if name != "v6 many /64, ::1" {
			if n := retained(addrs, firstWord); n > clWays {
				t.Errorf("%s: the control kept %d: the pattern does not test the second word", name, n)
			}
		}
	}
	// The log itself keeps what the hash predicts.
	for _, a := range patterns["v4 /20"] {
		c.record(a, Reply, 1)
	}
	kept := 0
	for _, e := range c.e {
		if e.addr.IsValid() {
			kept++
		}
	}
	if want := retained(patterns["v4 /20"], c.key.sum); kept != want {
		t.Errorf("log kept %d, the hash predicts %d", kept, want)
	}
}
