package ntp

import (
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/ntp/engine"
	"github.com/meridiantime/meridian/truetime"
)

// shortStepNS is one unit of the NTP short format (2^-16 s) in ns.
const shortStepNS = 1e9 / 65536.0

// An exchange built from known times — the client sends at t1, the server,
// θ ahead, receives after d1 and replies proc later, the reply arrives after
// d2 — is encoded by our packet encoder, decoded by the client, and the
// sample carries what was encoded: t2 and t3 within NTP-timestamp rounding
// (1 ns), θ_measured = θ + (d1 − d2)/2 within 1 ns, δ = d1 + d2 within 2 ns,
// root delay and dispersion rounded up by less than one short-format unit,
// stratum, reference ID and leap unchanged. Replies that an honest
// synchronized server sends are accepted; kiss-o'-death and unsynchronized
// replies are refused with their own error.
func FuzzClientResponseRoundTrip(f *testing.F) {
	f.Add(int64(-1000), uint32(50_000), uint32(1000), uint32(50_000), uint32(20_000), uint32(30_000), uint8(2), uint8(0), uint32(0x7f000001), uint32(0))
	f.Add(int64(9_999_999_999), uint32(2_999_999_999), uint32(0), uint32(0), uint32(math.MaxUint32), uint32(math.MaxUint32), uint8(15), uint8(1), uint32(0), uint32(math.MaxUint32))
	f.Add(int64(-5e9), uint32(0), uint32(7), uint32(1), uint32(0), uint32(0), uint8(1), uint8(2), uint32(0x47505300), uint32(999))
	f.Add(int64(0), uint32(1), uint32(1), uint32(1), uint32(1), uint32(1), uint8(0), uint8(3), engine.KissRATE, uint32(1))
	f.Add(int64(0), uint32(1), uint32(1), uint32(1), uint32(1), uint32(1), uint8(16), uint8(0), uint32(0), uint32(1))
	f.Fuzz(func(t *testing.T, theta int64, d1, proc, d2, rootDelay, rootDisp uint32, stratum, leap uint8, refID, t1Off uint32) {
		theta %= 10e9 // |θ| < 10 s
		a, p, b := int64(d1%3e9), int64(proc%3e9), int64(d2%3e9)
		leap &= 3
		t1 := now + int64(t1Off)
		t2 := t1 + theta + a
		t3 := t2 + p
		t4 := t1 + a + p + b

		c := engine.NewClient(engine.ClientConfig{}, 7)
		req, resp := make([]byte, 48), make([]byte, 48)
		c.Request(req, t1)
		rq, _ := engine.DecodeHeader(req)
		h := engine.Header{Leap: leap, Version: 4, Mode: engine.ModeServer, Stratum: stratum, RefID: refID,
			RootDelay: engine.NSToShort(int64(rootDelay)), RootDisp: engine.NSToShort(int64(rootDisp)),
			Origin: rq.Transmit, Receive: engine.ToNTP(t2), Transmit: engine.ToNTP(t3)}
		h.Encode(resp)
		s, err := c.Response(resp, t4)

		switch {
		case stratum == engine.StratumKoD:
			if !errors.Is(err, engine.ErrKiss) && !errors.Is(err, engine.ErrKissRate) && !errors.Is(err, engine.ErrKissStop) {
				t.Fatalf("kiss-o'-death %q: %v", engine.KissCode(refID), err)
			}
			return
		case leap == engine.LeapUnsync || stratum >= engine.StratumNone:
			if !errors.Is(err, engine.ErrUnsyncSource) {
				t.Fatalf("unsynchronized server (leap %d stratum %d): %v", leap, stratum, err)
			}
			return
		case err != nil:
			// Only a path delay that rounding can make negative may be refused.
			if a+b >= 2 || !errors.Is(err, engine.ErrBadTimestamps) {
				t.Fatalf("honest reply refused (θ %d, d1 %d, proc %d, d2 %d): %v", theta, a, p, b, err)
			}
			return
		}
		near := func(name string, got, want, tol float64) {
			if math.Abs(got-want) > tol {
				t.Fatalf("%s: decoded %.1f, encoded %.1f (tolerance %.1f)", name, got, want, tol)
			}
		}
		if s.T1NS != t1 || s.T4NS != t4 {
			t.Fatalf("local stamps changed: %d %d, want %d %d", s.T1NS, s.T4NS, t1, t4)
		}
		near("t2", float64(s.T2NS), float64(t2), 1)
		near("t3", float64(s.T3NS), float64(t3), 1)
		near("offset", s.OffsetNS(), float64(theta)+float64(a-b)/2, 1)
		near("delay", float64(s.DelayNS()), float64(a+b), 2)
		for _, r := range []struct {
			name      string
			got, sent int64
		}{{"root delay", s.RootDelayNS, int64(rootDelay)}, {"root dispersion", s.RootDispersionNS, int64(rootDisp)}} {
			if up := r.got - r.sent; up < 0 || float64(up) > shortStepNS+0.5 {
				t.Fatalf("%s: decoded %d, encoded %d: must round up by less than one short-format unit", r.name, r.got, r.sent)
			}
		}
		wantLeap := map[uint8]truetime.Leap{engine.LeapNone: truetime.LeapNone, engine.LeapInsert: truetime.LeapInsert, engine.LeapDelete: truetime.LeapDelete}[leap]
		if s.Stratum != stratum || s.RefID != refID || s.Leap != wantLeap {
			t.Fatalf("stratum %d refid %#x leap %v, encoded %d %#x %d", s.Stratum, s.RefID, s.Leap, stratum, refID, leap)
		}
	})
}

