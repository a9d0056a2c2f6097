package hlc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meridiantime/meridian/truetime"
)

// Timestamp is an HLC timestamp: l (WallNS, nanoseconds since the Unix
// epoch) and the logical counter c. Ordered by (WallNS, Logical).
type Timestamp struct {
	WallNS  int64
	Logical uint32
}

const (
	// MaxWallNS is the last representable wall time,
	// 2262-04-11T23:47:16.854775807Z (the int64 nanosecond range).
	MaxWallNS = math.MaxInt64
	// MaxLogical is the largest logical counter.
	MaxLogical = math.MaxUint32
	// KeySize is the length of Key.
	KeySize = 12
)

// Valid reports whether t is inside the range: WallNS in [0, MaxWallNS].
func (t Timestamp) Valid() bool { return t.WallNS >= 0 }

// Key is t as 12 bytes whose bytewise order (bytes.Compare) is the
// timestamp order: WallNS as a big-endian uint64, then Logical as a
// big-endian uint32. Defined for valid timestamps.
func (t Timestamp) Key() [KeySize]byte {
	var k [KeySize]byte
	binary.BigEndian.PutUint64(k[:8], uint64(t.WallNS))
	binary.BigEndian.PutUint32(k[8:], t.Logical)
	return k
}

// FromKey reads Key's form.
func FromKey(k []byte) (Timestamp, error) {
	if len(k) != KeySize {
		return Timestamp{}, fmt.Errorf("hlc: key is %d bytes, want %d", len(k), KeySize)
	}
	w := binary.BigEndian.Uint64(k[:8])
	if w > MaxWallNS {
		return Timestamp{}, fmt.Errorf("hlc: key %x: wall time beyond 2262-04-11", k)
	}
	return Timestamp{WallNS: int64(w), Logical: binary.BigEndian.Uint32(k[8:])}, nil
}

// Compare returns −1, 0 or +1.
func (t Timestamp) Compare(u Timestamp) int {
	switch {
	case t.WallNS < u.WallNS:
		return -1
	case t.WallNS > u.WallNS:
		return 1
	case t.Logical < u.Logical:
		return -1
	case t.Logical > u.Logical:
		return 1
	}
	return 0
}

// Less reports t < u.
func (t Timestamp) Less(u Timestamp) bool { return t.Compare(u) < 0 }

const textLayout = "2006-01-02T15:04:05.000000000Z"

// String is RFC 3339 with nanoseconds and "+logical":
// 2026-11-25T03:00:00.123456789Z+5.
func (t Timestamp) String() string {
	return time.Unix(0, t.WallNS).UTC().Format(textLayout) + "+" + strconv.FormatUint(uint64(t.Logical), 10)
}

var maxTime = time.Unix(0, MaxWallNS).UTC()

// Parse reads String's form; the fraction may have 0 to 9 digits
// (2026-11-25T03:00:00.123456Z+5 is accepted).
func Parse(s string) (Timestamp, error) {
	var wall, logical string
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '+' {
			wall, logical = s[:i], s[i+1:]
			break
		}
	}
	if wall == "" {
		return Timestamp{}, fmt.Errorf("hlc: %q: want 2006-01-02T15:04:05.000000000Z+N", s)
	}
	tm, err := time.Parse("2006-01-02T15:04:05.999999999Z", wall)
	if err != nil {
		return Timestamp{}, fmt.Errorf("hlc: %q: %w", s, err)
	}
	c, err := strconv.ParseUint(logical, 10, 32)
	if err != nil || strconv.FormatUint(c, 10) != logical {
		return Timestamp{}, fmt.Errorf("hlc: %q: logical part must be 0..%d", s, uint32(MaxLogical))
	}
	if tm.Before(time.Unix(0, 0)) || tm.After(maxTime) {
		return Timestamp{}, fmt.Errorf("hlc: %q: outside the representable range 1970-01-01..%s", s, maxTime.Format(textLayout))
	}
	return Timestamp{WallNS: tm.UnixNano(), Logical: uint32(c)}, nil
}

// Physical is the clock the HLC follows: TrueTime.
type Physical interface {
	Now() (truetime.Interval, error)
}

// Persister stores an upper bound on every wall value the clock has issued.
type Persister interface {
	// Load returns the stored bound (ns since the epoch); ok is false on a
	// fresh start.
	Load() (upperNS int64, ok bool, err error)
	// Store must be durable (fsynced) when it returns.
	Store(upperNS int64) error
}

// DefaultPersistAhead is how far ahead of the newest timestamp the bound is
// written by default. It is the longest a restart after a clean or crashed
// run can have to wait (plus any step back of the host clock), and one
// fsync per this much time is the cost of persisting.
const DefaultPersistAhead = 100 * time.Millisecond

