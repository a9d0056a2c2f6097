package ntp

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/ntp/engine"
	"github.com/meridiantime/meridian/truetime"
)

// xreq is a client request with all three timestamps set.
func xreq(origin, receive, transmit uint64) []byte {
	b := make([]byte, engine.HeaderLen)
	h := engine.Header{Version: 4, Mode: engine.ModeClient, Origin: origin, Receive: receive, Transmit: transmit}
	h.Encode(b)
	return b
}

func decode(t *testing.T, b []byte) engine.Header {
	t.Helper()
	h, ok := engine.DecodeHeader(b)
	if !ok {
		t.Fatal("short reply")
	}
	return h
}

func xleaveServer(ts TimeSource, size int) *Server {
	s := NewServer(ts, RateLimit{}, nil)
	s.EnableInterleaved(size)
	return s
}

// Field by field: a first request gets a basic reply and a table entry; a
// request echoing that reply's receive timestamp, once its kernel stamp is
// in, gets an interleaved reply (origin = the request's receive field,
// transmit = the stamp); a lost reply, a stamp that never came, receive =
// transmit, version 3, another address, a client restart and a request
// with zero origin and receive all get basic replies.
func TestXleaveReplyFields(t *testing.T) {
	ts := synced()
	s := xleaveServer(ts, 0)
	resp := make([]byte, engine.HeaderLen)
	var x xlOut
	ask := func(req []byte, rxNS int64, from netip.AddrPort) (engine.Header, Verdict) {
		t.Helper()
		n, v := s.handleX(nil, req, resp, rxNS, rxNS, from, &x)
		if n != engine.HeaderLen {
			t.Fatalf("no reply (%v)", v)
		}
		return decode(t, resp), v
	}
	basic := func(h engine.Header, v Verdict, req []byte, rxNS int64, what string) {
		t.Helper()
		q := decode(t, req)
		// The clock: the TrueTime midpoint (local − offset), not before rx.
		if v&flagXleave != 0 || h.Origin != q.Transmit || h.Transmit != engine.ToNTP(max(ts.local-1000, rxNS)) {
			t.Fatalf("%s: want a basic reply (origin %x = request transmit, transmit = clock): %+v, %v", what, q.Transmit, h, v)
		}
	}
	const rx1, rx2, rx3 = now - 300_000, now - 200_000, now - 100_000
	// 1. First request: basic, recorded.
	q1 := xreq(0, 0x1111, 0xaaaa)
	h1, v := ask(q1, rx1, client)
	basic(h1, v, q1, rx1, "first request")
	if !x.rec || x.rx != h1.Receive || h1.Receive != engine.ToNTP(rx1) || x.rxNS != rx1 {
		t.Fatalf("first reply not recorded: %+v, receive %x", x, h1.Receive)
	}
	// 2. Its stamp has not come: an interleaved-form request gets basic.
	q2 := xreq(h1.Receive, 0x2222, 0xbbbb)
	h2, v := ask(q2, rx2, client)
	basic(h2, v, q2, rx2, "stamp missing")
	// The kernel stamps reply 2 (20 µs after its receive).
	tx2 := rx2 + 20_000
	if !s.xt.setTx(x.addr, x.rx, tx2) {
		t.Fatal("setTx refused the last reply's stamp")
	}
	if s.xt.setTx(x.addr, x.rx, tx2+1) {
		t.Fatal("a second stamp for the same reply was taken")
	}
	// 3. Interleaved: origin = q3.receive, receive = rx3, transmit = tx2.
	q3 := xreq(h2.Receive, 0x3333, 0xcccc)
	h3, v := ask(q3, rx3, client)
	if v&flagXleave == 0 || h3.Origin != 0x3333 || h3.Receive != engine.ToNTP(rx3) || h3.Transmit != engine.ToNTP(tx2) {
		t.Fatalf("want interleaved reply (origin 0x3333, receive %x, transmit %x): %+v %v", engine.ToNTP(rx3), engine.ToNTP(tx2), h3, v)
	}
	if h3.Stratum != 2 || h3.RootDelay == 0 || h3.Leap != engine.LeapNone {
		t.Fatalf("interleaved reply lost the server state: %+v", h3)
	}
	tx3 := rx3 + 20_000
	s.xt.setTx(x.addr, x.rx, tx3)
	// 4. Reply 3 was lost: the client echoes rx2 again: basic (the table
	// holds rx3; the stamp of reply 2 is never served twice).
	q4 := xreq(h2.Receive, 0x4444, 0xdddd)
	h4, v := ask(q4, now, client)
	basic(h4, v, q4, now, "lost reply")
	s.xt.setTx(x.addr, x.rx, now+20_000)
	// 5. receive = transmit (a basic client that copies fields): basic.
	q5 := xreq(h4.Receive, 0x5555, 0x5555)
	h5, v := ask(q5, now, client)
	basic(h5, v, q5, now, "receive = transmit")
	s.xt.setTx(x.addr, x.rx, now+20_000)
	// 6. The right origin from another address (or port-less spoofing of
	// another client): basic.
	q6 := xreq(h5.Receive, 0x6666, 0xeeee)
	h6, v := ask(q6, now, netip.MustParseAddrPort("192.0.2.99:123"))
	basic(h6, v, q6, now, "other address")
	// 7. Version 3: basic and not recorded.
	q7 := xreq(h5.Receive, 0x7777, 0xffff)
	q7[0] = 3<<3 | engine.ModeClient
	if n, v := s.handleX(nil, q7, resp, now, now, client, &x); n == 0 || v&flagXleave != 0 || x.rec {
		t.Fatalf("version 3: %v, recorded %v", v, x.rec)
	}
	// The same origin from the client's own address, from a new port (as
	// chrony sends every request): interleaved.
	h8, v := ask(xreq(h5.Receive, 0x8888, 0x1234), now+1000, netip.AddrPortFrom(client.Addr(), 999))
	if v&flagXleave == 0 || h8.Origin != 0x8888 {
		t.Fatalf("new source port: want interleaved, got %+v %v", h8, v)
	}
	s.xt.setTx(x.addr, x.rx, now+30_000)
	// 9. Client restart (zero origin): basic; the entry is replaced.
	q9 := xreq(0, 0x9999, 0x4321)
	h9, v := ask(q9, now+2000, client)
	basic(h9, v, q9, now+2000, "restart")
	// 10. Zero origin and receive (SNTP, chrony without xleave): basic,
	// no entry.
	live := s.xt.live.Load()
	if n, v := s.handleX(nil, xreq(0, 0, 0x77), resp, now, now, netip.MustParseAddrPort("198.51.100.1:123"), &x); n == 0 || v&flagXleave != 0 || x.rec || s.xt.live.Load() != live {
		t.Fatalf("plain client: %v, recorded %v, entries %d → %d", v, x.rec, live, s.xt.live.Load())
	}
	// Counted once sent.
	s.sent(Reply | flagXleave)
	if st := settled(s); st.InterleavedReplies != 1 || st.XleaveEntries != 2 || st.XleaveCapacity < DefaultInterleavedTable {
		t.Fatalf("stats %+v", st)
	}
}

