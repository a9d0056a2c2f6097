package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/meridiantime/meridian/client"
	"github.com/meridiantime/meridian/clock/hostclock"
	"github.com/meridiantime/meridian/hlc"
	"github.com/meridiantime/meridian/truetime"
)

// BestOfRounds measures in-process calls that cost tens of ns, on a shared
// machine: each round runs every fn perRound times, one fn after the other,
// and each fn keeps its lowest ns per call over the rounds. Interleaving
// puts every fn under the same load at nearly the same moment; the minimum
// is the cost with the least interference, so the ratios of the results
// are stable where absolute times are not.
func BestOfRounds(rounds, perRound int, fns ...func()) []float64 {
	best := make([]float64, len(fns))
	for r := range rounds {
		for k, f := range fns {
			t0 := time.Now()
			for range perRound {
				f()
			}
			ns := float64(time.Since(t0).Nanoseconds()) / float64(perRound)
			if r == 0 || ns < best[k] {
				best[k] = ns
			}
		}
	}
	return best
}

// ReadCosts is what TrueTimeReads measured: ns per call, best of
// interleaved rounds (BestOfRounds).
type ReadCosts struct {
	Rounds, PerRound int
	ShmNowNS         float64 // client.Shm.Now on a live daemon's segment
	MonoRawNS        float64 // a bare CLOCK_MONOTONIC_RAW read through the vDSO
	TimeNowNS        float64 // time.Now
	HLCNowNS         float64 // hlc.Clock.Now over the same segment
	HLCUpdateNS      float64 // hlc.Clock.Update with a remote timestamp behind ours
}

// shmPhysical is the segment as the HLC's physical clock.
type shmPhysical struct{ s *client.Shm }

func (p shmPhysical) Now() (truetime.Interval, error) { return p.s.Now(context.Background()) }

// TrueTimeReads measures, in one process and interleaved round by round, a
// shared-memory TrueTime read of s, its baselines (CLOCK_MONOTONIC_RAW,
// time.Now) and an HLC built on it (Now, and Update with a remote
// timestamp that is behind, so never rejected). Every call's error is
// counted; any makes the measurement an error.
func TrueTimeReads(s *client.Shm, rounds, perRound int) (ReadCosts, error) {
	if rounds < 1 || perRound < 1 {
		return ReadCosts{}, fmt.Errorf("bench: rounds %d, per round %d: both must be ≥ 1", rounds, perRound)
	}
	ctx := context.Background()
	if _, err := s.Now(ctx); err != nil {
		return ReadCosts{}, fmt.Errorf("bench: shm Now: %w", err)
	}
	h, err := hlc.New(shmPhysical{s}, hlc.Options{})
	if err != nil {
		return ReadCosts{}, err
	}
	remote, err := h.Now()
	if err != nil {
		return ReadCosts{}, fmt.Errorf("bench: hlc Now: %w", err)
	}
	var errs int
	var first error
	note := func(err error) {
		if err != nil {
			if errs == 0 {
				first = err
			}
			errs++
		}
	}
	best := BestOfRounds(rounds, perRound,
		func() { _, err := s.Now(ctx); note(err) },
		func() { hostclock.MonoRawNS() },
		func() { _ = time.Now() },
		func() { _, err := h.Now(); note(err) },
		func() { _, err := h.Update(remote); note(err) },
	)
	if errs > 0 {
		return ReadCosts{}, fmt.Errorf("bench: %d reads failed, the first: %w", errs, first)
	}
	if h.Rejected() > 0 {
		return ReadCosts{}, errors.New("bench: hlc rejected the remote timestamp")
	}
	return ReadCosts{Rounds: rounds, PerRound: perRound, ShmNowNS: best[0], MonoRawNS: best[1], TimeNowNS: best[2], HLCNowNS: best[3], HLCUpdateNS: best[4]}, nil
}
