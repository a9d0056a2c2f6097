package ntp

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/ntp/engine"
	"github.com/meridiantime/meridian/truetime"
)

// TimeSource is what the server serves: TrueTime and the estimate behind it.
type TimeSource interface {
	Now() (truetime.Interval, error)
	Estimate() truetime.Estimate
	LocalNS() int64 // the clock's own reading, served while unsynchronized
}

// RateLimit is the per-client-address token bucket (see ratelimit.go); zero
// RequestsPerSecond disables it (as in chronyd, rate limiting is off by
// default).
type RateLimit struct {
	RequestsPerSecond float64
	Burst             int
	TableSize         int     // addresses tracked, all workers together (power of two, ≤ MaxRateLimitTable)
	Leak              float64 // fraction of over-limit requests answered anyway (0 → DefaultRateLimitLeak, < 0 → none)
	KoD               bool    // send RATE kiss-o'-death (at most one per Burst/RequestsPerSecond per address)
}

// ServerStats are cumulative counters. Replies, KoDRate,
// RepliesUnsynchronized and RateLeaked count datagrams the kernel accepted;
// a reply that could not be sent is counted in SendErrors (by errno name)
// and WriteErrors instead.
type ServerStats struct {
	Requests, Replies, KoDRate         uint64
	DropShort, DropMode, DropVersion   uint64
	DropSourcePort                     uint64 // UDP source port 0: no reply can reach it
	DropDenied                         uint64 // client address refused by allow/deny
	RateDropped, RateLeaked            uint64 // over the limit: dropped / answered anyway
	RepliesUnsynchronized, WriteErrors uint64
	SendErrors                         map[string]uint64

	// Interleaved mode (see xleave.go): replies that carried the previous
	// reply's kernel TX stamp; kernel stamps stored in the table, and those
	// dropped as out of range; restarts of the stamp numbering after a
	// failed send; the table's entries in use, capacity and evictions.
	InterleavedReplies               uint64
	TxStamps, TxStampsBad, TxResyncs uint64
	XleaveEntries, XleaveCapacity    uint64
	XleaveEvictions                  uint64
}

// Verdict is what the server does with one request.
type Verdict uint8

const (
	Reply Verdict = iota
	ReplyKoD
	DropShort
	DropMode
	DropVersion
	DropSourcePort
	DropRate
	DropDenied

	flagXleave Verdict = 0x20 // with Reply: interleaved
	flagUnsync Verdict = 0x40 // with Reply: LI=3, stratum 16
	flagLeak   Verdict = 0x80 // with Reply: over the limit, leaked
)

// kind strips the flags.
func (v Verdict) kind() Verdict { return v &^ (flagXleave | flagUnsync | flagLeak) }

// sendErrnos are the errno values counted by name; others count as "other".
var sendErrnos = [...]syscall.Errno{unix.EINVAL, unix.EPERM, unix.EACCES, unix.ENETUNREACH, unix.EHOSTUNREACH,
	unix.EMSGSIZE, unix.ENOBUFS, unix.EAFNOSUPPORT, unix.ECONNREFUSED, unix.EADDRNOTAVAIL}

// SendErrorReasons are the keys of ServerStats.SendErrors.
func SendErrorReasons() []string {
	r := make([]string, 0, len(sendErrnos)+1)
	for _, e := range sendErrnos {
		r = append(r, unix.ErrnoName(e))
	}
	return append(r, "other")
}