// The origin check is what keeps a spoofed request (or a stale one) from
// getting the stamp of another exchange: with it disabled through the test
// knob, the same request gets an interleaved reply.
func TestXleaveOriginCheckNegativeControl(t *testing.T) {
	for _, knob := range []bool{false, true} {
		s := xleaveServer(synced(), 0)
		s.xt.anyOrigin = knob
		resp := make([]byte, engine.HeaderLen)
		var x xlOut
		s.handleX(nil, xreq(0, 1, 2), resp, now, now, client, &x)
		s.xt.setTx(x.addr, x.rx, now+10_000)
		// A guess of the origin that is off by one unit (0.23 ns).
		_, v := s.handleX(nil, xreq(x.rx+1, 3, 4), resp, now+1e6, now+1e6, client, &x)
		if got := v&flagXleave != 0; got != knob {
			t.Fatalf("anyOrigin=%v: interleaved reply %v", knob, got)
		}
	}
}

// The table never grows: a flood of distinct addresses only evicts (LRU
// within a set), it is counted, and the handler does not allocate. Four
// addresses of one set stay; touching the oldest makes the second-oldest
// the one a fifth address evicts.
func TestXleaveTableEviction(t *testing.T) {
	key := newAddrKey()
	xt := newXTable(1, key)
	if xt.capacity() != xlShards*xlWays {
		t.Fatalf("capacity %d", xt.capacity())
	}
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}) }
	for i := 0; i < 100_000; i++ {
		xt.exchange(wordsOf(addr(i)), 0, false, uint64(i+1), int64(i))
	}
	if l := xt.live.Load(); l != int64(xt.capacity()) || xt.evictions.Load() != uint64(100_000-xt.capacity()) {
		t.Fatalf("live %d of %d, evictions %d", l, xt.capacity(), xt.evictions.Load())
	}
	// Five addresses of one set (one shard, one set: capacity 256 has one
	// set per shard).
	xt = newXTable(1, key)
	var same []ipWords
	sh0, _ := xt.set(wordsOf(addr(0)))
	for i := 0; len(same) < 5; i++ {
		if sh, _ := xt.set(wordsOf(addr(i))); sh == sh0 {
			same = append(same, wordsOf(addr(i)))
		}
	}
	for i, a := range same[:4] {
		xt.exchange(a, 0, false, uint64(100+i), int64(i))
		xt.setTx(a, uint64(100+i), 5000)
	}
	// Touch the oldest (it now records rx 200 and keeps no stamp).
	xt.exchange(same[0], 0, false, 200, 10)
	xt.exchange(same[4], 0, false, 300, 11) // evicts same[1]
	if _, ok, _ := xt.exchange(same[2], 102, true, 401, 12); !ok {
		t.Fatal("an address that was not the least recently used was evicted")
	}
	if _, ok, _ := xt.exchange(same[1], 101, true, 400, 13); ok {
		t.Fatal("the evicted address still matched")
	}
	s := xleaveServer(synced(), 1)
	req, resp := xreq(5, 6, 7), make([]byte, engine.HeaderLen)
	var x xlOut
	i := 0
	if a := testing.AllocsPerRun(2000, func() {
		i++
		s.handleX(nil, req, resp, now, now, netip.AddrPortFrom(addr(i), 123), &x)
	}); a != 0 {
		t.Fatalf("%.1f allocations per request in interleaved mode", a)
	}
}

