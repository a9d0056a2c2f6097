package ntp

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/truetime"
)

// TimeSource is what the server serves: TrueTime and the estimate behind it.
type TimeSource interface {
	Now() (truetime.Interval, error)
	Estimate() truetime.Estimate
	LocalNS() int64 // the clock's own reading, served while unsynchronized
}

// RateLimit is a per-client token bucket; zero RequestsPerSecond disables it
// (as in chronyd, rate limiting is off by default).
type RateLimit struct {
	RequestsPerSecond float64
	Burst             int
	TableSize         int // clients tracked per worker (rounded up to a power of two)
}

// ServerStats are cumulative counters.
type ServerStats struct {
	Requests, Replies, KoDRate         uint64
	DropShort, DropMode, DropVersion   uint64
	RepliesUnsynchronized, WriteErrors uint64
}

// Verdict is what the server does with one request.
type Verdict int

const (
	Reply Verdict = iota
	ReplyKoD
	DropShort
	DropMode
	DropVersion
)

// Server answers NTP client requests with the disciplined clock and its real
// state: LI=3 and stratum 16 while unsynchronized; otherwise the estimate's
// stratum, reference, root delay, and a root dispersion that covers the
// current error bound ε (so a client's rootDelay/2 + rootDispersion bounds
// our error). Timestamps are the TrueTime interval's midpoint.
type Server struct {
	ts    TimeSource
	limit RateLimit
	seed  maphash.Seed
	log   *slog.Logger

	requests, replies, kodRate, dropShort, dropMode, dropVersion, unsync, writeErrs atomic.Uint64

	mu    sync.Mutex
	conns []*net.UDPConn
}

// NewServer returns a server for ts.
func NewServer(ts TimeSource, limit RateLimit, log *slog.Logger) *Server {
	if limit.TableSize <= 0 {
		limit.TableSize = 4096
	}
	if limit.Burst <= 0 {
		limit.Burst = 8
	}
	return &Server{ts: ts, limit: limit, seed: maphash.MakeSeed(), log: log}
}

// Stats returns the counters.
func (s *Server) Stats() ServerStats {
	return ServerStats{
		Requests: s.requests.Load(), Replies: s.replies.Load(), KoDRate: s.kodRate.Load(),
		DropShort: s.dropShort.Load(), DropMode: s.dropMode.Load(), DropVersion: s.dropVersion.Load(),
		RepliesUnsynchronized: s.unsync.Load(), WriteErrors: s.writeErrs.Load(),
	}
}

// limiter is one worker's bounded client table (no locks: one per worker).
type limiter struct {
	rate, burst float64
	seed        maphash.Seed
	mask        uint64
	slots       []bucket
}

type bucket struct {
	addr   netip.Addr
	tokens float64
	lastNS int64
}

func newLimiter(l RateLimit, seed maphash.Seed) *limiter {
	if l.RequestsPerSecond <= 0 {
		return nil
	}
	n := 1
	for n < l.TableSize {
		n <<= 1
	}
	return &limiter{rate: l.RequestsPerSecond, burst: float64(l.Burst), seed: seed, mask: uint64(n - 1), slots: make([]bucket, n)}
}

// allow charges one request to addr at nowNS. A client whose slot was taken
// by another starts with a full bucket: the table is bounded, so an attacker
// cycling addresses evicts rather than grows it.
func (l *limiter) allow(addr netip.Addr, nowNS int64) bool {
	if l == nil {
		return true
	}
	a16 := addr.As16()
	b := &l.slots[maphash.Bytes(l.seed, a16[:])&l.mask]
	if b.addr != addr {
		*b = bucket{addr: addr, tokens: l.burst, lastNS: nowNS}
	} else if dt := nowNS - b.lastNS; dt > 0 {
		b.tokens = math.Min(l.burst, b.tokens+l.rate*float64(dt)/1e9)
		b.lastNS = nowNS
	}
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}

