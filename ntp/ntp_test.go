package ntp

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/facebook/time/ntp/protocol"
	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/ntp/engine"
	"github.com/meridiantime/meridian/truetime"
)

// fakeTS serves a fixed estimate over a settable local clock.
type fakeTS struct {
	local int64
	est   truetime.Estimate
}

func (f *fakeTS) LocalNS() int64              { return f.local }
func (f *fakeTS) Estimate() truetime.Estimate { return f.est }
func (f *fakeTS) Now() (truetime.Interval, error) {
	iv := truetime.Bound(f.local, f.est)
	if iv.Status == truetime.Unsynchronized {
		return iv, truetime.ErrUnsynchronized
	}
	return iv, nil
}

const now = int64(1_795_000_000_123_456_789)

func synced() *fakeTS {
	return &fakeTS{local: now, est: truetime.Estimate{
		Status: truetime.Synchronized, LocalNS: now, OffsetNS: 1000, Eps0NS: 50_000, MaxErrorNS: 1e9,
		Stratum: 2, RefID: 0x7f000001, RootDelayNS: 20_000, LastSampleNS: now - 1e9,
	}}
}

func clientReq(version, mode uint8, xmt uint64) []byte {
	b := make([]byte, 48)
	h := engine.Header{Version: version, Mode: mode, Transmit: xmt}
	h.Encode(b)
	return b
}

var client = netip.MustParseAddrPort("192.0.2.7:40123")

func TestWireConversions(t *testing.T) {
	for _, ns := range []int64{0, 1, now, 2_085_978_495_999_999_999} {
		if got := engine.ToUnixNS(engine.ToNTP(ns), now); got-ns > 1 || ns-got > 1 {
			t.Errorf("round trip %d → %d", ns, got)
		}
	}
	// Agrees with facebook/time's conversion.
	sec, frac := protocol.Time(time.Unix(0, now))
	if engine.ToNTP(now) != uint64(sec)<<32|uint64(frac) {
		t.Errorf("ToNTP %x, protocol.Time %x.%x", engine.ToNTP(now), sec, frac)
	}
	if engine.ShortToNS(engine.NSToShort(1_000_000)) < 1_000_000 {
		t.Error("short format must round a bound up")
	}
	if engine.NSToShort(1e15) != ^uint32(0) || engine.NSToShort(-5) != 0 {
		t.Error("short format must saturate")
	}
}

func TestServerReplySynchronized(t *testing.T) {
	ts := synced()
	s := NewServer(ts, RateLimit{}, nil)
	resp := make([]byte, 48)
	n, v := s.handle(nil, clientReq(4, engine.ModeClient, 0xabcdef), resp, now-10_000, now-10_000, client)
	if v != Reply || n != 48 {
		t.Fatalf("verdict %v n %d", v, n)
	}
	var p protocol.Packet
	if err := p.UnmarshalBinary(resp); err != nil {
		t.Fatal(err)
	}
	h, _ := engine.DecodeHeader(resp)
	if h.Leap != engine.LeapNone || h.Version != 4 || h.Mode != engine.ModeServer || h.Stratum != 2 || h.RefID != 0x7f000001 {
		t.Fatalf("header %+v", h)
	}
	if h.Origin != 0xabcdef {
		t.Fatalf("origin %x not echoed", h.Origin)
	}
	// Transmit is the TrueTime midpoint: local − offset.
	if got := engine.ToUnixNS(h.Transmit, now); got < now-1000-1 || got > now-1000+1 {
		t.Fatalf("transmit %d, want %d", got, now-1000)
	}
	// Root delay/2 + root dispersion covers ε.
	if bound := engine.ShortToNS(h.RootDelay)/2 + engine.ShortToNS(h.RootDisp); bound < 50_000 {
		t.Fatalf("advertised bound %d < ε", bound)
	}
}

