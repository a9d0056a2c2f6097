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
	// ErrNoSample: a valid interleaved reply whose stamp completes an
	// exchange that already gave a (basic) sample; it gives none, so that
	// no exchange is counted twice. Not a rejection.
	ErrNoSample = errors.New("ntp: interleaved reply completes an exchange already sampled")
)

// ClientConfig tunes one source's polling.
type ClientConfig struct {
	Poll    time.Duration // starting poll interval (0 → MinPoll, or 16s)
	MinPoll time.Duration // with MaxPoll > MinPoll the poll adapts between them
	MaxPoll time.Duration // also the cap when a server asks us to slow down (0 → 1024s)
	IBurst  bool          // four requests 2 s apart at start
	// Interleaved asks the server for interleaved replies (chrony's
	// xleave): see interleaved below.
	Interleaved bool

	exactPolls bool // test knob: no PollJitter
}

// Interleaved mode, client side (chrony's `xleave`). A server in
// interleaved mode sends, in its reply to request k, the kernel transmit
// stamp of its reply k-1: the real departure, where a basic reply's
// transmit timestamp is read before the send (early by the server's queue).
//
// Request fields: transmit = a random nonce X (as in basic mode); once a
// previous exchange is complete, origin = the receive timestamp of the
// server's last valid reply (what the server keys its table on) and
// receive = a second random nonce R (≠ X). The reply's origin says which
// mode the server answered in: X → basic (a sample of this exchange), R →
// interleaved: its transmit timestamp is the departure of the previous
// reply, so the sample is t1, t2, t4 of the previous exchange (our own
// kernel transmit stamp, the server's receive timestamp we echoed, our
// receive stamp) with that t3. Anything else is rejected (ErrOrigin): both
// nonces are unpredictable to an off-path attacker, as X alone is in basic
// mode. R only reveals that we took part in an exchange, never a clock.
//
// Each exchange gives at most one sample: an interleaved reply completing
// an exchange that already gave a basic sample gives none (ErrNoSample;
// the first interleaved reply after basic ones). A lost reply leaves the
// previous exchange in place: the server, whose table then holds a newer
// receive timestamp, answers in basic mode, and that reply is a basic
// sample. After MaxInterleavedUnanswered requests without a valid reply
// the client asks in basic form (chrony's limit: the server must not
// answer with a very old stamp). A server that never answers interleaved
// leaves the client in basic mode for good, at no cost.

// MaxInterleavedUnanswered is the number of unanswered requests after which
// requests go out in basic form until a valid reply (chrony's
// MAX_CLIENT_INTERLEAVED_TX).
const MaxInterleavedUnanswered = 4

// exchange is a completed exchange whose t3 an interleaved reply may bring.
type exchange struct {
	t1, t2, t4          int64
	rx                  uint64 // the server's receive timestamp as sent (echoed as origin)
	rootDelay, rootDisp uint32
	valid               bool // a synchronized server's valid reply
	sampled             bool // it already gave a basic sample
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

	rxNonce         uint64   // receive field of an interleaved-form request (0: basic form)
	prev            exchange // the last exchange answered validly
	unanswered      int      // requests since the last valid reply
	lastInterleaved bool     // the last sample came from an interleaved reply

	testNoInterleavedOrigin bool
}

// NewClient returns a client; seed makes origins unpredictable to off-path
// attackers (pass a crypto-random seed) and reproducible in tests.
// testNoInterleavedOrigin is a test knob: take an interleaved reply for a
// basic one (the negative control of telling them apart by origin).
func (c *Client) setTestNoInterleavedOrigin() { c.testNoInterleavedOrigin = true }

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

// PollJitter is the spread of each poll interval around the poll: a
// uniform draw within ±PollJitter of it. A client polling at exact
// multiples of its poll stays at one phase of whatever else runs
// periodically on its host or its path (its own daemon's updates, a
// monitoring scrape, a neighbour's timer); if that phase is a slow one,
// every exchange sees the same extra delay in one direction, and the
// filter's minima, which it trusts, are biased by it. Spread polls sample
// every phase.
const PollJitter = 0.125

// jittered spreads a poll interval by PollJitter (see there).
func (c *Client) jittered(d time.Duration) time.Duration {
	if c.cfg.exactPolls {
		return d
	}
	return d + time.Duration((2*c.rng.Float64()-1)*PollJitter*float64(d))
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
	c.rxNonce = 0
	if c.cfg.Interleaved {
		// A non-zero receive field even in basic form: our server keeps
		// table entries only for clients that may interleave.
		h.Receive = c.rng.Uint64()
		for h.Receive == 0 || h.Receive == h.Transmit {
			h.Receive = c.rng.Uint64()
		}
		if c.prev.valid && c.unanswered < MaxInterleavedUnanswered {
			h.Origin, c.rxNonce = c.prev.rx, h.Receive
		}
	}
	c.unanswered++
	h.Encode(buf)
	return HeaderLen
}

// LastInterleaved reports whether the last sample Response returned came
// from an interleaved reply (its t1, t2, t4 are the previous exchange's).
func (c *Client) LastInterleaved() bool { return c.lastInterleaved }

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
	case h.Origin != c.origin && (c.rxNonce == 0 || h.Origin != c.rxNonce):
		return discipline.Sample{}, ErrOrigin
	}
	interleaved := c.rxNonce != 0 && h.Origin == c.rxNonce && !c.testNoInterleavedOrigin
	c.pending = false
	c.lastInterleaved = false
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
	prev := c.prev
	c.prev.valid = false // replaced below by this exchange if its reply is good
	if h.Leap == LeapUnsync || h.Stratum >= StratumNone {
		return discipline.Sample{}, ErrUnsyncSource
	}
	if h.Transmit == 0 || h.Receive == 0 {
		return discipline.Sample{}, ErrBadTimestamps
	}
	cur := exchange{t1: c.t1, t2: ToUnixNS(h.Receive, c.t1), t4: t4NS, rx: h.Receive,
		rootDelay: h.RootDelay, rootDisp: h.RootDisp, valid: true}
	s := discipline.Sample{
		T1NS: c.t1, T2NS: cur.t2, T3NS: ToUnixNS(h.Transmit, c.t1), T4NS: t4NS,
		RootDelayNS: ShortToNS(h.RootDelay), RootDispersionNS: ShortToNS(h.RootDisp),
		Stratum: h.Stratum, RefID: h.RefID,
	}
	if interleaved {
		// t3 is the departure of the server's previous reply: the sample is
		// the previous exchange, completed. That reply left before this
		// request arrived.
		if !prev.valid || s.T3NS > cur.t2 {
			return discipline.Sample{}, fmt.Errorf("%w: interleaved transmit %d after this request's receive %d", ErrBadTimestamps, s.T3NS, cur.t2)
		}
		s.T1NS, s.T2NS, s.T4NS = prev.t1, prev.t2, prev.t4
		s.RootDelayNS = ShortToNS(max(h.RootDelay, prev.rootDelay))
		s.RootDispersionNS = ShortToNS(max(h.RootDisp, prev.rootDisp))
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
	c.unanswered = 0
	c.prev = cur
	if interleaved {
		if prev.sampled {
			return discipline.Sample{}, ErrNoSample
		}
		c.lastInterleaved = true
		return s, nil
	}
	c.prev.sampled = true
	return s, nil
}

// KissCode renders a kiss-o'-death code (a reference ID) as its four ASCII letters.
func KissCode(id uint32) string {
	return string([]byte{byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)})
}
