package hlc

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meridiantime/meridian/truetime"
)

// Timestamp is an HLC timestamp: l (WallUS, µs since the Unix epoch) and
// the logical counter c. Ordered by (WallUS, Logical).
type Timestamp struct {
	WallUS  int64
	Logical uint16
}

const (
	logicalBits = 12
	maxLogical  = 1<<logicalBits - 1
	maxWallUS   = 1<<(64-logicalBits-1) - 1 // keep the encoding non-negative as int64: year 2112
)

// Encode packs t into 64 bits whose unsigned order is the timestamp order:
// 51 bits of microseconds (until 2112) and 12 bits of logical counter.
func (t Timestamp) Encode() uint64 { return uint64(t.WallUS)<<logicalBits | uint64(t.Logical) }

// Decode unpacks Encode.
func Decode(v uint64) Timestamp {
	return Timestamp{WallUS: int64(v >> logicalBits), Logical: uint16(v & maxLogical)}
}

// Compare returns −1, 0 or +1.
func (t Timestamp) Compare(u Timestamp) int {
	a, b := t.Encode(), u.Encode()
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Less reports t < u.
func (t Timestamp) Less(u Timestamp) bool { return t.Encode() < u.Encode() }

// String is RFC 3339 with microseconds and "+logical":
// 2026-11-25T03:00:00.123456Z+5.
func (t Timestamp) String() string {
	return time.UnixMicro(t.WallUS).UTC().Format("2006-01-02T15:04:05.000000Z") + fmt.Sprintf("+%d", t.Logical)
}

// Parse reads String's form.
func Parse(s string) (Timestamp, error) {
	var wall, logical string
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '+' {
			wall, logical = s[:i], s[i+1:]
			break
		}
	}
	if wall == "" {
		return Timestamp{}, fmt.Errorf("hlc: %q: want 2006-01-02T15:04:05.000000Z+N", s)
	}
	tm, err := time.Parse("2006-01-02T15:04:05.000000Z", wall)
	if err != nil {
		return Timestamp{}, fmt.Errorf("hlc: %q: %w", s, err)
	}
	var c uint64
	if _, err := fmt.Sscanf(logical, "%d", &c); err != nil || c > maxLogical || fmt.Sprint(c) != logical {
		return Timestamp{}, fmt.Errorf("hlc: %q: logical part must be 0..%d", s, maxLogical)
	}
	w := tm.UnixMicro()
	if w < 0 || w > maxWallUS {
		return Timestamp{}, fmt.Errorf("hlc: %q: outside the encodable range 1970..2112", s)
	}
	return Timestamp{WallUS: w, Logical: uint16(c)}, nil
}

// Physical is the clock the HLC follows: TrueTime.
type Physical interface {
	Now() (truetime.Interval, error)
}

// Persister stores an upper bound on every wall value the clock has issued.
type Persister interface {
	// Load returns the stored bound (µs); ok is false on a fresh start.
	Load() (upperUS int64, ok bool, err error)
	// Store must be durable (fsynced) when it returns.
	Store(upperUS int64) error
}

// Options tune the clock.
type Options struct {
	MaxOffsetFloor time.Duration // remote timestamps further ahead than max(floor, EpsFactor·ε) are rejected (default 1 ms)
	EpsFactor      float64       // default 2
	Persist        Persister     // nil: no restart monotonicity
	PersistAhead   time.Duration // how far ahead the bound is written (default 1 s): one fsync per this much time
}

// ErrRemoteTooFarAhead is matched with errors.Is; *RemoteTooFarAheadError has
// the details.
var ErrRemoteTooFarAhead = errors.New("hlc: remote timestamp too far ahead")

// RemoteTooFarAheadError reports a rejected Update.
type RemoteTooFarAheadError struct {
	Remote      Timestamp
	PhysicalUS  int64
	MaxOffsetUS int64
}

func (e *RemoteTooFarAheadError) Error() string {
	return fmt.Sprintf("hlc: remote %v is %d µs ahead of local physical time, more than the %d µs allowed",
		e.Remote, e.Remote.WallUS-e.PhysicalUS, e.MaxOffsetUS)
}

func (e *RemoteTooFarAheadError) Unwrap() error { return ErrRemoteTooFarAhead }

// Clock is a hybrid logical clock. Now and Update are lock-free (one CAS)
// and do not allocate, except when a timestamp crosses the persisted upper
// bound: then one goroutine writes the next bound, durably, before any
// timestamp beyond the old one is issued.
type Clock struct {
	phys     Physical
	opt      Options
	state    atomic.Uint64 // encoded last timestamp
	upper    atomic.Int64  // persisted bound (µs); math.MaxInt64 without a persister
	mu       sync.Mutex
	rejected atomic.Uint64
}