// Server answers NTP client requests with the disciplined clock and its real
// state: LI=3 and stratum 16 while unsynchronized; otherwise the estimate's
// stratum, reference, root delay, and a root dispersion that covers the
// current error bound ε (so a client's rootDelay/2 + rootDispersion bounds
// our error). Timestamps are the TrueTime interval's midpoint.
type Server struct {
	ts  TimeSource
	lim *limiter // shared by every worker; nil: no limit
	log *slog.Logger

	requests, replies, kodRate, dropShort, dropMode, dropVersion, dropPort, unsync, writeErrs atomic.Uint64
	rateDropped, rateLeaked                                                                   atomic.Uint64
	sendErrs                                                                                  [len(sendErrnos) + 1]atomic.Uint64

	allowPort0  bool // test knob: serve UDP source port 0 (the negative control of the check)
	access      atomic.Pointer[Access]
	clog        *clientLog
	dropDenied  atomic.Uint64
	testIDShift uint32 // test knob: pair TX stamps with another reply (see txStamper.idShift)
	// testStampAll is a test knob: every reply asks for a kernel transmit
	// stamp, not only those the table awaits (the negative control of the
	// numbering: the ring numbers only the latter).
	testStampAll bool
	// testWake is a test knob: the workers' backstop wake-up (sockWake) when
	// non-zero.
	testWake time.Duration
	// testTxShiftNS is a test knob: moves the batch's served-clock reading
	// (the transmit timestamps) by this much after it was read.
	testTxShiftNS int64

	// Interleaved mode: the table (nil: basic mode only) and its counters.
	xt                                              *xtable
	xleaveReplies, txStamps, txStampsBad, txResyncs atomic.Uint64
	// HardwareTxToServed maps a NIC (PHC) transmit stamp to the served
	// clock; set before Listen, it also asks the sockets for hardware TX
	// stamps (the NIC must have been set up for them, see package hwts).
	// Nil: hardware stamps are dropped and software ones used.
	HardwareTxToServed func(phcNS int64) (int64, bool)
	// BusyPoll, set before Listen, is SO_BUSY_POLL on every socket (whole
	// microseconds; 0: off): a worker whose socket is empty polls the
	// NIC's queue that long before sleeping. Traffic from a NAPI driver
	// only; loopback's is not polled.
	BusyPoll time.Duration

	mu      sync.Mutex
	socks   []*sock
	serving bool // Serve owns the descriptors: it closes them when its workers are done
}

// sock is one server socket: a blocking UDP socket outside Go's network
// poller, served by one worker.
type sock struct {
	fd     int
	addr   string
	clog   *clientLog    // its worker's client log
	wake   time.Duration // the backstop wake-up: SO_RCVTIMEO, and the wait for room to send
	closed atomic.Bool   // Close was called: the worker stops at its next wake-up
	fdDone bool          // the descriptor is closed (under Server.mu)
}

// sockWake is how often, at least, a worker blocked on its socket wakes
// (SO_RCVTIMEO; also the wait for room in a full send buffer): a backstop
// for Close, which wakes it at once by shutting the socket down.
const sockWake = 500 * time.Millisecond