// Handle builds the reply to req in resp (at least 48 bytes) and returns its
// length; 0 means drop. rxNS is the receive timestamp (TrueTime midpoint);
// the transmit timestamp is read as late as possible, inside. It does not
// allocate. The reply is never longer than the request (no amplification).
func (s *Server) handle(lim *limiter, req, resp []byte, rxNS int64, from netip.Addr) (int, Verdict) {
	s.requests.Add(1)
	h, ok := decodeHeader(req)
	switch {
	case !ok:
		s.dropShort.Add(1)
		return 0, DropShort
	case h.Mode != ModeClient: // control (6), private (7), symmetric, broadcast: not served
		s.dropMode.Add(1)
		return 0, DropMode
	case h.Version < 1 || h.Version > 4:
		s.dropVersion.Add(1)
		return 0, DropVersion
	}
	out := header{Version: h.Version, Mode: ModeServer, Poll: h.Poll, Origin: h.Transmit}
	if !lim.allow(from, rxNS) {
		out.Leap, out.Stratum, out.RefID = LeapUnsync, StratumKoD, KissRATE
		out.Receive, out.Transmit = ToNTP(rxNS), ToNTP(rxNS)
		out.encode(resp)
		s.kodRate.Add(1)
		return headerLen, ReplyKoD
	}
	e := s.ts.Estimate()
	out.Precision = -20 // ~1 µs
	out.Receive = ToNTP(rxNS)
	iv, err := s.ts.Now()
	if err != nil {
		out.Leap, out.Stratum = LeapUnsync, StratumNone
		s.unsync.Add(1)
		l := s.ts.LocalNS()
		iv.EarliestNS, iv.LatestNS = l, l
	} else {
		out.Leap = LeapNone
		switch e.Leap {
		case truetime.LeapInsert:
			out.Leap = LeapInsert
		case truetime.LeapDelete:
			out.Leap = LeapDelete
		}
		out.Stratum = max(1, min(e.Stratum, 15))
		out.RefID = e.RefID
		out.RefTime = ToNTP(e.LastSampleNS)
		out.RootDelay = NSToShort(e.RootDelayNS)
		out.RootDisp = NSToShort(max(0, iv.EpsNS()-e.RootDelayNS/2))
	}
	// A new estimate between receive and transmit may move the midpoint
	// back a little; a reply must never send before it received.
	out.Transmit = ToNTP(max(iv.MidNS(), rxNS))
	out.encode(resp)
	s.replies.Add(1)
	return headerLen, Reply
}

// HandleRequest answers one request exactly as the server's sockets do,
// without rate limiting: the simulator answers its simulated clients with
// it. rxNS is the receive timestamp; the reply goes into resp (≥ 48 bytes)
// and its length is returned (0: drop).
func (s *Server) HandleRequest(req, resp []byte, rxNS int64, from netip.Addr) (int, Verdict) {
	return s.handle(nil, req, resp, rxNS, from)
}

// Listen opens workers SO_REUSEPORT sockets on addr ("host:port").
func (s *Server) Listen(addr string, workers int) error {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return serr
		}
		return enableRxTimestamps(c)
	}}
	for i := 0; i < max(1, workers); i++ {
		pc, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			s.Close()
			return fmt.Errorf("ntp server: listen %s: %w", addr, err)
		}
		s.mu.Lock()
		s.conns = append(s.conns, pc.(*net.UDPConn))
		s.mu.Unlock()
		if i == 0 && addr != pc.LocalAddr().String() {
			addr = pc.LocalAddr().String() // port 0: the other workers join the chosen port
		}
	}
	return nil
}

// Addr is the bound address ("" before Listen).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.conns) == 0 {
		return ""
	}
	return s.conns[0].LocalAddr().String()
}

// Serve runs the workers until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	conns := append([]*net.UDPConn(nil), s.conns...)
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.batchWorker(c)
		}()
	}
	<-ctx.Done()
	s.Close()
	wg.Wait()
	return nil
}

// Close closes the sockets.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

func (s *Server) worker(c *net.UDPConn) {
	lim := newLimiter(s.limit, s.seed)
	req := make([]byte, 1500)
	resp := make([]byte, headerLen)
	oob := make([]byte, oobLen)
	for {
		n, oobn, _, from, err := c.ReadMsgUDPAddrPort(req, oob)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Warn("ntp server read", "err", err)
			}
			return
		}
		realtime := time.Now().UnixNano() // before the clock read: see rxAt
		rxNS := s.ts.LocalNS()
		if iv, err := s.ts.Now(); err == nil {
			rxNS = iv.MidNS()
		}
		rxNS = rxAt(realtime, rxNS, oob[:oobn])
		if rl, _ := s.handle(lim, req[:n], resp, rxNS, from.Addr()); rl > 0 {
			if _, err := c.WriteToUDPAddrPort(resp[:rl], from); err != nil {
				s.writeErrs.Add(1)
			}
		}
	}
}
