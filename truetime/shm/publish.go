package shm

import (
	"github.com/meridiantime/meridian/clock"
	"github.com/meridiantime/meridian/truetime"
)

// Publisher hands each new estimate to the in-process truetime.Clock and to the
// shared-memory segment together with the clock model it refers to, so
// both read the same interval. meridiand and the simulator publish through
// it alike.
type Publisher struct {
	Clock *truetime.Clock     // in-process readers (gRPC, NTP server, HLC)
	Shm   *Writer             // other processes; nil: none
	Model func() clock.Linear // the disciplined clock's current model
	// Disrupted, when set, is called with the number of disruptions
	// (suspends, VM pauses, VMClock events) the segment's writer noticed at
	// this publish: the driver then voids what it measured before them
	// (discipline.Loop.Disrupted). meridiand and the simulator do the same.
	Disrupted func(n uint64)
}

// Publish makes e visible to every reader. The in-process truetime.Clock gets the
// estimate as the segment's writer published it: truetime.Disrupted while the
// writer's truetime.Guard holds a suspend or VMClock disruption. It returns that
// estimate (for status logs and metrics).
func (p Publisher) Publish(e truetime.Estimate) truetime.Estimate {
	if p.Shm != nil {
		seen := p.Shm.Disruptions()
		e = p.Shm.Publish(p.Model(), e)
		if n := p.Shm.Disruptions() - seen; n > 0 && p.Disrupted != nil {
			p.Disrupted(n)
		}
	}
	if p.Clock != nil {
		p.Clock.SetEstimate(e)
	}
	return e
}