// wallTS serves the host clock (CLOCK_REALTIME) as the served clock, so
// that the server's timestamps can be compared with the client's kernel
// stamps: the independent truth of when a reply left.
type wallTS struct{}

func (wallTS) LocalNS() int64 { return time.Now().UnixNano() }
func (wallTS) Estimate() truetime.Estimate {
	return truetime.Estimate{Status: truetime.Synchronized, LocalNS: time.Now().UnixNano(), Eps0NS: 1000, MaxErrorNS: 1e9, Stratum: 1, LastSampleNS: time.Now().UnixNano()}
}
func (w wallTS) Now() (truetime.Interval, error) {
	n := time.Now().UnixNano()
	return truetime.Interval{EarliestNS: n - 1000, LatestNS: n + 1000, Status: truetime.Synchronized}, nil
}

// xclient is a client socket with kernel receive stamps (CLOCK_REALTIME).
type xclient struct {
	c   *net.UDPConn
	oob []byte
	buf []byte
}

func newXClient(t *testing.T, laddr, raddr string) *xclient {
	t.Helper()
	la, _ := net.ResolveUDPAddr("udp", laddr)
	ra, _ := net.ResolveUDPAddr("udp", raddr)
	c, err := net.DialUDP("udp", la, ra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc, _ := c.SyscallConn()
	if err := enableRxTimestamps(rc); err != nil {
		t.Fatal(err)
	}
	return &xclient{c: c, oob: make([]byte, oobLen), buf: make([]byte, 128)}
}

// read returns the next reply and its kernel receive stamp.
func (x *xclient) read(t *testing.T) (engine.Header, int64) {
	t.Helper()
	_ = x.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, oobn, _, _, err := x.c.ReadMsgUDPAddrPort(x.buf, x.oob)
	if err != nil {
		t.Fatal(err)
	}
	k, ok := kernelRxNS(x.oob[:oobn])
	if !ok {
		t.Fatal("no kernel receive stamp")
	}
	return decode(t, x.buf[:n]), k
}

func serveXleave(t *testing.T, shift uint32, knobs ...func(*Server)) *Server {
	t.Helper()
	s := xleaveServer(wallTS{}, 0)
	s.log = quietLog()
	s.testIDShift = shift
	for _, k := range knobs {
		k(s)
	}
	if err := s.Listen("127.0.0.1:0", 1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// xleaveRun does rounds of sequential exchanges in interleaved form, the
// clients taking turns. It returns how many replies were interleaved and
// every violation seen: a reply whose origin matches neither of the
// request's nonces, or an interleaved transmit stamp outside [the stamped
// reply's receive timestamp, the client's kernel receive stamp of that
// reply] (a real departure cannot follow the arrival).
func xleaveRun(t *testing.T, s *Server, clients, rounds int) (inter int, bad []string) {
	return xleaveRunMixed(t, s, clients, rounds, 0)
}

// xleaveRunMixed is xleaveRun with a basic client (origin and receive zero:
// its replies are never recorded in the table) that sends basicEach
// requests after each interleaved exchange.
func xleaveRunMixed(t *testing.T, s *Server, clients, rounds, basicEach int) (inter int, bad []string) {
	t.Helper()
	cls := make([]*xclient, clients)
	prev := make([]engine.Header, clients)
	prevRxK := make([]int64, clients)
	for i := range cls {
		cls[i] = newXClient(t, fmt.Sprintf("127.0.0.%d:0", 2+i), s.Addr())
	}
	basic := newXClient(t, "127.0.0.200:0", s.Addr())
	for k := 0; k < rounds; k++ {
		for i, cl := range cls {
			for j := range basicEach {
				xmt := uint64(0xba51c000 + k<<8 + j)
				if _, err := basic.c.Write(xreq(0, 0, xmt)); err != nil {
					t.Fatal(err)
				}
				if h, _ := basic.read(t); h.Origin != xmt {
					bad = append(bad, fmt.Sprintf("basic client round %d: origin %x, want %x", k, h.Origin, xmt))
				}
			}
			rcv, xmt := uint64(0xdead0000+k<<8+i), uint64(0xbeef0000+k<<8+i)
			if _, err := cl.c.Write(xreq(prev[i].Receive, rcv, xmt)); err != nil {
				t.Fatal(err)
			}
			h, rxK := cl.read(t)
			switch h.Origin {
			case rcv:
				inter++
				tx := engine.ToUnixNS(h.Transmit, now)
				if rx := engine.ToUnixNS(prev[i].Receive, now); tx > prevRxK[i] || tx < rx {
					bad = append(bad, fmt.Sprintf("client %d round %d: real transmit %d outside [receive %d, client receipt %d] (%+d ns after receipt)",
						i, k-1, tx, rx, prevRxK[i], tx-prevRxK[i]))
				}
			case xmt:
			default:
				bad = append(bad, fmt.Sprintf("client %d round %d: origin %x matches neither nonce", i, k, h.Origin))
			}
			prev[i], prevRxK[i] = h, rxK
		}
	}
	return inter, bad
}

// On loopback with real kernel stamps: from each client's second exchange
// on, (nearly) every reply is interleaved, and every interleaved reply's transmit stamp (the previous
// reply's real departure) lies between that reply's receive timestamp and
// the client's kernel receive stamp of it.
func TestXleaveLoopbackStamps(t *testing.T) {
	s := serveXleave(t, 0)
	const clients, rounds = 2, 20
	inter, bad := xleaveRun(t, s, clients, rounds)
	if len(bad) > 0 {
		t.Fatalf("%d violations, first: %s", len(bad), bad[0])
	}
	// A stamp made early by a preemption between the clock reads is
	// dropped (TxStampsBad) and its client gets one basic reply: allowed,
	// rarely.
	st := settled(s)
	if inter < clients*(rounds-1)*9/10 || st.InterleavedReplies != uint64(inter) || st.TxStamps+st.TxStampsBad > clients*rounds {
		t.Fatalf("%d interleaved replies of %d, stats %+v", inter, clients*(rounds-1), st)
	}
}

// Replies to basic clients do not ask the kernel for a transmit stamp, so
// they take no stamp number (the kernel numbers only the datagrams that
// ask): with basic replies sent between the interleaved ones, every stamp
// still lands on its own reply. The truth is the kernel's own numbering and
// the client's kernel receive stamps.
func TestXleaveLoopbackMixedClients(t *testing.T) {
	s := serveXleave(t, 0)
	if err := mixedRun(t, s, 2, 20); err != nil {
		t.Fatal(err)
	}
}

// mixedRun runs xleaveRunMixed with 3 basic requests after each
// interleaved exchange and judges it: no violation, and (nearly) every
// reply from each client's second exchange on interleaved.
func mixedRun(t *testing.T, s *Server, clients, rounds int) error {
	inter, bad := xleaveRunMixed(t, s, clients, rounds, 3)
	if len(bad) > 0 {
		return fmt.Errorf("%d violations, first: %s", len(bad), bad[0])
	}
	if st := settled(s); inter < clients*(rounds-1)*9/10 || st.InterleavedReplies != uint64(inter) {
		return fmt.Errorf("%d interleaved replies of %d, stats %+v", inter, clients*(rounds-1), st)
	}
	return nil
}

// Negative control of the numbering: when basic replies also ask for a
// stamp (test knob) while the ring still numbers only the recorded ones, as
// a worker would if it assumed the wrong numbering, stamps land on the
// wrong replies or on none, and the judgement above fails.
func TestXleaveLoopbackMixedNegativeControl(t *testing.T) {
	s := serveXleave(t, 0, func(s *Server) { s.testStampAll = true })
	err := mixedRun(t, s, 2, 20)
	if err == nil {
		t.Fatal("stamps numbered differently from the ring went unnoticed")
	}
	t.Logf("detected: %v", err)
}

// Negative control of the pairing: with each stamp paired with the reply
// sent before it (test knob), stamps land on the wrong client's entry and
// are later than that reply's receipt: the check above reports it.
func TestXleaveLoopbackPairingNegativeControl(t *testing.T) {
	s := serveXleave(t, ^uint32(0))
	inter, bad := xleaveRun(t, s, 2, 10)
	if len(bad) == 0 {
		t.Fatalf("stamps paired with the wrong reply went unnoticed (%d interleaved); stats %+v", inter, settled(s))
	}
	t.Logf("detected: %s (%d in all)", bad[0], len(bad))
}

// How early is a basic reply's transmit stamp under a batch of load, and
// how close is the interleaved one? m clients at m distinct loopback
// addresses send at once, so the server answers them in batches; each then
// sends an interleaved request, whose reply carries the real departure of
// the first reply. real − basic is the basic stamp's error; the client's
// kernel receive stamp of the first reply minus the real departure bounds
// the interleaved stamp's error (it includes the loopback transit). Run
// with -v to see the numbers:
//
//	go test -count=1 -v -run TestXleaveBasicStampError ./ntp/
func TestXleaveBasicStampError(t *testing.T) {
	s := serveXleave(t, 0)
	const m, rounds = 32, 8
	cls := make([]*xclient, m)
	for i := range cls {
		cls[i] = newXClient(t, fmt.Sprintf("127.0.0.%d:0", 2+i), s.Addr())
	}
	var early, basicGap, realGap []int64
	for r := 0; r < rounds; r++ {
		first := make([]engine.Header, m)
		firstRx := make([]int64, m)
		for _, c := range cls {
			if _, err := c.c.Write(xreq(0, uint64(r+1)<<8|1, uint64(r+1)<<8|2)); err != nil {
				t.Fatal(err)
			}
		}
		for i, c := range cls {
			first[i], firstRx[i] = c.read(t)
		}
		for i, c := range cls {
			if _, err := c.c.Write(xreq(first[i].Receive, uint64(r+1)<<8|3, uint64(r+1)<<8|4)); err != nil {
				t.Fatal(err)
			}
		}
		for i, c := range cls {
			h, _ := c.read(t)
			if h.Origin != uint64(r+1)<<8|3 {
				continue // stamp missing: basic reply
			}
			real, basic := engine.ToUnixNS(h.Transmit, now), engine.ToUnixNS(first[i].Transmit, now)
			early = append(early, real-basic)
			basicGap = append(basicGap, firstRx[i]-basic)
			realGap = append(realGap, firstRx[i]-real)
		}
	}
	if len(early) < m*rounds/2 {
		t.Fatalf("only %d of %d second replies were interleaved; stats %+v", len(early), m*rounds, settled(s))
	}
	for _, g := range realGap {
		if g < 0 {
			t.Fatalf("an interleaved stamp is %d ns later than the reply's arrival", -g)
		}
	}
	q := func(x []int64) string {
		slices.Sort(x)
		return fmt.Sprintf("min %v, median %v, p90 %v, max %v", time.Duration(x[0]), time.Duration(x[len(x)/2]), time.Duration(x[len(x)*9/10]), time.Duration(x[len(x)-1]))
	}
	if med := early[len(early)/2]; med < 0 {
		t.Fatalf("the real departure precedes the basic stamp (median %d ns): the basic stamp must be early", med)
	}
	t.Logf("%d replies in batches of up to %d", len(early), m)
	t.Logf("basic stamp early by (real − basic): %s", q(early))
	t.Logf("arrival − basic stamp:               %s", q(basicGap))
	t.Logf("arrival − interleaved stamp:         %s", q(realGap))
}

// A hardware (PHC) transmit stamp is used only through HardwareTxToServed,
// which maps it to the served clock; without it the stamp is dropped and
// the client keeps getting basic replies.
func TestXleaveHardwareStamp(t *testing.T) {
	for _, conv := range []bool{false, true} {
		s := xleaveServer(synced(), 0)
		if conv {
			s.HardwareTxToServed = func(phc int64) (int64, bool) { return phc + 5_000, true }
		}
		st := newTxStamper(conv)
		resp := make([]byte, engine.HeaderLen)
		var x xlOut
		s.handleX(nil, xreq(0, 1, 2), resp, now, now, client, &x)
		st.add(x.addr, x.rx, x.rxNS)
		hw := make([]byte, 48) // ts[2]: the raw hardware stamp
		phc := now + 15_000
		binary.NativeEndian.PutUint64(hw[32:], uint64(phc/1e9))
		binary.NativeEndian.PutUint64(hw[40:], uint64(phc%1e9))
		st.stamp(slices.Concat(cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPING, hw), cmsg(unix.SOL_IPV6, unix.IPV6_RECVERR, eeData(0))), now, now, s)
		n, v := s.handleX(nil, xreq(x.rx, 3, 4), resp, now+1e6, now+1e6, client, &x)
		tx := engine.ToUnixNS(decode(t, resp[:n]).Transmit, now)
		if (v&flagXleave != 0) != conv || (conv && (tx < phc+5_000-1 || tx > phc+5_000)) {
			t.Fatalf("converter %v: interleaved %v, transmit %d (want %d)", conv, v&flagXleave != 0, tx, phc+5_000)
		}
	}
}

// A reply the kernel refuses (here: to UDP port 0, with the port check off)
// may have used a stamp number; the worker restarts the numbering rather
// than risk a mispairing. Around such failures, clients keep getting
// interleaved replies whose stamps lie between the reply's receive and its
// arrival.
func TestXleaveSendFailureResync(t *testing.T) {
	needRoot(t)
	s := serveXleave(t, 0, func(s *Server) { s.allowPort0 = true })
	raw := newRawSender(t)
	srv := netip.MustParseAddrPort(s.Addr())
	inter, bad := 0, []string(nil)
	for r := 0; r < 5; r++ {
		raw.send(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.99"), 0), srv, xreq(0, 1, 2))
		i, b := xleaveRun(t, s, 2, 4)
		inter += i
		bad = append(bad, b...)
	}
	st := settled(s)
	if len(bad) > 0 || st.TxResyncs == 0 || inter < 10 {
		t.Fatalf("%d interleaved, violations %v, stats %+v", inter, bad, st)
	}
}

// xleaveModel drives a server through a sequence of requests from three
// addresses and kernel stamps of its replies, both chosen by data, and
// checks each reply against a model of what the clients were sent:
//   - a reply is interleaved only for a request in interleaved form whose
//     origin is the receive timestamp of the last reply to that address and
//     whose stamp came in (and every such request gets one);
//   - an interleaved reply echoes the request's receive field and carries
//     exactly that reply's real departure: never later than the send, never
//     before its receive.
//
// It returns the first violation.
func xleaveModel(data []byte, anyOrigin bool, shift uint32) error {
	ts := synced()
	s := xleaveServer(ts, 0)
	s.xt.anyOrigin = anyOrigin
	st := newTxStamper(false)
	st.idShift = shift
	addrs := []netip.AddrPort{client, netip.MustParseAddrPort("192.0.2.8:123"), netip.MustParseAddrPort("[2001:db8::1]:5000")}
	type sent struct {
		addr       int
		rxNS, txNS int64 // the reply's receive timestamp and real departure (served clock)
		rec        bool
	}
	var sends []sent
	type client struct {
		lastRx  uint64
		lastID  int
		stamped bool
		have    bool
	}
	var cls [3]client
	const off = 37_000 // served clock − CLOCK_REALTIME
	cur := now
	resp := make([]byte, engine.HeaderLen)
	var x xlOut
	next := func() byte {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return b
	}
	u64 := func() uint64 {
		var v uint64
		for range 8 {
			v = v<<8 | uint64(next())
		}
		return v
	}
	for len(data) > 0 {
		switch op := next(); op % 3 {
		case 0: // a request
			a := int(next() % 3)
			c := &cls[a]
			var origin uint64
			switch next() % 4 {
			case 0, 1:
				origin = c.lastRx
			case 2:
				origin = u64()
			}
			rcv := u64()
			xmt := rcv
			if next()%4 != 0 {
				xmt = u64()
			}
			req := xreq(origin, rcv, xmt)
			rxNS := cur
			n, v := s.handleX(nil, req, resp, rxNS, rxNS, addrs[a], &x)
			if n == 0 {
				return fmt.Errorf("no reply")
			}
			h, _ := engine.DecodeHeader(resp)
			want := c.have && c.stamped && origin != 0 && origin == c.lastRx && rcv != xmt
			if got := v&flagXleave != 0; got != want {
				return fmt.Errorf("address %d, origin %x (last receive %x, stamped %v), receive %x, transmit %x: interleaved %v, want %v",
					a, origin, c.lastRx, c.stamped, rcv, xmt, got, want)
			}
			if want {
				p := sends[c.lastID]
				tx := engine.ToUnixNS(h.Transmit, now)
				if h.Origin != rcv || tx > p.txNS || tx < p.rxNS || p.txNS-tx > 1 {
					return fmt.Errorf("interleaved reply: origin %x (want %x), transmit %d, real departure %d, receive %d", h.Origin, rcv, tx, p.txNS, p.rxNS)
				}
			} else if h.Origin != xmt {
				return fmt.Errorf("basic reply: origin %x, want %x", h.Origin, xmt)
			}
			// The reply leaves d ns later; one that asked the kernel for its
			// stamp (the table awaits it) takes a number, others none.
			d := int64(next()) << 8
			if x.rec {
				sends = append(sends, sent{addr: a, rxNS: rxNS, txNS: rxNS + d, rec: x.rec})
				st.add(x.addr, x.rx, x.rxNS)
				*c = client{lastRx: h.Receive, lastID: len(sends) - 1, have: true}
			}
			cur += d + 1
		case 1: // the kernel reports one reply's departure
			if len(sends) == 0 {
				continue
			}
			id := len(sends) - 1 - int(next())%min(len(sends), 8)
			p := sends[id]
			oob := slices.Concat(
				cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPING, tsData(p.txNS-off)),
				cmsg(unix.SOL_IP, unix.IP_RECVERR, eeData(uint32(id))))
			st.stamp(oob, cur, cur-off, s)
			c := &cls[p.addr]
			if p.rec && c.have && c.lastID == id && cur-p.txNS <= int64(time.Second) {
				c.stamped = true
			}
		case 2: // time passes
			cur += int64(next()) * 1000
		}
	}
	return nil
}

// tsData is struct scm_timestamping with software stamp ns.
func tsData(ns int64) []byte {
	b := make([]byte, 48)
	binary.NativeEndian.PutUint64(b[0:], uint64(ns/1e9))
	binary.NativeEndian.PutUint64(b[8:], uint64(ns%1e9))
	return b
}

// eeData is struct sock_extended_err of a transmit stamp with OPT_ID id.
func eeData(id uint32) []byte {
	b := make([]byte, 16)
	b[4] = unix.SO_EE_ORIGIN_TIMESTAMPING
	binary.NativeEndian.PutUint32(b[8:], unix.SCM_TSTAMP_SND)
	binary.NativeEndian.PutUint32(b[12:], id)
	return b
}

// The server's interleaved path against the model (see xleaveModel): a
// request not matching the table never gets an interleaved reply, and an
// interleaved reply's transmit stamp is exactly the stamped reply's real
// departure, never later.
func FuzzServerXleave(f *testing.F) {
	f.Add([]byte{0, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8, 1, 9, 9, 9, 9, 9, 9, 9, 9, 10, 1, 0, 0, 0, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8, 1, 11, 11, 11, 11, 11, 11, 11, 11, 20})
	f.Add(xleaveSeed)
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := xleaveModel(data, false, 0); err != nil {
			t.Fatal(err)
		}
	})
}

