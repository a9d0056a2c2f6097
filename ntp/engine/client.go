package engine

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/facebook/time/ntp/protocol"

	"github.com/meridiantime/meridian/discipline"
	"github.com/meridiantime/meridian/truetime"
)

// Client response errors. A caller counts them and keeps waiting for a good
// reply; only ErrKissStop ends the source.
var (
	ErrShort         = errors.New("ntp: short packet")
	ErrNotServer     = errors.New("ntp: not a server-mode packet")
	ErrNotPending    = errors.New("ntp: no request outstanding (duplicate or late reply)")
	ErrOrigin        = errors.New("ntp: origin timestamp mismatch (spoofed or stale reply)")
	ErrUnsyncSource  = errors.New("ntp: source is unsynchronized (LI=3 or stratum 16)")
	ErrBadTimestamps = errors.New("ntp: implausible timestamps")
	ErrKissRate      = errors.New("ntp: kiss-o'-death RATE: polling less often")
	ErrKissStop      = errors.New("ntp: kiss-o'-death DENY/RSTR: source stopped")
	ErrKiss          = errors.New("ntp: unknown kiss-o'-death code")
)

// ClientConfig tunes one source's polling.
type ClientConfig struct {
	Poll    time.Duration // starting poll interval (0 → MinPoll, or 16s)
	MinPoll time.Duration // with MaxPoll > MinPoll the poll adapts between them
	MaxPoll time.Duration // also the cap when a server asks us to slow down (0 → 1024s)
	IBurst  bool          // four requests 2 s apart at start
}

// maxRootDisp rejects servers that claim an error beyond usefulness (RFC 5905 MAXDISP).
const maxRootDispNS = 16e9

// Client is the pure per-source state machine: it builds requests and
// validates replies; the caller owns the socket and the clock.
type Client struct {
	cfg      ClientConfig
	rng      *rand.Rand
	reach    uint8
	sent     int
	pending  bool
	origin   uint64 // random transmit timestamp we sent (anti-spoofing)
	t1       int64
	poll     time.Duration
	good     int // consecutive valid replies at this poll
	stopped  error
	lastKiss uint32
	advice   time.Duration // poll the discipline asks for; 0: none
}

// NewClient returns a client; seed makes origins unpredictable to off-path
// attackers (pass a crypto-random seed) and reproducible in tests.
func NewClient(cfg ClientConfig, seed uint64) *Client {
	if cfg.Poll <= 0 {
		cfg.Poll = cfg.MinPoll
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 16 * time.Second
	}
	if cfg.MaxPoll <= 0 {
		cfg.MaxPoll = 1024 * time.Second
	}
	return &Client{cfg: cfg, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), poll: cfg.Poll}
}

// Reach is the reachability register: bit 0 is the newest poll.
func (c *Client) Reach() uint8 { return c.reach }

// Stopped is non-nil once a server told us to stop (DENY, RSTR).
func (c *Client) Stopped() error { return c.stopped }

// adaptive reports whether the poll moves between MinPoll and MaxPoll.
func (c *Client) adaptive() bool { return c.cfg.MinPoll > 0 && c.cfg.MaxPoll > c.cfg.MinPoll }

// missed shortens an adaptive poll after a request went unanswered, so a
// flaky path is sampled more often (never below MinPoll).
func (c *Client) missed() {
	c.good = 0
	if c.adaptive() {
		c.poll = max(c.poll/2, c.cfg.MinPoll)
	}
}

// answered moves an adaptive poll after a good reply. With advice from the
// discipline (Advise) it halves at once when the advice is shorter and
// doubles after 4 good replies in a row when the advice is at least twice
// as long; without advice it doubles after 8 good replies in a row (ntpd
// and chrony do the same): a stable path needs fewer samples.
func (c *Client) answered() {
	c.good++
	if !c.adaptive() {
		return
	}
	switch {
	case c.advice > 0 && c.advice < c.poll:
		c.poll = max(c.poll/2, c.cfg.MinPoll)
		c.good = 0
	case c.advice > 0 && c.advice >= 2*c.poll && c.good >= 4, c.advice == 0 && c.good >= 8:
		c.poll = min(2*c.poll, c.cfg.MaxPoll)
		c.good = 0
	}
}

// Advise sets the poll interval the discipline's filter asks for (see
// discipline.SourceReport.PollTargetNS); 0 withdraws the advice. The poll
// moves towards it one factor of two per reply, within MinPoll..MaxPoll.
func (c *Client) Advise(target time.Duration) { c.advice = max(target, 0) }

// Poll is the current steady poll interval.
func (c *Client) Poll() time.Duration { return c.poll }

// NextInterval is the wait before the next request.
func (c *Client) NextInterval() time.Duration {
	if c.cfg.IBurst && c.sent < 4 {
		return 2 * time.Second
	}
	return c.poll
}