func TestServerReplyUnsynchronized(t *testing.T) {
	ts := &fakeTS{local: now}
	s := NewServer(ts, RateLimit{}, nil)
	resp := make([]byte, 48)
	n, v := s.handle(nil, clientReq(3, engine.ModeClient, 1), resp, now, now, client)
	h, _ := engine.DecodeHeader(resp)
	if v.kind() != Reply || n != 48 || h.Leap != engine.LeapUnsync || h.Stratum != engine.StratumNone || h.Version != 3 {
		t.Fatalf("unsynchronized reply %+v verdict %v", h, v)
	}
	if settled(s).RepliesUnsynchronized != 0 {
		t.Fatal("counted before it was sent")
	}
	s.sent(v)
	if settled(s).RepliesUnsynchronized != 1 || settled(s).Replies != 1 {
		t.Fatal("not counted")
	}
}

func TestServerDropsBadInput(t *testing.T) {
	s := NewServer(synced(), RateLimit{}, nil)
	resp := make([]byte, 48)
	for _, tc := range []struct {
		name string
		req  []byte
		want Verdict
	}{
		{"empty", nil, DropShort},
		{"short", make([]byte, 47), DropShort},
		{"mode 6 control", clientReq(2, 6, 1), DropMode},
		{"mode 7 private", clientReq(2, 7, 1), DropMode},
		{"server mode", clientReq(4, engine.ModeServer, 1), DropMode},
		{"symmetric", clientReq(4, 1, 1), DropMode},
		{"version 0", clientReq(0, engine.ModeClient, 1), DropVersion},
		{"version 5", clientReq(5, engine.ModeClient, 1), DropVersion},
	} {
		if n, v := s.handle(nil, tc.req, resp, now, now, client); n != 0 || v != tc.want {
			t.Errorf("%s: n %d verdict %v, want drop %v", tc.name, n, v, tc.want)
		}
	}
	// UDP source port 0 only comes from a spoofer (raw socket): dropped
	// before anything else, since its reply cannot be sent.
	for _, tc := range []struct {
		name string
		req  []byte
		want Verdict
	}{
		{"port 0", clientReq(4, engine.ModeClient, 1), DropSourcePort},
	} {
		if n, v := s.handle(nil, tc.req, resp, now, now, netip.AddrPortFrom(client.Addr(), 0)); n != 0 || v != tc.want {
			t.Errorf("%s: n %d verdict %v, want drop %v", tc.name, n, v, tc.want)
		}
	}
	st := settled(s)
	if st.DropShort != 2 || st.DropMode != 4 || st.DropVersion != 2 || st.DropSourcePort != 1 || st.Replies != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestServerRateLimitKoD(t *testing.T) {
	s := NewServer(synced(), RateLimit{RequestsPerSecond: 1, Burst: 2, KoD: true, Leak: -1}, nil)
	resp := make([]byte, 48)
	var verdicts []Verdict
	for i := 0; i < 4; i++ {
		_, v := s.handle(s.lim, clientReq(4, engine.ModeClient, 9), resp, now+int64(i)*1e6, now+int64(i)*1e6, client)
		verdicts = append(verdicts, v)
		if i == 2 {
			h, _ := engine.DecodeHeader(resp)
			if h.Stratum != engine.StratumKoD || h.RefID != engine.KissRATE || h.Origin != 9 {
				t.Fatalf("KoD %+v", h)
			}
		}
	}
	// Within the burst: answered; then one KoD; then dropped (one KoD per
	// burst/rate = 2 s, not one per request).
	if verdicts[0] != Reply || verdicts[1] != Reply || verdicts[2] != ReplyKoD || verdicts[3] != DropRate {
		t.Fatalf("verdicts %v", verdicts)
	}
	// Another client is unaffected; the first recovers after 1 s.
	if _, v := s.handle(s.lim, clientReq(4, engine.ModeClient, 9), resp, now+4e6, now+4e6, netip.MustParseAddrPort("192.0.2.8:123")); v != Reply {
		t.Fatal("second client limited")
	}
	if _, v := s.handle(s.lim, clientReq(4, engine.ModeClient, 9), resp, now+1100e6, now+1100e6, client); v != Reply {
		t.Fatal("no recovery after a second")
	}
	// A tiny rate (burst/rate far beyond int64 nanoseconds) still sends at
	// most one KoD: the interval is capped at a day, not overflowed.
	s = NewServer(synced(), RateLimit{RequestsPerSecond: 1e-300, Burst: 1, KoD: true, Leak: -1}, nil)
	kods := 0
	for i := 0; i < 10; i++ {
		if _, v := s.handle(s.lim, clientReq(4, engine.ModeClient, 9), resp, now, now+int64(i)*1e9, client); v == ReplyKoD {
			kods++
		}
	}
	if kods != 1 {
		t.Fatalf("%d KoDs to one address in 10 s at a tiny rate, want 1", kods)
	}
	// Without kod: true, no KoD at all.
	s = NewServer(synced(), RateLimit{RequestsPerSecond: 1, Burst: 2, Leak: -1}, nil)
	for i := 0; i < 10; i++ {
		if _, v := s.handle(s.lim, clientReq(4, engine.ModeClient, 9), resp, now+int64(i)*1e6, now+int64(i)*1e6, client); v == ReplyKoD {
			t.Fatal("KoD sent without kod: true")
		}
	}
	if st := settled(s); st.RateDropped != 8 {
		t.Fatalf("rate drops %d, want 8", st.RateDropped)
	}
}

func TestServerNoAllocs(t *testing.T) {
	s := NewServer(synced(), RateLimit{RequestsPerSecond: 1e9, Burst: 1e9}, nil)
	req, resp := clientReq(4, engine.ModeClient, 5), make([]byte, 48)
	if a := testing.AllocsPerRun(1000, func() { s.handle(s.lim, req, resp, now, now, client) }); a != 0 {
		t.Fatalf("handle allocates %v per request", a)
	}
	// Over the limit too (leak, drop and KoD paths).
	s = NewServer(synced(), RateLimit{RequestsPerSecond: 1, Burst: 1, KoD: true}, nil)
	if a := testing.AllocsPerRun(1000, func() { s.handle(s.lim, req, resp, now, now, client) }); a != 0 {
		t.Fatalf("handle allocates %v per request", a)
	}
}

// Plumbing: our client against our server, whose clock is a fake defined
// here (local − 1000 ns): the sample measures that fake. The offset against
// independently chosen exchange times is FuzzClientResponseRoundTrip.
func TestClientServerExchangePlumbing(t *testing.T) {
	ts := synced()
	s := NewServer(ts, RateLimit{}, nil)
	c := engine.NewClient(engine.ClientConfig{Poll: 16 * time.Second, IBurst: true}, 1)
	req, resp := make([]byte, 48), make([]byte, 48)
	c.Request(req, now-50_000)
	s.handle(nil, req, resp, now-1000, now-1000, client) // rx stamped with the same midpoint
	smp, err := c.Response(resp, now+50_000)
	if err != nil {
		t.Fatal(err)
	}
	// Server time is local − 1000 ns at now; client clock equals local: θ ≈ −1000.
	if off := smp.OffsetNS(); off < -1100 || off > -900 {
		t.Fatalf("offset %v", off)
	}
	if smp.Stratum != 2 || c.Reach() != 1 || smp.RootDispersionNS <= 0 {
		t.Fatalf("sample %+v reach %b", smp, c.Reach())
	}
	if c.NextInterval() != 2*time.Second {
		t.Fatal("iburst must poll every 2 s at start")
	}
	// Replayed reply: nothing pending.
	if _, err := c.Response(resp, now+60_000); !errors.Is(err, engine.ErrNotPending) {
		t.Fatalf("replay: %v", err)
	}
}

func TestClientRejects(t *testing.T) {
	ts := synced()
	s := NewServer(ts, RateLimit{}, nil)
	req, resp := make([]byte, 48), make([]byte, 48)

	c := engine.NewClient(engine.ClientConfig{}, 2)
	c.Request(req, now)
	spoof := clientReq(4, engine.ModeClient, 12345) // an attacker guessing the origin
	s.handle(nil, spoof, resp, now, now, client)
	if _, err := c.Response(resp, now+1000); !errors.Is(err, engine.ErrOrigin) {
		t.Fatalf("spoofed origin: %v", err)
	}

	c = engine.NewClient(engine.ClientConfig{}, 3)
	c.Request(req, now)
	uts := &fakeTS{local: now}
	NewServer(uts, RateLimit{}, nil).handle(nil, req, resp, now, now, client)
	if _, err := c.Response(resp, now+1000); !errors.Is(err, engine.ErrUnsyncSource) || c.Reach() != 1 {
		t.Fatalf("unsynchronized server: %v reach %b", err, c.Reach())
	}

	for _, tc := range []struct {
		code uint32
		want error
	}{{engine.KissRATE, engine.ErrKissRate}, {engine.KissDENY, engine.ErrKissStop}, {engine.KissRSTR, engine.ErrKissStop}, {binary.BigEndian.Uint32([]byte("XXXX")), engine.ErrKiss}} {
		c = engine.NewClient(engine.ClientConfig{Poll: 16 * time.Second}, 4)
		c.Request(req, now)
		h, _ := engine.DecodeHeader(req)
		k := engine.Header{Version: 4, Mode: engine.ModeServer, Stratum: engine.StratumKoD, RefID: tc.code, Origin: h.Transmit, Leap: engine.LeapUnsync}
		k.Encode(resp)
		if _, err := c.Response(resp, now+1000); !errors.Is(err, tc.want) {
			t.Errorf("kiss %s: %v", engine.KissCode(tc.code), err)
		}
		if tc.code == engine.KissRATE && c.Poll() != 32*time.Second {
			t.Errorf("RATE must double the poll, got %v", c.Poll())
		}
		if tc.want == engine.ErrKissStop && c.Stopped() == nil {
			t.Error("DENY/RSTR must stop the source")
		}
	}
}

func TestKernelRxStampParse(t *testing.T) {
	oob := make([]byte, 32)
	binary.NativeEndian.PutUint64(oob[0:], 32)
	binary.NativeEndian.PutUint32(oob[8:], uint32(unix.SOL_SOCKET))
	binary.NativeEndian.PutUint32(oob[12:], uint32(unix.SCM_TIMESTAMPNS))
	binary.NativeEndian.PutUint64(oob[16:], 1_795_000_000)
	binary.NativeEndian.PutUint64(oob[24:], 123)
	if ns, ok := kernelRxNS(oob); !ok || ns != 1_795_000_000_000_000_123 {
		t.Fatalf("%d %v", ns, ok)
	}
	for _, bad := range [][]byte{nil, oob[:10], append([]byte{200}, oob[1:]...)} {
		if _, ok := kernelRxNS(bad); ok {
			t.Errorf("parsed %v", bad)
		}
	}
	// A stamp 30 µs old moves the receive time back by 30 µs.
	binary.NativeEndian.PutUint64(oob[16:], 0)
	rt := time.Now().UnixNano()
	binary.NativeEndian.PutUint64(oob[24:], uint64(rt-30_000))
	if got := rxAt(rt, 1e18, oob); 1e18-got != 30_000 {
		t.Fatalf("rx moved by %d", int64(1e18)-got)
	}
	// A stamp from the future or from long ago (host clock stepped) is ignored.
	if got := rxAt(rt-40_000, 1e18, oob); got != 1e18 {
		t.Fatalf("future stamp used: %d", got)
	}
	if got := rxAt(rt+2e9, 1e18, oob); got != 1e18 {
		t.Fatalf("stale stamp used: %d", got)
	}
}

// The whole server loop — recvmmsg, stamps, handle, sendmmsg — allocates
// nothing per request: measured over thousands of loopback round trips with
// a client that does not allocate either. Also in interleaved mode, with
// the transmit stamps read from the error queue and interleaved replies.
func TestServerLoopNoAllocs(t *testing.T) {
	t.Run("basic", func(t *testing.T) { serverLoopNoAllocs(t, false) })
	t.Run("interleaved", func(t *testing.T) { serverLoopNoAllocs(t, true) })
}

func serverLoopNoAllocs(t *testing.T, xleave bool) {
	var ts TimeSource = synced()
	if xleave {
		ts = wallTS{} // a running clock: stamps are checked against the receive time
	}
	s := NewServer(ts, RateLimit{RequestsPerSecond: 1e9, Burst: 1e9}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if xleave {
		s.EnableInterleaved(0)
	}
	if err := s.Listen("127.0.0.1:0", 1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Serve(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	raddr, _ := net.ResolveUDPAddr("udp", s.Addr())
	conn, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req, buf := clientReq(4, engine.ModeClient, 1), make([]byte, 128)
	roundTrip := func() {
		if _, err := conn.Write(req); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Read(buf); err != nil {
			t.Fatal(err)
		}
		if xleave { // the next request echoes this reply's receive timestamp
			copy(req[24:32], buf[32:40])
			req[32]++ // receive ≠ transmit
		}
	}
	for i := 0; i < 200; i++ { // warm up: goroutines, poller, pools
		roundTrip()
	}
	const n = 5000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < n; i++ {
		roundTrip()
	}
	runtime.ReadMemStats(&after)
	if per := float64(after.Mallocs-before.Mallocs) / n; per > 0.05 {
		t.Fatalf("%.3f allocations per request (client and server together)", per)
	}
	st := settled(s)
	if st.Replies < n || st.Replies > n+200 {
		t.Fatalf("replies %d", st.Replies)
	}
	// A stamp made too early by a preemption between the clock reads is
	// dropped (out of range): rare, but a loaded machine has some.
	if xleave && (st.InterleavedReplies < n*95/100 || st.TxStamps < n*95/100) {
		t.Fatalf("interleaved replies %d, stamps %d (%d out of range) of %d", st.InterleavedReplies, st.TxStamps, st.TxStampsBad, n)
	}
}

func TestAdaptivePoll(t *testing.T) {
	ts := synced()
	s := NewServer(ts, RateLimit{}, nil)
	c := engine.NewClient(engine.ClientConfig{MinPoll: 16 * time.Second, MaxPoll: 64 * time.Second}, 5)
	req, resp := make([]byte, 48), make([]byte, 48)
	exchange := func() {
		c.Request(req, now-50_000)
		s.handle(nil, req, resp, now-1000, now-1000, client)
		if _, err := c.Response(resp, now+50_000); err != nil {
			t.Fatal(err)
		}
	}
	if c.Poll() != 16*time.Second {
		t.Fatalf("starts at %v", c.Poll())
	}
	for i := 0; i < 8; i++ {
		exchange()
	}
	if c.Poll() != 32*time.Second {
		t.Fatalf("after 8 good replies: %v", c.Poll())
	}
	for i := 0; i < 40; i++ {
		exchange()
	}
	if c.Poll() != 64*time.Second {
		t.Fatalf("capped at max poll: %v", c.Poll())
	}
	c.Request(req, now) // unanswered
	c.Request(req, now) // the next request notices
	if c.Poll() != 32*time.Second {
		t.Fatalf("after a miss: %v", c.Poll())
	}
	fixed := engine.NewClient(engine.ClientConfig{Poll: 8 * time.Second}, 6)
	for i := 0; i < 20; i++ {
		fixed.Request(req, now)
	}
	if fixed.Poll() != 8*time.Second {
		t.Fatalf("a fixed poll moved: %v", fixed.Poll())
	}
}