// New returns a clock. With a persister it starts strictly after the stored
// bound, so no timestamp issued before a restart (or crash) can be issued
// again, even if the physical clock went back.
func New(phys Physical, opt Options) (*Clock, error) {
	if opt.MaxOffsetFloor == 0 {
		opt.MaxOffsetFloor = time.Millisecond
	}
	if opt.EpsFactor == 0 {
		opt.EpsFactor = 2
	}
	if opt.PersistAhead == 0 {
		opt.PersistAhead = time.Second
	}
	if opt.MaxOffsetFloor < 0 || opt.EpsFactor < 0 || opt.PersistAhead < 0 {
		return nil, errors.New("hlc: options must not be negative")
	}
	c := &Clock{phys: phys, opt: opt}
	c.upper.Store(math.MaxInt64)
	if opt.Persist != nil {
		u, ok, err := opt.Persist.Load()
		if err != nil {
			return nil, fmt.Errorf("hlc: loading the persisted bound: %w", err)
		}
		c.upper.Store(u) // nothing issued yet: the first timestamp persists a new bound
		if ok {
			c.state.Store(Timestamp{WallUS: u + 1}.Encode())
		}
	}
	return c, nil
}

// Rejected counts rejected Updates.
func (c *Clock) Rejected() uint64 { return c.rejected.Load() }

func (c *Clock) physical() (ptUS, epsUS int64, err error) {
	iv, err := c.phys.Now()
	if err != nil {
		return 0, 0, err
	}
	// pt is the interval's latest, rounded up: l ≥ pt ≥ true time.
	return (iv.LatestNS + 999) / 1000, (iv.LatestNS - iv.EarliestNS + 1999) / 2000, nil
}

func next(l int64, lc uint16, tick bool) Timestamp {
	if !tick {
		return Timestamp{WallUS: l}
	}
	if lc == maxLogical { // counter full: move l one µs on (a tiny, bounded lead)
		return Timestamp{WallUS: l + 1}
	}
	return Timestamp{WallUS: l, Logical: lc + 1}
}

// Now returns a timestamp for a local or send event (the paper's send rule).
// It fails while TrueTime is unsynchronized.
func (c *Clock) Now() (Timestamp, error) {
	pt, _, err := c.physical()
	if err != nil {
		return Timestamp{}, err
	}
	for {
		old := c.state.Load()
		cur := Decode(old)
		var t Timestamp
		if pt > cur.WallUS {
			t = Timestamp{WallUS: pt}
		} else {
			t = next(cur.WallUS, cur.Logical, true)
		}
		if ok, err := c.commit(old, t); err != nil || ok {
			return t, err
		}
	}
}

// Update merges a received timestamp (the paper's receive rule) and returns
// the timestamp of the receive event. A remote wall time ahead of our
// physical time by more than max(MaxOffsetFloor, EpsFactor·ε) is rejected:
// accepting it would drag every later timestamp ahead of real time.
func (c *Clock) Update(remote Timestamp) (Timestamp, error) {
	pt, eps, err := c.physical()
	if err != nil {
		return Timestamp{}, err
	}
	maxOff := max(c.opt.MaxOffsetFloor.Microseconds(), int64(c.opt.EpsFactor*float64(eps)))
	if remote.WallUS > pt+maxOff || remote.WallUS > maxWallUS || remote.Logical > maxLogical {
		c.rejected.Add(1)
		return Timestamp{}, &RemoteTooFarAheadError{Remote: remote, PhysicalUS: pt, MaxOffsetUS: maxOff}
	}
	for {
		old := c.state.Load()
		cur := Decode(old)
		l := max(cur.WallUS, remote.WallUS, pt)
		var t Timestamp
		switch {
		case l == cur.WallUS && l == remote.WallUS:
			t = next(l, max(cur.Logical, remote.Logical), true)
		case l == cur.WallUS:
			t = next(l, cur.Logical, true)
		case l == remote.WallUS:
			t = next(l, remote.Logical, true)
		default:
			t = Timestamp{WallUS: l}
		}
		if ok, err := c.commit(old, t); err != nil || ok {
			return t, err
		}
	}
}

// commit installs t if the state is still old. Crossing the persisted
// bound takes the slow path: write a new bound first (write-ahead).
func (c *Clock) commit(old uint64, t Timestamp) (bool, error) {
	if t.WallUS > c.upper.Load() {
		if err := c.persistBeyond(t.WallUS); err != nil {
			return false, err
		}
	}
	return c.state.CompareAndSwap(old, t.Encode()), nil
}

func (c *Clock) persistBeyond(wallUS int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if wallUS <= c.upper.Load() {
		return nil // another goroutine did it
	}
	u := wallUS + c.opt.PersistAhead.Microseconds()
	if err := c.opt.Persist.Store(u); err != nil {
		return fmt.Errorf("hlc: persisting the upper bound: %w", err)
	}
	c.upper.Store(u)
	return nil
}