// Whatever bytes arrive, an accepted reply's sample holds exactly the RFC
// 5905 fields at their byte offsets (read here directly, not through the
// packet parser), echoes our origin, and is a valid sample.
func FuzzClientResponse(f *testing.F) {
	resp := make([]byte, 48)
	req := make([]byte, 48)
	c := engine.NewClient(engine.ClientConfig{}, 7)
	c.Request(req, now)
	NewServer(synced(), RateLimit{}, nil).handle(nil, req, resp, now, now, client)
	f.Add(resp)
	f.Add(resp[:20])
	f.Add(make([]byte, 60))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := engine.NewClient(engine.ClientConfig{}, 7) // same seed: same origin as the seed reply
		req := make([]byte, 48)
		c.Request(req, now)
		s, err := c.Response(b, now+1000)
		if err != nil {
			return
		}
		be32 := func(o int) uint32 { return binary.BigEndian.Uint32(b[o:]) }
		be64 := func(o int) uint64 { return binary.BigEndian.Uint64(b[o:]) }
		switch {
		case b[0]&7 != engine.ModeServer:
			t.Fatalf("accepted mode %d", b[0]&7)
		case be64(24) != binary.BigEndian.Uint64(req[40:]):
			t.Fatalf("accepted origin %x, we sent %x", be64(24), binary.BigEndian.Uint64(req[40:]))
		case s.T1NS != now || s.T4NS != now+1000:
			t.Fatalf("local stamps %d %d", s.T1NS, s.T4NS)
		case s.T2NS != engine.ToUnixNS(be64(32), now) || s.T3NS != engine.ToUnixNS(be64(40), now):
			t.Fatalf("t2/t3 %d %d, wire %d %d", s.T2NS, s.T3NS, engine.ToUnixNS(be64(32), now), engine.ToUnixNS(be64(40), now))
		case s.RootDelayNS != engine.ShortToNS(be32(4)) || s.RootDispersionNS != engine.ShortToNS(be32(8)):
			t.Fatalf("root delay/dispersion %d %d, wire %d %d", s.RootDelayNS, s.RootDispersionNS, engine.ShortToNS(be32(4)), engine.ShortToNS(be32(8)))
		case s.Stratum != b[1] || s.RefID != be32(12):
			t.Fatalf("stratum %d refid %#x, wire %d %#x", s.Stratum, s.RefID, b[1], be32(12))
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("accepted an invalid sample: %v", err)
		}
	})
}

