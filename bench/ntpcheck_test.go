package bench

import (
	"encoding/binary"
	"testing"
	"time"
)

// A reply passes only as a synchronized v4 server answer to one of our
// requests with receive ≤ transmit near the host clock; each broken
// property alone makes it bad.
func TestReplyCheck(t *testing.T) {
	start := time.Now()
	c := replyCheck{start: start}
	el := 5 * time.Millisecond
	wall := start.Add(el).UnixNano()
	ntp := func(ns int64) uint64 {
		return uint64(ns/1e9+ntpUnixOffset)<<32 | (uint64(ns%1e9)<<32)/1e9
	}
	good := func() []byte {
		b := make([]byte, 48)
		b[0], b[1] = 4<<3|4, 2
		binary.BigEndian.PutUint64(b[24:], uint64(2*time.Millisecond)) // our transmit: ns since start
		binary.BigEndian.PutUint64(b[32:], ntp(wall-1000))
		binary.BigEndian.PutUint64(b[40:], ntp(wall-500))
		return b
	}
	if lat, ok := c.check(good(), el, wall); !ok || lat != 3*time.Millisecond {
		t.Fatalf("a good reply: ok %v, latency %v", ok, lat)
	}
	for name, mut := range map[string]func(b []byte){
		"short":              func(b []byte) {},
		"LI 3":               func(b []byte) { b[0] |= 3 << 6 },
		"mode 3":             func(b []byte) { b[0] = 4<<3 | 3 },
		"version 3":          func(b []byte) { b[0] = 3<<3 | 4 },
		"stratum 0 (KoD)":    func(b []byte) { b[1] = 0 },
		"stratum 16":         func(b []byte) { b[1] = 16 },
		"origin not ours":    func(b []byte) { binary.BigEndian.PutUint64(b[24:], uint64(time.Hour)) },
		"zero receive":       func(b []byte) { binary.BigEndian.PutUint64(b[32:], 0) },
		"transmit < receive": func(b []byte) { binary.BigEndian.PutUint64(b[40:], ntp(wall-2000)) },
		"a second late":      func(b []byte) { binary.BigEndian.PutUint64(b[40:], ntp(wall+int64(time.Second))) },
		"before the load":    func(b []byte) { binary.BigEndian.PutUint64(b[32:], ntp(start.UnixNano()-int64(time.Second))) },
	} {
		b := good()
		mut(b)
		if name == "short" {
			b = b[:47]
		}
		if _, ok := c.check(b, el, wall); ok {
			t.Errorf("%s: accepted", name)
		}
		// LI 3 and stratum 0 are the server's honest "cannot serve";
		// everything else is a wrong reply.
		want := name == "LI 3" || name == "stratum 0 (KoD)"
		if got := unsynchronized(b); got != want {
			t.Errorf("%s: counted as unsynchronized %v, want %v", name, got, want)
		}
	}
}