// xleaveSeed: address 0 asks twice with its last receive timestamp, its
// first reply stamped in between, with address 1's exchange and stamp
// interleaved with it.
var xleaveSeed = []byte{
	0, 0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 40, // addr 0, zero origin
	0, 1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 1, 4, 4, 4, 4, 4, 4, 4, 4, 40, // addr 1, zero origin
	1, 1, // stamp addr 0's reply
	1, 0, // stamp addr 1's reply
	2, 5,
	0, 0, 0, 5, 5, 5, 5, 5, 5, 5, 5, 1, 6, 6, 6, 6, 6, 6, 6, 6, 40, // addr 0, origin = last receive
	0, 1, 1, 7, 7, 7, 7, 7, 7, 7, 7, 1, 8, 8, 8, 8, 8, 8, 8, 8, 40, // addr 1, origin = last receive
}

// spoofTail stamps address 0's last reply, then sends a request from
// address 0 with a guessed (wrong) origin.
var spoofTail = []byte{1, 1, 0, 0, 2, 9, 9, 9, 9, 9, 9, 9, 9, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 8}

// The model catches what the fuzz target guards: with the origin check off
// or the stamps paired with the wrong reply (test knobs), the seed fails.
func TestXleaveModelNegativeControls(t *testing.T) {
	if err := xleaveModel(slices.Concat(xleaveSeed, spoofTail), false, 0); err != nil {
		t.Fatalf("seed: %v", err)
	}
	for _, tc := range []struct {
		name      string
		anyOrigin bool
		shift     uint32
	}{{"origin check off", true, 0}, {"stamps paired with the previous reply", false, ^uint32(0)}, {"stamps paired with the next reply", false, 1}} {
		err := xleaveModel(slices.Concat(xleaveSeed, spoofTail), tc.anyOrigin, tc.shift)
		if err == nil {
			t.Fatalf("%s: not detected", tc.name)
		}
		t.Logf("%s: %v", tc.name, err)
	}
}