// NewServer returns a server for ts. Out-of-range rate-limit values are
// clamped (config validates them; see config.RateLimit).
func NewServer(ts TimeSource, limit RateLimit, log *slog.Logger) *Server {
	if limit.TableSize <= 0 {
		limit.TableSize = 4096
	}
	limit.TableSize = min(limit.TableSize, MaxRateLimitTable)
	if limit.Burst <= 0 {
		limit.Burst = 8
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if math.IsNaN(limit.RequestsPerSecond) || math.IsInf(limit.RequestsPerSecond, 0) {
		limit.RequestsPerSecond = 0
	}
	if math.IsNaN(limit.Leak) {
		limit.Leak = 0
	}
	limit.Leak = min(limit.Leak, 1)
	return &Server{ts: ts, lim: newLimiter(limit, newAddrKey()), log: log, clog: newClientLog()}
}

// EnableInterleaved turns on interleaved mode (see xleave.go) with a table
// of tableSize client addresses (0: DefaultInterleavedTable; rounded up to
// a power of two, at most MaxInterleavedTable). Call it before Listen.
func (s *Server) EnableInterleaved(tableSize int) {
	if tableSize <= 0 {
		tableSize = DefaultInterleavedTable
	}
	s.xt = newXTable(tableSize, newAddrKey())
}

// Stats returns the counters.
func (s *Server) Stats() ServerStats {
	st := ServerStats{
		Requests: s.requests.Load(), Replies: s.replies.Load(), KoDRate: s.kodRate.Load(),
		DropShort: s.dropShort.Load(), DropMode: s.dropMode.Load(), DropVersion: s.dropVersion.Load(),
		DropSourcePort: s.dropPort.Load(), DropDenied: s.dropDenied.Load(), RateDropped: s.rateDropped.Load(), RateLeaked: s.rateLeaked.Load(),
		RepliesUnsynchronized: s.unsync.Load(), WriteErrors: s.writeErrs.Load(),
		SendErrors: map[string]uint64{},
	}
	for i, r := range SendErrorReasons() {
		st.SendErrors[r] = s.sendErrs[i].Load()
	}
	st.InterleavedReplies = s.xleaveReplies.Load()
	st.TxStamps, st.TxStampsBad, st.TxResyncs = s.txStamps.Load(), s.txStampsBad.Load(), s.txResyncs.Load()
	if s.xt != nil {
		st.XleaveEntries = uint64(max(0, s.xt.live.Load()))
		st.XleaveCapacity = uint64(s.xt.capacity())
		st.XleaveEvictions = s.xt.evictions.Load()
	}
	return st
}

// monoBase anchors monoNS.
var monoBase = time.Now()

// monoNS is a monotonic clock reading (ns since monoBase) for the limiter.
func monoNS() int64 { return int64(time.Since(monoBase)) }

// tally is a worker's counts between flushes: a plain increment per
// request, and one atomic add per counter that moved per batch (flush).
type tally struct {
	requests, dropShort, dropMode, dropVersion, dropPort, dropDenied, rateDropped uint64
	replies, kodRate, unsync, rateLeaked, xleave                                  uint64
}

// sent counts a reply the kernel accepted.
func (t *tally) sent(v Verdict) {
	switch v.kind() {
	case Reply:
		t.replies++
	case ReplyKoD:
		t.kodRate++
	}
	if v&flagUnsync != 0 {
		t.unsync++
	}
	if v&flagLeak != 0 {
		t.rateLeaked++
	}
	if v&flagXleave != 0 {
		t.xleave++
	}
}

// flush adds t to the server's counters and clears it.
func (s *Server) flush(t *tally) {
	addNZ(&s.requests, t.requests)
	addNZ(&s.dropShort, t.dropShort)
	addNZ(&s.dropMode, t.dropMode)
	addNZ(&s.dropVersion, t.dropVersion)
	addNZ(&s.dropPort, t.dropPort)
	addNZ(&s.dropDenied, t.dropDenied)
	addNZ(&s.rateDropped, t.rateDropped)
	addNZ(&s.replies, t.replies)
	addNZ(&s.kodRate, t.kodRate)
	addNZ(&s.unsync, t.unsync)
	addNZ(&s.rateLeaked, t.rateLeaked)
	addNZ(&s.xleaveReplies, t.xleave)
	*t = tally{}
}

func addNZ(c *atomic.Uint64, n uint64) {
	if n != 0 {
		c.Add(n)
	}
}

// sent counts a reply the kernel accepted.
func (s *Server) sent(v Verdict) {
	var t tally
	t.sent(v)
	s.flush(&t)
}

// sendFailed counts a reply the kernel refused with e.
func (s *Server) sendFailed(e syscall.Errno) {
	s.writeErrs.Add(1)
	i := len(sendErrnos)
	for j, x := range sendErrnos {
		if x == e {
			i = j
			break
		}
	}
	s.sendErrs[i].Add(1)
}

// served is one reading of the served clock with the estimate behind it:
// what a reply's transmit timestamp, leap indicator, stratum, reference
// and root values come from. The batched workers read it once per batch,
// after the batch was received (so it is later than every request's
// receive: a transmit timestamp may be early, never late, and never
// before the receive); single requests read it per request.
type served struct {
	est truetime.Estimate
	iv  truetime.Interval // iv.Earliest = iv.Latest = the local reading while unsynchronized
	err error             // from Now: unsynchronized (LI=3, stratum 16)

	// What every reply built from this reading shares, encoded once by
	// prepare (per batch, not per reply).
	leap, stratum       uint8
	refID               uint32
	refTime             uint64
	rootDelay, rootDisp uint32
	midNS               int64  // iv's midpoint: the transmit timestamp
	midNTP              uint64 // midNS in NTP form
}

// read reads the served clock into p and returns its midpoint.
func (p *served) read(ts TimeSource) int64 {
	p.iv, p.err = ts.Now()
	if p.err != nil {
		l := ts.LocalNS()
		p.iv.EarliestNS, p.iv.LatestNS = l, l
	}
	return p.iv.MidNS()
}

// prepare encodes the fields of a reply that p decides: the leap
// indicator, stratum, reference, root delay and dispersion of p.est and
// p.iv (all zero but the leap indicator and stratum while unsynchronized),
// and the transmit timestamp. Call it after p.est and p.iv are final.
func (p *served) prepare() {
	p.midNS = p.iv.MidNS()
	p.midNTP = engine.ToNTP(p.midNS)
	p.refID, p.refTime, p.rootDelay, p.rootDisp = 0, 0, 0, 0
	if p.err != nil {
		p.leap, p.stratum = engine.LeapUnsync, engine.StratumNone
		return
	}
	e := &p.est
	p.leap = engine.LeapNone
	switch e.Leap {
	case truetime.LeapInsert:
		p.leap = engine.LeapInsert
	case truetime.LeapDelete:
		p.leap = engine.LeapDelete
	}
	p.stratum = max(1, min(e.Stratum, 15))
	p.refID = e.RefID
	p.refTime = engine.ToNTP(e.LastSampleNS)
	p.rootDelay = engine.NSToShort(e.RootDelayNS)
	p.rootDisp = engine.NSToShort(max(0, p.iv.EpsNS()-e.RootDelayNS/2))
}

// transmit is the transmit timestamp of a reply to a request received at
// rxNS: the reading's midpoint, or rxNS if that is later (a new estimate
// between receive and transmit may move the midpoint back a little, and a
// reply must never send before it received).
func (p *served) transmit(rxNS int64) uint64 {
	if rxNS <= p.midNS {
		return p.midNTP
	}
	return engine.ToNTP(rxNS)
}

// readServed reads the estimate and then the served clock.
func (s *Server) readServed(p *served) {
	p.est = s.ts.Estimate()
	p.read(s.ts)
	p.prepare()
}

// Handle builds the reply to req in resp (at least 48 bytes) and returns its
// length; 0 means drop. rxNS is the receive timestamp (TrueTime midpoint);
// the transmit timestamp is read as late as possible, inside. It does not
// allocate. The reply is never longer than the request (no amplification).
// monoNS is a monotonic reading for the rate limiter (steps of the served
// clock must not refill or stall buckets). The caller counts the reply
// with s.sent once it is out.
func (s *Server) handle(lim *limiter, req, resp []byte, rxNS, monoNS int64, from netip.AddrPort) (int, Verdict) {
	return s.handleX(lim, req, resp, rxNS, monoNS, from, nil)
}

// xlOut is what handleX tells its caller about a reply in interleaved mode:
// rec says the table awaits the reply's kernel TX stamp under (addr, rx).
type xlOut struct {
	rec  bool
	addr ipWords
	rx   uint64
	rxNS int64
}

// handleX is handle on a socket with kernel TX stamps: with x non-nil and
// interleaved mode on, it answers requests in interleaved form from the
// table and records the reply there (see xleave.go).
func (s *Server) handleX(lim *limiter, req, resp []byte, rxNS, monoNS int64, from netip.AddrPort, x *xlOut) (int, Verdict) {
	var now served
	s.readServed(&now)
	return s.handleAt(lim, req, resp, rxNS, monoNS, from, x, &now)
}

// handleAt is handleX with the served clock already read (now, after the
// request's receive).
func (s *Server) handleAt(lim *limiter, req, resp []byte, rxNS, monoNS int64, from netip.AddrPort, x *xlOut, now *served) (int, Verdict) {
	var t tally
	w := wordsOf(from.Addr())
	n, v := s.answer(lim, req, resp, rxNS, monoNS, from, w, x, now, &t)
	s.clog.record(w, v, monoNS)
	s.flush(&t)
	return n, v
}

// answer is handleAt before the client log, counting into t; w is
// wordsOf(from.Addr()).
func (s *Server) answer(lim *limiter, req, resp []byte, rxNS, monoNS int64, from netip.AddrPort, w ipWords, x *xlOut, now *served, t *tally) (int, Verdict) {
	if x != nil {
		x.rec = false
	}
	t.requests++
	if from.Port() == 0 && !s.allowPort0 {
		// Only a spoofed (raw) packet has source port 0; its reply cannot be
		// sent and would fail sendmmsg for the rest of the batch.
		t.dropPort++
		return 0, DropSourcePort
	}
	if acl := s.access.Load(); acl != nil && !acl.Allowed(from.Addr()) {
		t.dropDenied++
		return 0, DropDenied
	}
	var h engine.Header
	switch {
	case !h.Decode(req):
		t.dropShort++
		return 0, DropShort
	case h.Mode != engine.ModeClient: // control (6), private (7), symmetric, broadcast: not served
		t.dropMode++
		return 0, DropMode
	case h.Version < 1 || h.Version > 4:
		t.dropVersion++
		return 0, DropVersion
	}
	out := engine.Header{Version: h.Version, Mode: engine.ModeServer, Poll: h.Poll, Origin: h.Transmit}
	v := Reply
	switch lim.check(from, w, monoNS) {
	case rlLeak:
		v |= flagLeak
	case rlKoD:
		out.Leap, out.Stratum, out.RefID = engine.LeapUnsync, engine.StratumKoD, engine.KissRATE
		out.Receive, out.Transmit = engine.ToNTP(rxNS), engine.ToNTP(rxNS)
		out.Encode(resp)
		return engine.HeaderLen, ReplyKoD
	case rlDrop:
		t.rateDropped++
		return 0, DropRate
	}
	out.Precision = -20 // ~1 µs
	out.Receive = engine.ToNTP(rxNS)
	out.Leap, out.Stratum, out.RefID, out.RefTime = now.leap, now.stratum, now.refID, now.refTime
	out.RootDelay, out.RootDisp = now.rootDelay, now.rootDisp
	if now.err != nil {
		v |= flagUnsync
	}
	out.Transmit = now.transmit(rxNS)
	if x != nil && s.xt != nil && h.Version == 4 && (h.Origin != 0 || h.Receive != 0) {
		// Interleaved form: a non-zero origin, receive ≠ transmit (so a
		// basic request echoing our transmit field is never taken for one),
		// and the origin is the receive timestamp of our last reply.
		lookup := h.Origin != 0 && h.Receive != h.Transmit
		txNS, ok, rx := s.xt.exchange(w, h.Origin, lookup, out.Receive, monoNS)
		out.Receive = rx
		if ok {
			out.Origin, out.Transmit = h.Receive, engine.ToNTP(txNS)
			v |= flagXleave
		}
		*x = xlOut{rec: true, addr: w, rx: rx, rxNS: rxNS}
	}
	out.Encode(resp)
	return engine.HeaderLen, v
}

// HandleRequest answers one request exactly as the server's sockets do,
// without rate limiting: the simulator answers its simulated clients with
// it. rxNS is the receive timestamp; the reply goes into resp (≥ 48 bytes)
// and its length is returned (0: drop). The reply counts as sent.
func (s *Server) HandleRequest(req, resp []byte, rxNS int64, from netip.Addr) (int, Verdict) {
	n, v := s.handle(nil, req, resp, rxNS, rxNS, netip.AddrPortFrom(from, 123))
	if n > 0 {
		s.sent(v)
	}
	return n, v.kind()
}

// Listen opens workers sockets on addr ("host:port"), SO_REUSEPORT when
// there are several. One socket is bound alone: the kernel then skips the
// reuseport group's hash and selection on every datagram, and no other
// process of this user can bind the port beside it.
func (s *Server) Listen(addr string, workers int) error {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if workers > 1 {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}
			// Replies (48 bytes, never fragmented) go out with DF set:
			// the kernel then gives them IP ID 0 (RFC 6864) instead of
			// hashing a shared ID generator per datagram, as it does for
			// datagrams that may be fragmented (IP_PMTUDISC_WANT, the
			// default, with IPv4 and IPv4-mapped clients alike). A
			// kernel without it costs only that: not an error.
			_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO)
			if us := int(s.BusyPoll / time.Microsecond); serr == nil && us > 0 {
				if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BUSY_POLL, us); serr != nil {
					serr = fmt.Errorf("SO_BUSY_POLL %dµs: %w", us, serr)
				}
			}
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return serr
		}
		if err := enableRxTimestamps(c); err != nil || s.xt == nil {
			return err
		}
		return c.Control(func(fd uintptr) {
			if !enableTxStamps(int(fd), s.HardwareTxToServed != nil) {
				s.log.Warn("ntp server: no kernel transmit stamps: interleaved mode off on this socket", "addr", addr)
			}
		})
	}}
	for i := 0; i < max(1, workers); i++ {
		pc, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err == nil {
			var sk *sock
			wake := sockWake
			if s.testWake > 0 {
				wake = s.testWake
			}
			if sk, err = detach(pc.(*net.UDPConn), wake); err == nil {
				s.mu.Lock()
				s.socks = append(s.socks, sk)
				s.mu.Unlock()
				if i == 0 {
					addr = sk.addr // port 0: the other workers join the chosen port
				}
			}
		}
		if err != nil {
			s.Close()
			return fmt.Errorf("ntp server: listen %s: %w", addr, err)
		}
	}
	return nil
}