// The server answers nothing larger than the request (no amplification); a
// reply decodes as a server packet that echoes the request's version, poll
// and transmit timestamp; a normal reply carries the receive stamp (within
// NTP-timestamp rounding), transmits at max(TrueTime midpoint, receive) and
// advertises root delay/2 + root dispersion ≥ ε; a rate-limited one (with
// kod set and no leak) is a RATE kiss-o'-death.
func FuzzServerHandle(f *testing.F) {
	f.Add(clientReq(4, engine.ModeClient, 1), int64(0))
	f.Add(clientReq(2, 7, 1), int64(5))
	f.Add(append(clientReq(4, engine.ModeClient, 1), make([]byte, 20)...), int64(-20_000))
	f.Add([]byte{0x1b}, int64(1))
	f.Fuzz(func(t *testing.T, req []byte, rxOff int64) {
		ts := synced()
		s := NewServer(ts, RateLimit{RequestsPerSecond: 10, Burst: 2, KoD: true, Leak: -1}, nil)
		rx := now + rxOff%1e9
		iv, _ := ts.Now()
		for i := 0; i < 3; i++ { // the third is rate-limited
			resp := make([]byte, 48)
			n, v := s.handle(s.lim, req, resp, rx, rx, client)
			if n > len(req) {
				t.Fatalf("reply %d bytes to a %d-byte request: amplification", n, len(req))
			}
			if n == 0 {
				continue
			}
			h, ok := engine.DecodeHeader(resp[:n])
			if !ok || h.Mode != engine.ModeServer || h.Version != req[0]>>3&7 || h.Poll != int8(req[2]) || h.Origin != binary.BigEndian.Uint64(req[40:]) {
				t.Fatalf("reply %+v does not answer request %x", h, req[:48])
			}
			switch v.kind() {
			case Reply:
				rcv, xmt := engine.ToUnixNS(h.Receive, now), engine.ToUnixNS(h.Transmit, now)
				if d := rcv - rx; d < -1 || d > 1 {
					t.Fatalf("receive stamp %d, received at %d", rcv, rx)
				}
				if d := xmt - max(iv.MidNS(), rx); d < -1 || d > 1 || xmt < rcv {
					t.Fatalf("transmit %d, want max(midpoint %d, receive %d)", xmt, iv.MidNS(), rx)
				}
				if bound := engine.ShortToNS(h.RootDelay)/2 + engine.ShortToNS(h.RootDisp); bound < iv.EpsNS() || h.Stratum != 2 || h.Leap != engine.LeapNone {
					t.Fatalf("advertised bound %d < ε %d, or header %+v", bound, iv.EpsNS(), h)
				}
			case ReplyKoD:
				if h.Stratum != engine.StratumKoD || h.RefID != engine.KissRATE || i < 2 {
					t.Fatalf("kiss %+v on request %d", h, i)
				}
			default:
				t.Fatalf("%d bytes with verdict %v", n, v)
			}
		}
	})
}

// cmsg is one control message as the kernel lays it out (header, data,
// padding to 8 bytes).
func cmsg(level, typ int32, data []byte) []byte {
	l := unix.SizeofCmsghdr + len(data)
	b := make([]byte, (l+7)&^7)
	binary.NativeEndian.PutUint64(b[0:], uint64(l))
	binary.NativeEndian.PutUint32(b[8:], uint32(level))
	binary.NativeEndian.PutUint32(b[12:], uint32(typ))
	copy(b[unix.SizeofCmsghdr:], data)
	return b
}

// A SCM_TIMESTAMPNS message behind any other control message is found and
// decoded to the stamp that was encoded; any truncation of the buffer is
// refused rather than read past its end.
func FuzzKernelRxStamp(f *testing.F) {
	f.Add(int32(unix.SOL_SOCKET), int32(unix.SCM_RIGHTS), []byte{1, 2, 3, 4}, int64(1_795_000_000), int64(123))
	f.Add(int32(41), int32(50), []byte{}, int64(0), int64(999_999_999))
	f.Fuzz(func(t *testing.T, level, typ int32, junk []byte, sec, nsec int64) {
		if level == unix.SOL_SOCKET && typ == unix.SCM_TIMESTAMPNS {
			typ++ // the first message must not be a stamp
		}
		sec, nsec = (sec%1e10+1e10)%1e10, (nsec%1e9+1e9)%1e9
		var st [16]byte
		binary.NativeEndian.PutUint64(st[0:], uint64(sec))
		binary.NativeEndian.PutUint64(st[8:], uint64(nsec))
		oob := append(cmsg(level, typ, junk), cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, st[:])...)
		if ns, ok := kernelRxNS(oob); !ok || ns != sec*1e9+nsec {
			t.Fatalf("stamp %d.%09d after a %d-byte message: got %d %v", sec, nsec, len(junk), ns, ok)
		}
		for cut := 0; cut < len(oob); cut++ {
			if ns, ok := kernelRxNS(oob[:cut]); ok {
				t.Fatalf("truncated to %d of %d bytes, still read %d", cut, len(oob), ns)
			}
		}
	})
}
