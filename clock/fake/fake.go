// Package fake has test doubles for package clock: a manual clock that
// records adjustments, manual timers, and a reader that panics, used to
// prove that pure cores never read time on their own.
package fake

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/meridiantime/meridian/clock"
)

// Clock is a settable clock.Disciplined that records every call.
type Clock struct {
	mu      sync.Mutex
	nowNS   int64
	freqPPB float64
	maxPPB  float64
	Steps   []int64
	Freqs   []float64
}

var _ clock.Disciplined = (*Clock)(nil)

// NewClock returns a fake clock reading nowNS.
func NewClock(nowNS int64) *Clock { return &Clock{nowNS: nowNS, maxPPB: 500_000} }

// Set sets the reading.
func (c *Clock) Set(nowNS int64) { c.mu.Lock(); c.nowNS = nowNS; c.mu.Unlock() }

// Advance moves the reading forward.
func (c *Clock) Advance(d time.Duration) { c.mu.Lock(); c.nowNS += int64(d); c.mu.Unlock() }

// NowNS reads the clock.
func (c *Clock) NowNS() int64 { c.mu.Lock(); defer c.mu.Unlock(); return c.nowNS }

// AdjFreqPPB records a frequency change.
func (c *Clock) AdjFreqPPB(f float64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f > c.maxPPB || f < -c.maxPPB {
		return fmt.Errorf("fake clock: %v ppb beyond ±%v", f, c.maxPPB)
	}
	c.freqPPB = f
	c.Freqs = append(c.Freqs, f)
	return nil
}

// FreqPPB returns the last frequency set.
func (c *Clock) FreqPPB() (float64, error) { c.mu.Lock(); defer c.mu.Unlock(); return c.freqPPB, nil }

// MaxFreqPPB is 500 ppm.
func (c *Clock) MaxFreqPPB() float64 { return c.maxPPB }

// Step records and applies a step.
func (c *Clock) Step(s int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nowNS += s
	c.Steps = append(c.Steps, s)
	return nil
}

// SetSync does nothing.
func (c *Clock) SetSync(bool, int64, int64) error { return nil }

// PanicReader panics when read: give it to code that must not read time.
type PanicReader struct{}

// NowNS panics.
func (PanicReader) NowNS() int64 { panic("fake.PanicReader: a pure core read the clock") }

// Timers are manual timers: they fire only when Advance passes their
// deadline, in deadline order.
type Timers struct {
	mu     sync.Mutex
	now    time.Duration
	timers []*timer
}

var _ clock.Timers = (*Timers)(nil)

type timer struct {
	ts       *Timers
	c        chan time.Time
	deadline time.Duration
	active   bool
}

// NewTimer returns a timer firing after d of Advance.
func (ts *Timers) NewTimer(d time.Duration) clock.Timer {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t := &timer{ts: ts, c: make(chan time.Time, 1), deadline: ts.now + d, active: true}
	ts.timers = append(ts.timers, t)
	return t
}

// Pending is the number of active timers.
func (ts *Timers) Pending() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	n := 0
	for _, t := range ts.timers {
		if t.active {
			n++
		}
	}
	return n
}

// Advance moves fake time forward and fires due timers in order.
func (ts *Timers) Advance(d time.Duration) {
	ts.mu.Lock()
	ts.now += d
	var due []*timer
	for _, t := range ts.timers {
		if t.active && t.deadline <= ts.now {
			t.active = false
			due = append(due, t)
		}
	}
	sort.SliceStable(due, func(i, j int) bool { return due[i].deadline < due[j].deadline })
	ts.mu.Unlock()
	for _, t := range due {
		select {
		case t.c <- time.Unix(0, int64(t.deadline)):
		default:
		}
	}
}

func (t *timer) C() <-chan time.Time { return t.c }

func (t *timer) Stop() bool {
	t.ts.mu.Lock()
	defer t.ts.mu.Unlock()
	was := t.active
	t.active = false
	return was
}

func (t *timer) Reset(d time.Duration) bool {
	t.ts.mu.Lock()
	defer t.ts.mu.Unlock()
	was := t.active
	t.active = true
	t.deadline = t.ts.now + d
	return was
}

// PanicTimers panics when asked for a timer: give it to code that must not
// wait on its own (the simulator's TrueTime clock is read, never waited on).
type PanicTimers struct{}

// NewTimer panics.
func (PanicTimers) NewTimer(time.Duration) clock.Timer {
	panic("fake.PanicTimers: code under simulation started a timer")
}
