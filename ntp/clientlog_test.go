package ntp

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
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
		c.record(wordsOf(a), Reply, 1)
	}
	kept := 0
	for _, e := range c.e {
		if e.used() {
			kept++
		}
	}
	if want := retained(patterns["v4 /20"], c.key.sum); kept != want {
		t.Errorf("log kept %d, the hash predicts %d", kept, want)
	}
}

// The words the batched server reads from a socket address are wordsOf of
// the address netip decodes from it, and turn back into that address (an
// IPv4 one for the v4-mapped form), for IPv4, IPv6 and v4-mapped IPv6
// senders alike: the log keys a client the same whichever way it came in.
func TestAddrWordsFromSockaddr(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	b := newBatchIO()
	for k := range 3000 {
		var a16 [16]byte
		binary.BigEndian.PutUint64(a16[:8], rng.Uint64())
		binary.BigEndian.PutUint64(a16[8:], rng.Uint64())
		var a4 [4]byte
		copy(a4[:], a16[12:])
		switch k % 3 {
		case 0:
			s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&b.names[0]))
			*s4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a4}
		case 1:
			b.names[0] = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a16}
		case 2:
			m := netip.AddrFrom4(a4).As16() // ::ffff:a.b.c.d
			b.names[0] = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: m}
		}
		ap, w := b.addrOf(0)
		if w != wordsOf(ap.Addr()) || w.addr() != ap.Addr() {
			t.Fatalf("case %d: %v: words %x, wordsOf %x, back %v", k%3, ap, w, wordsOf(ap.Addr()), w.addr())
		}
		if k%3 != 1 && (!ap.Addr().Is4() || ap.Addr().As4() != a4 || w != wordsOf(netip.AddrFrom4(a4).Unmap())) {
			t.Fatalf("case %d: %v is not the IPv4 %v", k%3, ap, a4)
		}
		if k%3 == 2 && wordsOf(netip.AddrFrom16(b.names[0].Addr)) != w { // unmapped by wordsOf too
			t.Fatalf("v4-mapped %v: words differ from its IPv4 form", netip.AddrFrom16(b.names[0].Addr))
		}
	}
}