// Request writes a 48-byte client request into buf for a send at local time
// t1NS. The transmit timestamp on the wire is random: the reply must echo it,
// and it reveals nothing about our clock.
func (c *Client) Request(buf []byte, t1NS int64) int {
	if c.pending {
		c.missed()
	}
	c.reach <<= 1
	c.sent++
	c.pending = true
	c.origin = c.rng.Uint64()
	c.t1 = t1NS
	h := Header{Version: 4, Mode: ModeClient, Transmit: c.origin, Poll: pollExp(c.poll)}
	h.Encode(buf)
	return HeaderLen
}

// SetT1 replaces the send time of the outstanding request with a better
// (kernel) stamp taken after the send. It must not be later than the real
// departure (see txAt).
func (c *Client) SetT1(t1NS int64) {
	if c.pending {
		c.t1 = t1NS
	}
}

func pollExp(d time.Duration) int8 {
	e := int8(0)
	for s := time.Second; s < d && e < 17; s *= 2 {
		e++
	}
	return e
}

// Response validates a reply received at local time t4NS and returns the
// sample for the discipline.
func (c *Client) Response(b []byte, t4NS int64) (discipline.Sample, error) {
	// facebook/time's parser validates the whole packet (extension fields,
	// legacy MAC); a reply it rejects is not used.
	var p protocol.Packet
	if len(b) < HeaderLen {
		return discipline.Sample{}, ErrShort
	}
	if err := p.UnmarshalBinary(b); err != nil {
		return discipline.Sample{}, fmt.Errorf("%w: %v", ErrShort, err)
	}
	h := Header{
		Leap: p.Settings >> 6, Version: p.Settings >> 3 & 7, Mode: p.Settings & 7,
		Stratum: p.Stratum, Poll: p.Poll, Precision: p.Precision,
		RootDelay: p.RootDelay, RootDisp: p.RootDispersion, RefID: p.ReferenceID,
		RefTime:  uint64(p.RefTimeSec)<<32 | uint64(p.RefTimeFrac),
		Origin:   uint64(p.OrigTimeSec)<<32 | uint64(p.OrigTimeFrac),
		Receive:  uint64(p.RxTimeSec)<<32 | uint64(p.RxTimeFrac),
		Transmit: uint64(p.TxTimeSec)<<32 | uint64(p.TxTimeFrac),
	}
	switch {
	case h.Mode != ModeServer || h.Version < 1 || h.Version > 4:
		return discipline.Sample{}, ErrNotServer
	case !c.pending:
		return discipline.Sample{}, ErrNotPending
	case h.Origin != c.origin:
		return discipline.Sample{}, ErrOrigin
	}
	c.pending = false
	if h.Stratum == StratumKoD {
		c.lastKiss = h.RefID
		switch h.RefID {
		case KissRATE:
			c.poll = min(2*c.poll, c.cfg.MaxPoll)
			return discipline.Sample{}, ErrKissRate
		case KissDENY, KissRSTR:
			c.stopped = fmt.Errorf("%w (%s)", ErrKissStop, KissCode(h.RefID))
			return discipline.Sample{}, c.stopped
		}
		return discipline.Sample{}, fmt.Errorf("%w %q", ErrKiss, KissCode(h.RefID))
	}
	c.reach |= 1
	if h.Leap == LeapUnsync || h.Stratum >= StratumNone {
		return discipline.Sample{}, ErrUnsyncSource
	}
	if h.Transmit == 0 || h.Receive == 0 {
		return discipline.Sample{}, ErrBadTimestamps
	}
	s := discipline.Sample{
		T1NS: c.t1, T2NS: ToUnixNS(h.Receive, c.t1), T3NS: ToUnixNS(h.Transmit, c.t1), T4NS: t4NS,
		RootDelayNS: ShortToNS(h.RootDelay), RootDispersionNS: ShortToNS(h.RootDisp),
		Stratum: h.Stratum, RefID: h.RefID,
	}
	switch h.Leap {
	case LeapInsert:
		s.Leap = truetime.LeapInsert
	case LeapDelete:
		s.Leap = truetime.LeapDelete
	}
	if s.RootDispersionNS > maxRootDispNS {
		return discipline.Sample{}, fmt.Errorf("%w: root dispersion %v", ErrBadTimestamps, time.Duration(s.RootDispersionNS))
	}
	if err := s.Validate(); err != nil {
		return discipline.Sample{}, fmt.Errorf("%w: %v", ErrBadTimestamps, err)
	}
	c.answered()
	return s, nil
}

// KissCode renders a kiss-o'-death code (a reference ID) as its four ASCII letters.
func KissCode(id uint32) string {
	return string([]byte{byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)})
}
