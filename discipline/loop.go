package discipline

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/meridiantime/meridian/clock"
)

// ErrStaleSample is returned for a sample whose exchange spanned a clock
// step: its four timestamps do not share one timescale.
var ErrStaleSample = errors.New("discipline: exchange spanned a clock step")

// Loop is the step both drivers run: "take samples → discipline →
// correction/step → estimate". meridiand drives it with its virtual clock
// and real sockets, the simulator with a simulated oscillator; neither has
// a copy of it. The Loop reads only the clock it steers (injected), applies
// every Correction to it at once, and counts steps in a generation number
// that protocol drivers attach to the exchanges they start.
type Loop struct {
	d     *Discipline
	clk   clock.Disciplined
	gen   atomic.Uint64 // read by protocol drivers on other goroutines
	steps int
}

// NewLoop returns a loop over a discipline and the clock it steers.
func NewLoop(d *Discipline, clk clock.Disciplined) *Loop { return &Loop{d: d, clk: clk} }

// Discipline is the core the loop drives.
func (l *Loop) Discipline() *Discipline { return l.d }

// Gen is the current step generation: attach it to an exchange when its
// request leaves, and pass it back with the sample. Safe to call from any
// goroutine.
func (l *Loop) Gen() uint64 { return l.gen.Load() }

// Steps counts the clock steps applied.
func (l *Loop) Steps() int { return l.steps }

// AddSample hands one exchange to the discipline unless a step happened
// since it started (ErrStaleSample).
func (l *Loop) AddSample(name string, s Sample, gen uint64) error {
	if gen != l.gen.Load() {
		return ErrStaleSample
	}
	return l.d.AddSample(name, s)
}

// Update runs the discipline at the clock's current reading and applies the
// correction: the step first (a new generation), then the frequency. The
// caller publishes the returned Estimate.
func (l *Loop) Update() (Update, error) {
	u := l.d.Update(l.clk.NowNS())
	if u.Correction.StepNS != 0 {
		if err := l.clk.Step(u.Correction.StepNS); err != nil {
			return u, fmt.Errorf("clock step: %w", err)
		}
		l.gen.Add(1)
		l.steps++
	}
	if u.Correction.SetFreq {
		if err := l.clk.AdjFreqPPB(u.Correction.FreqPPB); err != nil {
			return u, fmt.Errorf("clock frequency: %w", err)
		}
	}
	return u, nil
}

// Disrupted tells the loop that the clock it steers lost time it cannot
// account for (see Discipline.Disrupted); exchanges in flight are dropped.
func (l *Loop) Disrupted() {
	l.d.Disrupted(l.clk.NowNS())
	l.gen.Add(1)
}