// Options tune the clock.
type Options struct {
	MaxOffsetFloor time.Duration // remote timestamps further ahead than max(floor, EpsFactor·ε) are rejected (default 1 ms)
	EpsFactor      float64       // default 2
	Persist        Persister     // nil: no restart monotonicity
	PersistAhead   time.Duration // how far ahead the bound is written (default DefaultPersistAhead)

	// jumpOnRestart restores the old restart rule (issue the first
	// timestamp at the persisted bound, however far ahead of physical time
	// it is): the negative control of the restart property test.
	jumpOnRestart bool
}

// ErrRemoteTooFarAhead is matched with errors.Is; *RemoteTooFarAheadError has
// the details.
var ErrRemoteTooFarAhead = errors.New("hlc: remote timestamp too far ahead")

// RemoteTooFarAheadError reports a rejected Update.
type RemoteTooFarAheadError struct {
	Remote      Timestamp
	PhysicalNS  int64
	MaxOffsetNS int64
}

func (e *RemoteTooFarAheadError) Error() string {
	return fmt.Sprintf("hlc: remote %v is %v ahead of local physical time, more than the %v allowed",
		e.Remote, time.Duration(e.Remote.WallNS-e.PhysicalNS), time.Duration(e.MaxOffsetNS))
}

func (e *RemoteTooFarAheadError) Unwrap() error { return ErrRemoteTooFarAhead }

// ErrRestarting is matched with errors.Is; *RestartWaitError has the
// details. It is retryable: the clock answers once physical time passes
// the bound persisted by the previous run.
var ErrRestarting = errors.New("hlc: waiting for physical time to pass the bound persisted before the restart")

// RestartWaitError is returned by Now and Update after a restart until
// TrueTime's latest bound passes the persisted bound: issuing a timestamp
// above the bound earlier would put it ahead of physical time, and peers
// reject timestamps that are too far ahead.
type RestartWaitError struct {
	BoundNS    int64 // the persisted bound
	PhysicalNS int64 // TrueTime's latest when the call was made
}

// Remaining is how much further physical time has to advance.
func (e *RestartWaitError) Remaining() time.Duration {
	return time.Duration(e.BoundNS - e.PhysicalNS + 1)
}

func (e *RestartWaitError) Error() string {
	return fmt.Sprintf("hlc: restarted %v before the bound persisted by the previous run (%s): retry after that",
		e.Remaining(), time.Unix(0, e.BoundNS).UTC().Format(textLayout))
}

func (e *RestartWaitError) Unwrap() error { return ErrRestarting }

// ErrInvalidTimestamp is returned by Update for a timestamp outside the range.
var ErrInvalidTimestamp = errors.New("hlc: timestamp outside 1970-01-01..2262-04-11")

// ErrExhausted is returned when the clock would have to issue a timestamp
// beyond MaxWallNS with the counter full.
var ErrExhausted = errors.New("hlc: the timestamp range is exhausted (2262-04-11T23:47:16.854775807Z)")

// Clock is a hybrid logical clock. Now and Update take one short mutex and
// do not allocate, except when a timestamp crosses the persisted upper
// bound: then the caller writes the next bound, durably, before any
// timestamp beyond the old one is issued.
type Clock struct {
	phys Physical
	opt  Options

	mu      sync.Mutex
	last    Timestamp
	floorNS int64 // the previous run's bound; no timestamp is issued until pt > floorNS
	ready   bool  // pt has passed floorNS once

	pmu      sync.Mutex   // serializes Store
	upper    atomic.Int64 // durable bound (ns); MaxWallNS without a persister
	rejected atomic.Uint64
}

// New returns a clock. With a persister that holds a bound, the clock
// issues nothing until TrueTime's latest passes that bound (Now and Update
// return *RestartWaitError meanwhile), and everything it issues is above
// it. So no timestamp from before a restart (or crash) is issued again,
// even if the physical clock went back, and none is ahead of physical time.
func New(phys Physical, opt Options) (*Clock, error) {
	if opt.MaxOffsetFloor == 0 {
		opt.MaxOffsetFloor = time.Millisecond
	}
	if opt.EpsFactor == 0 {
		opt.EpsFactor = 2
	}
	if opt.PersistAhead == 0 {
		opt.PersistAhead = DefaultPersistAhead
	}
	if opt.MaxOffsetFloor < 0 || opt.EpsFactor < 0 || opt.PersistAhead < 0 {
		return nil, errors.New("hlc: options must not be negative")
	}
	c := &Clock{phys: phys, opt: opt, floorNS: -1, ready: true}
	c.upper.Store(MaxWallNS)
	if opt.Persist != nil {
		u, ok, err := opt.Persist.Load()
		if err != nil {
			return nil, fmt.Errorf("hlc: loading the persisted bound: %w", err)
		}
		if ok && u < 0 {
			return nil, fmt.Errorf("hlc: persisted bound %d is negative", u)
		}
		c.upper.Store(u) // nothing issued yet: the first timestamp persists a new bound
		if ok {
			c.floorNS, c.ready, c.last = u, false, Timestamp{WallNS: u}
			if opt.jumpOnRestart {
				c.ready, c.last = true, Timestamp{WallNS: u + 1}
			}
		}
	}
	return c, nil
}