// The interleaved path's cost per request: one client that interleaves,
// and a flood of distinct addresses that only evicts (the table is full
// from the first few hundred requests on).
//
//	go test -run XXX -bench HandleXleave -benchmem ./ntp/
func BenchmarkHandleXleave(b *testing.B) {
	req, resp := xreq(0, 1, 2), make([]byte, engine.HeaderLen)
	b.Run("basic", func(b *testing.B) {
		s := NewServer(synced(), RateLimit{}, nil)
		for b.Loop() {
			s.handleX(nil, req, resp, now, now, client, nil)
		}
	})
	b.Run("one-client", func(b *testing.B) {
		s := xleaveServer(synced(), 0)
		var x xlOut
		i := int64(0)
		for b.Loop() {
			i++
			s.handleX(nil, req, resp, now+i, now+i, client, &x)
			s.xt.setTx(x.addr, x.rx, now+i+10)
			copy(req[24:32], resp[32:40]) // origin = the last receive timestamp
		}
	})
	b.Run("flood", func(b *testing.B) {
		s := xleaveServer(synced(), 0)
		var x xlOut
		i := uint32(0)
		for b.Loop() {
			i++
			a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			s.handleX(nil, req, resp, now, now, netip.AddrPortFrom(a, 123), &x)
		}
	})
}