// detach takes a socket Go opened (and resolved, bound and set up) out of
// Go's network poller: it duplicates the descriptor, closes the
// net.UDPConn — which removes it from the poller's epoll set before closing
// its own descriptor — and makes the duplicate blocking, with a receive
// timeout of wake. A worker then
// waits in recvmmsg itself: one system call per wake-up instead of a
// recvmmsg that finds nothing, a poller wake-up and a goroutine switch;
// and the kernel no longer calls the poller's epoll callback for every
// datagram received and every reply's buffer freed, which on loopback cost
// about a tenth of the server's CPU under load.
func detach(c *net.UDPConn, wake time.Duration) (*sock, error) {
	defer c.Close()
	sk := &sock{fd: -1, addr: c.LocalAddr().String(), wake: wake, clog: newClientLog()}
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var derr error
	if err := rc.Control(func(fd uintptr) { sk.fd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, derr
	}
	tv := unix.NsecToTimeval(wake.Nanoseconds())
	if err := unix.SetNonblock(sk.fd, false); err != nil {
		unix.Close(sk.fd)
		return nil, err
	}
	if err := unix.SetsockoptTimeval(sk.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(sk.fd)
		return nil, err
	}
	return sk, nil
}

// Addr is the bound address ("" before Listen).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.socks) == 0 {
		return ""
	}
	return s.socks[0].addr
}

// Serve runs the workers until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	socks := append([]*sock(nil), s.socks...)
	s.serving = true
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, sk := range socks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.batchWorker(sk)
		}()
	}
	<-ctx.Done()
	s.Close()
	wg.Wait()
	s.mu.Lock()
	s.serving = false
	s.closeFDs()
	s.mu.Unlock()
	return nil
}

// Close stops the workers: it marks each socket closed and shuts it down,
// which wakes a worker blocked in recvmmsg. The descriptors are closed
// once no worker uses them (by Serve, or here if Serve is not running).
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sk := range s.socks {
		if !sk.closed.Swap(true) && !sk.fdDone {
			// On an unconnected UDP socket this returns ENOTCONN but
			// still marks it shut down and wakes its waiters.
			_ = unix.Shutdown(sk.fd, unix.SHUT_RDWR)
		}
	}
	if !s.serving {
		s.closeFDs()
	}
}

// closeFDs closes every socket's descriptor once (with s.mu held).
func (s *Server) closeFDs() {
	for _, sk := range s.socks {
		if !sk.fdDone {
			sk.fdDone = true
			unix.Close(sk.fd)
		}
	}
}