// Rejected counts rejected Updates.
func (c *Clock) Rejected() uint64 { return c.rejected.Load() }

// physical returns pt, TrueTime's latest bound (so l ≥ pt ≥ true time), and
// the interval's half-width.
func (c *Clock) physical() (ptNS, epsNS int64, err error) {
	iv, err := c.phys.Now()
	if err != nil {
		return 0, 0, err
	}
	if iv.LatestNS < 0 {
		return 0, 0, fmt.Errorf("%w: physical time %d", ErrInvalidTimestamp, iv.LatestNS)
	}
	return iv.LatestNS, iv.EpsNS(), nil
}

// tick is (l, c+1), or (l+1, 0) when the counter is full.
func tick(l int64, lc uint32) (Timestamp, error) {
	if lc < MaxLogical {
		return Timestamp{WallNS: l, Logical: lc + 1}, nil
	}
	if l == MaxWallNS {
		return Timestamp{}, ErrExhausted
	}
	return Timestamp{WallNS: l + 1}, nil
}

// admit checks, with c.mu held, that physical time has passed the previous
// run's bound.
func (c *Clock) admit(pt int64) error {
	if c.ready {
		return nil
	}
	if pt <= c.floorNS {
		return &RestartWaitError{BoundNS: c.floorNS, PhysicalNS: pt}
	}
	c.ready = true
	return nil
}

// Now returns a timestamp for a local or send event (the paper's send rule).
// It fails while TrueTime is unsynchronized and, after a restart, until
// physical time passes the persisted bound (*RestartWaitError).
func (c *Clock) Now() (Timestamp, error) {
	pt, _, err := c.physical()
	if err != nil {
		return Timestamp{}, err
	}
	return c.issue(pt, Timestamp{}, false)
}

// Update merges a received timestamp (the paper's receive rule) and returns
// the timestamp of the receive event. A remote wall time ahead of our
// physical time by more than max(MaxOffsetFloor, EpsFactor·ε) is rejected:
// accepting it would drag every later timestamp ahead of real time.
func (c *Clock) Update(remote Timestamp) (Timestamp, error) {
	if !remote.Valid() {
		return Timestamp{}, fmt.Errorf("%w: %d ns", ErrInvalidTimestamp, remote.WallNS)
	}
	pt, eps, err := c.physical()
	if err != nil {
		return Timestamp{}, err
	}
	maxOff := max(c.opt.MaxOffsetFloor.Nanoseconds(), int64(min(c.opt.EpsFactor*float64(eps), math.MaxInt64/2)))
	if remote.WallNS-pt > maxOff {
		c.rejected.Add(1)
		return Timestamp{}, &RemoteTooFarAheadError{Remote: remote, PhysicalNS: pt, MaxOffsetNS: maxOff}
	}
	return c.issue(pt, remote, true)
}

// rule is the paper's send rule (hasRemote false) or receive rule.
func rule(cur Timestamp, pt int64, remote Timestamp, hasRemote bool) (Timestamp, error) {
	if !hasRemote {
		if pt > cur.WallNS {
			return Timestamp{WallNS: pt}, nil
		}
		return tick(cur.WallNS, cur.Logical)
	}
	l := max(cur.WallNS, remote.WallNS, pt)
	switch {
	case l == cur.WallNS && l == remote.WallNS:
		return tick(l, max(cur.Logical, remote.Logical))
	case l == cur.WallNS:
		return tick(l, cur.Logical)
	case l == remote.WallNS:
		return tick(l, remote.Logical)
	}
	return Timestamp{WallNS: l}, nil
}

// issue computes the next timestamp from the last one and installs it.
// Crossing the persisted bound takes the slow path: write a new bound
// first (write-ahead), outside c.mu, then compute again.
func (c *Clock) issue(pt int64, remote Timestamp, hasRemote bool) (Timestamp, error) {
	for {
		c.mu.Lock()
		if err := c.admit(pt); err != nil {
			c.mu.Unlock()
			return Timestamp{}, err
		}
		t, err := rule(c.last, pt, remote, hasRemote)
		if err != nil {
			c.mu.Unlock()
			return Timestamp{}, err
		}
		if t.WallNS <= c.upper.Load() {
			c.last = t
			c.mu.Unlock()
			return t, nil
		}
		c.mu.Unlock()
		if err := c.persistBeyond(t.WallNS); err != nil {
			return Timestamp{}, err
		}
	}
}

func (c *Clock) persistBeyond(wallNS int64) error {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	if wallNS <= c.upper.Load() {
		return nil // another goroutine did it
	}
	u := wallNS + min(c.opt.PersistAhead.Nanoseconds(), MaxWallNS-wallNS)
	if err := c.opt.Persist.Store(u); err != nil {
		return fmt.Errorf("hlc: persisting the upper bound: %w", err)
	}
	c.upper.Store(u)
	return nil
}
