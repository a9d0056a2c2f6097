// Package simclock is a simulated oscillator and a disciplined clock on top
// of it, for the deterministic simulator. True time is the simulator's; the
// oscillator integrates its frequency error over true time.
//
// Invariants: deterministic for a seed; RawAt is exact (ns, with a float
// fraction carried) for non-decreasing queries; the clock model is the same
// clock.Linear the virtual clock uses, so the simulator exercises the same
// arithmetic as meridiand.
package simclock

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"

	"github.com/meridiantime/meridian/clock"
)

// TempStep is a sudden frequency change at true time AtNS.
type TempStep struct {
	AtNS     int64
	DeltaPPB float64
}

// Pause is a span of true time [FromNS, ToNS) during which the raw counter
// stands still: a host suspend or VM pause (CLOCK_MONOTONIC_RAW stops,
// CLOCK_BOOTTIME does not).
type Pause struct{ FromNS, ToNS int64 }

// OscillatorConfig describes a simulated crystal.
type OscillatorConfig struct {
	FreqErrorPPB      float64 // constant rate error (+ runs fast)
	WanderPPBPerSqrtS float64 // random walk: each 1 s step adds N(0, w²) ppb
	TempSteps         []TempStep
	Pauses            []Pause // sorted, not overlapping
	Seed              int64
}

// gridNS is the wander step: frequency is piecewise constant on it.
const gridNS = int64(1e9)

// Oscillator is a free-running counter R(T) with dR/dT = 1 + y(T)·1e-9.
type Oscillator struct {
	cfg   OscillatorConfig
	start int64
	steps []TempStep

	t     int64   // true time integrated up to
	rInt  int64   // raw counter at t, integer ns
	rFrac float64 // and its fraction
	y     float64 // frequency error in ppb during [t, next grid point)
	rng   *rand.Rand
}

// NewOscillator starts an oscillator whose raw counter reads 0 at startTrueNS.
func NewOscillator(cfg OscillatorConfig, startTrueNS int64) *Oscillator {
	steps := append([]TempStep(nil), cfg.TempSteps...)
	sort.Slice(steps, func(i, j int) bool { return steps[i].AtNS < steps[j].AtNS })
	return &Oscillator{
		cfg: cfg, start: startTrueNS, steps: steps, t: startTrueNS, y: cfg.FreqErrorPPB,
		rng: rand.New(rand.NewPCG(uint64(cfg.Seed), 0x05c111a7)),
	}
}

func (o *Oscillator) advance(toNS int64) {
	if toNS < o.t {
		panic(fmt.Sprintf("simclock: query at true time %d is before %d: the simulator must move forward", toNS, o.t))
	}
	for o.t < toNS {
		next := o.start + ((o.t-o.start)/gridNS+1)*gridNS
		for _, s := range o.steps {
			if s.AtNS > o.t && s.AtNS < next {
				next = s.AtNS
				break
			}
		}
		paused := false
		for _, p := range o.cfg.Pauses {
			switch {
			case o.t >= p.FromNS && o.t < p.ToNS:
				paused, next = true, min(next, p.ToNS)
			case p.FromNS > o.t && p.FromNS < next:
				next = p.FromNS
			}
		}
		end := min(next, toNS)
		d := float64(end-o.t) * (1 + o.y*1e-9)
		if paused {
			d = 0
		}
		o.rFrac += d
		whole := math.Floor(o.rFrac)
		o.rInt += int64(whole)
		o.rFrac -= whole
		o.t = end
		if end == next {
			if (end-o.start)%gridNS == 0 && o.cfg.WanderPPBPerSqrtS != 0 {
				o.y += o.rng.NormFloat64() * o.cfg.WanderPPBPerSqrtS
			}
			for _, s := range o.steps {
				if s.AtNS == end {
					o.y += s.DeltaPPB
				}
			}
		}
	}
}

// RawAt returns the raw counter at trueNS (rounded to ns). Queries must not
// go back in true time.
func (o *Oscillator) RawAt(trueNS int64) int64 {
	o.advance(trueNS)
	return o.rInt + int64(math.Round(o.rFrac))
}

// FreqPPB is the oscillator's frequency error at trueNS.
func (o *Oscillator) FreqPPB(trueNS int64) float64 {
	o.advance(trueNS)
	return o.y
}

// Clock is a clock.Disciplined over an Oscillator, read at the simulator's
// current true time.
type Clock struct {
	osc        *Oscillator
	now        func() int64
	model      clock.Linear
	maxFreqPPB float64
	synced     bool
}

var _ clock.Disciplined = (*Clock)(nil)

// NewClock returns a clock reading startTrue + startOffsetNS when the
// oscillator's counter is 0. now returns the simulator's true time.
func NewClock(osc *Oscillator, now func() int64, startOffsetNS int64, maxFreqPPB float64) *Clock {
	return &Clock{osc: osc, now: now, model: clock.Linear{BaseNS: osc.start + startOffsetNS}, maxFreqPPB: maxFreqPPB}
}

// NowNS reads the clock at the simulator's current true time.
func (c *Clock) NowNS() int64 { return c.model.At(c.osc.RawAt(c.now())) }

// ReadingAt reads the clock at a given true time (not before the last query).
func (c *Clock) ReadingAt(trueNS int64) int64 { return c.model.At(c.osc.RawAt(trueNS)) }

// Model is the current linear model over the raw counter.
func (c *Clock) Model() clock.Linear { return c.model }

// AdjFreqPPB sets the frequency correction from now on.
func (c *Clock) AdjFreqPPB(freqPPB float64) error {
	if math.IsNaN(freqPPB) || math.Abs(freqPPB) > c.maxFreqPPB {
		return fmt.Errorf("simclock: frequency %v ppb outside ±%v", freqPPB, c.maxFreqPPB)
	}
	c.model = c.model.Rebase(c.osc.RawAt(c.now()), freqPPB)
	return nil
}

// FreqPPB is the applied correction.
func (c *Clock) FreqPPB() (float64, error) { return c.model.FreqPPB, nil }

// MaxFreqPPB is the correction limit.
func (c *Clock) MaxFreqPPB() float64 { return c.maxFreqPPB }

// Step moves the reading by stepNS.
func (c *Clock) Step(stepNS int64) error {
	c.model.BaseNS += stepNS
	return nil
}

// SetSync records the sync state (no kernel to tell).
func (c *Clock) SetSync(synced bool, _, _ int64) error {
	c.synced = synced
	return nil
}
