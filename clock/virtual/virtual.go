// Package virtual is Meridian's default clock: a software clock over
// CLOCK_MONOTONIC_RAW with frequency and phase correction. It needs no
// privilege and never touches CLOCK_REALTIME.
//
// Reading: L = clock.Linear.At(raw()). The model is an immutable value behind
// an atomic pointer, so NowNS is lock-free; adjustments serialise on a mutex
// and rebase the model at the raw instant of the change, keeping the reading
// continuous (a frequency change never makes the clock jump).
package virtual

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meridiantime/meridian/clock"
	"github.com/meridiantime/meridian/clock/hostclock"
)

// Options configure a virtual clock. Zero values take defaults.
type Options struct {
	OffsetNS       int64        // start offset from the host's CLOCK_REALTIME (tests inject known errors)
	Raw            func() int64 // raw counter; nil → hostclock.MonoRawNS
	Wall           func() int64 // wall clock read once at start; nil → time.Now().UnixNano()
	MaxFreqPPB     float64      // 0 → 500000
	InitialFreqPPB float64
	PrecisionNS    int64 // 0 → 100
}

// Clock is the virtual clock. It implements clock.Disciplined.
type Clock struct {
	raw         func() int64
	maxFreqPPB  float64
	precisionNS int64

	model atomic.Pointer[clock.Linear]
	mu    sync.Mutex // serialises writers
	sync  atomic.Bool
}

var _ clock.Disciplined = (*Clock)(nil)

// New starts a virtual clock reading the host's wall clock plus OffsetNS.
func New(o Options) (*Clock, error) {
	if o.Raw == nil {
		o.Raw = hostclock.MonoRawNS
	}
	if o.Wall == nil {
		o.Wall = func() int64 { return time.Now().UnixNano() }
	}
	if o.MaxFreqPPB == 0 {
		o.MaxFreqPPB = 500_000
	}
	if o.PrecisionNS == 0 {
		o.PrecisionNS = 100
	}
	if o.MaxFreqPPB < 0 || math.IsNaN(o.MaxFreqPPB) {
		return nil, fmt.Errorf("virtual clock: max frequency %v ppb must be > 0", o.MaxFreqPPB)
	}
	if err := checkFreq(o.InitialFreqPPB, o.MaxFreqPPB); err != nil {
		return nil, err
	}
	c := &Clock{raw: o.Raw, maxFreqPPB: o.MaxFreqPPB, precisionNS: o.PrecisionNS}
	raw := o.Raw()
	c.model.Store(&clock.Linear{BaseNS: o.Wall() + o.OffsetNS, BaseRawNS: raw, FreqPPB: o.InitialFreqPPB})
	return c, nil
}

func checkFreq(f, maxF float64) error {
	if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > maxF {
		return fmt.Errorf("virtual clock: frequency %v ppb outside ±%v ppb", f, maxF)
	}
	return nil
}

// NowNS reads the clock. Lock-free.
func (c *Clock) NowNS() int64 { return c.model.Load().At(c.raw()) }

// Model returns the current model (for the shared-memory publisher).
func (c *Clock) Model() clock.Linear { return *c.model.Load() }

// PrecisionNS is the reading precision the clock claims.
func (c *Clock) PrecisionNS() int64 { return c.precisionNS }

// AdjFreqPPB sets the absolute frequency correction.
func (c *Clock) AdjFreqPPB(freqPPB float64) error {
	if err := checkFreq(freqPPB, c.maxFreqPPB); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.model.Load().Rebase(c.raw(), freqPPB)
	c.model.Store(&m)
	return nil
}

// FreqPPB returns the applied correction.
func (c *Clock) FreqPPB() (float64, error) { return c.model.Load().FreqPPB, nil }

// MaxFreqPPB is the correction limit.
func (c *Clock) MaxFreqPPB() float64 { return c.maxFreqPPB }

// Step moves the reading by stepNS.
func (c *Clock) Step(stepNS int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := *c.model.Load()
	m.BaseNS += stepNS
	c.model.Store(&m)
	return nil
}

// SetSync records the synchronisation state; a virtual clock has no kernel
// to tell.
func (c *Clock) SetSync(synced bool, _, _ int64) error {
	c.sync.Store(synced)
	return nil
}

// Synced reports the last SetSync state.
func (c *Clock) Synced() bool { return c.sync.Load() }
