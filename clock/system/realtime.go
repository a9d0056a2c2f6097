package system

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/clock"
)

// Realtime is CLOCK_REALTIME disciplined through clock_adjtime (frequency
// and steps only, as chronyd does; the kernel's own PLL is not used), with
// the linear model over CLOCK_MONOTONIC_RAW that shared-memory readers
// compute the clock from. The model is measured, not assumed: a reading of
// CLOCK_REALTIME bracketed by two raw readings after every adjustment and
// at every Remeasure; ModelErrorNS is how far a reader's computed reading
// can be from CLOCK_REALTIME (half the bracket, plus a nanosecond), which
// the daemon adds to the published error bound.
type Realtime struct {
	*Clock
	raw         func() int64
	precisionNS int64

	mu         sync.Mutex // serialises adjustments and measurements
	model      atomic.Pointer[clock.Linear]
	modelErr   atomic.Int64
	pendingDev int64 // the largest unexplained deviation since Remeasure reported
}

// NewRealtime measures CLOCK_REALTIME through a (nil: the kernel) against
// raw (CLOCK_MONOTONIC_RAW). precisionNS is the reading precision claimed
// (a model bracket wider than it is measured again).
func NewRealtime(a Adjtimer, raw func() int64, precisionNS int64) (*Realtime, error) {
	r := &Realtime{Clock: New(a), raw: raw, precisionNS: max(precisionNS, 1)}
	if err := r.remeasureLocked(0); err != nil {
		return nil, err
	}
	return r, nil
}

// PrecisionNS is the reading precision the clock claims.
func (r *Realtime) PrecisionNS() int64 { return r.precisionNS }

// Model is the linear model readers use: CLOCK_REALTIME as a function of
// CLOCK_MONOTONIC_RAW.
func (r *Realtime) Model() clock.Linear { return *r.model.Load() }

// ModelErrorNS bounds |Model().At(raw) − CLOCK_REALTIME| at the last
// measurement.
func (r *Realtime) ModelErrorNS() int64 { return r.modelErr.Load() }

// kernelFreqPPB is CLOCK_REALTIME's rate against the raw counter: the
// frequency correction plus the tick's deviation from nominal (USER_HZ
// 100: 10000 µs).
func kernelFreqPPB(tx unix.Timex) float64 {
	f := float64(tx.Freq) / ppbToTimexFreq
	if tx.Tick != 0 {
		f += (float64(tx.Tick) - 10000) / 10000 * 1e9
	}
	return f
}

// Remeasure measures the model afresh and returns the largest deviation
// of the clock from its model found by this or any measurement since the
// last Remeasure (ns; our own steps excluded): more than a few ns over the
// model error means someone else stepped or steered CLOCK_REALTIME.
func (r *Realtime) Remeasure() (deviationNS int64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	err = r.remeasureLocked(0)
	dev := r.pendingDev
	r.pendingDev = 0
	return dev, err
}

// remeasureLocked measures the model; shiftNS is a step this process just
// made (expected, not a deviation).
func (r *Realtime) remeasureLocked(shiftNS int64) error {
	tx, _, err := r.ReadOnlyStatus()
	if err != nil {
		return err
	}
	var lo, rt, hi int64
	best := int64(math.MaxInt64)
	for range 8 {
		l := r.raw()
		v, err := r.Read()
		if err != nil {
			return err
		}
		h := r.raw()
		if h >= l && h-l < best {
			best, lo, rt, hi = h-l, l, v, h
		}
		if best <= r.precisionNS {
			break
		}
	}
	if best == math.MaxInt64 {
		return fmt.Errorf("clock_gettime(CLOCK_REALTIME): no ordered raw bracket")
	}
	mid := lo + (hi-lo)/2
	if old := r.model.Load(); old != nil {
		dev := old.At(mid) + shiftNS - rt
		if dev < 0 {
			dev = -dev
		}
		r.pendingDev = max(r.pendingDev, dev)
	}
	m := clock.Linear{BaseNS: rt, BaseRawNS: mid, FreqPPB: kernelFreqPPB(tx)}
	r.model.Store(&m)
	r.modelErr.Store((hi-lo+1)/2 + 1)
	return nil
}

// AdjFreqPPB sets the frequency correction and measures the model again.
func (r *Realtime) AdjFreqPPB(freqPPB float64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.Clock.AdjFreqPPB(freqPPB); err != nil {
		return err
	}
	return r.remeasureLocked(0)
}

// Step steps the clock and measures the model again.
func (r *Realtime) Step(stepNS int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.Clock.Step(stepNS); err != nil {
		return err
	}
	return r.remeasureLocked(stepNS)
}
