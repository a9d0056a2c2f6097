package truetime

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meridiantime/meridian/clock"
)

// Clock is the in-process TrueTime API over a clock reading and the newest
// Estimate. Reads are lock-free.
type Clock struct {
	r      clock.Reader
	timers clock.Timers
	est    atomic.Pointer[Estimate]
	check  atomic.Pointer[func() error]

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every SetEstimate
}

// NewClock returns a TrueTime clock, unsynchronized until SetEstimate.
func NewClock(r clock.Reader, t clock.Timers) *Clock {
	c := &Clock{r: r, timers: t, changed: make(chan struct{})}
	c.est.Store(&Estimate{})
	return c
}

// SetEstimate publishes a new estimate and wakes waiters.
func (c *Clock) SetEstimate(e Estimate) {
	c.est.Store(&e)
	c.mu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

// Changed returns a channel that is closed by the next SetEstimate. Take
// the channel before reading Estimate so that no update is missed.
func (c *Clock) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// Estimate returns the newest estimate.
func (c *Clock) Estimate() Estimate { return *c.est.Load() }

// LocalNS is the underlying clock's reading.
func (c *Clock) LocalNS() int64 { return c.r.NowNS() }

// Now returns the interval for the current reading, or ErrUnsynchronized
// (ErrDisrupted for status Disrupted).
func (c *Clock) Now() (Interval, error) {
	if f := c.check.Load(); f != nil {
		if err := (*f)(); err != nil {
			if errors.Is(err, ErrDisrupted) {
				return Interval{Status: Disrupted}, err
			}
			return Interval{}, err
		}
	}
	iv := Bound(c.r.NowNS(), *c.est.Load())
	return iv, StatusErr(iv.Status)
}

// SetCheck installs a check that runs before every read; a non-nil error
// (ErrUnsynchronized, ErrDisrupted) fails the read. meridiand installs its
// shm writer's Check, so in-process readers notice a suspend or a stalled
// publisher exactly as shm readers do.
func (c *Clock) SetCheck(f func() error) { c.check.Store(&f) }

// After reports whether tNS has definitely passed: tNS < earliest.
func (c *Clock) After(tNS int64) (bool, error) {
	iv, err := c.Now()
	if err != nil {
		return false, err
	}
	return iv.After(tNS), nil
}

// Before reports whether tNS has definitely not arrived: tNS > latest.
func (c *Clock) Before(tNS int64) (bool, error) {
	iv, err := c.Now()
	if err != nil {
		return false, err
	}
	return iv.Before(tNS), nil
}

// unsyncPoll is how often a waiter re-checks while unsynchronized, besides
// being woken by SetEstimate.
const unsyncPoll = 100 * time.Millisecond

// WaitUntilAfter blocks until After(tNS) is true (the commit-wait primitive)
// or ctx ends. While the clock is unsynchronized it keeps waiting: no
// interval can show that tNS has passed, and giving up would let callers
// mistake "unknown" for "not yet". It sleeps on timers, never spins: each
// sleep is the remaining distance tNS − earliest (+1 ns), re-checked on wake
// because ε may have grown or the estimate changed.
func (c *Clock) WaitUntilAfter(ctx context.Context, tNS int64) error {
	for {
		c.mu.Lock()
		changed := c.changed
		c.mu.Unlock()
		iv, err := c.Now()
		wait := unsyncPoll
		if err == nil {
			if iv.After(tNS) {
				return nil
			}
			wait = time.Duration(iv.UntilAfterNS(tNS))
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		t := c.timers.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-changed:
			t.Stop()
		case <-t.C():
		}
	}
}
