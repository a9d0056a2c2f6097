package bench

import (
	"fmt"
	"time"

	"github.com/meridiantime/meridian/sim"
)

// SimRun configures RunSim: the scenario matrix of Dir (sim.LoadDir) and a
// random-world campaign (sim.Fuzz), through the simulator's Go API.
type SimRun struct {
	Dir           string
	DurationScale float64 // 0 means 1
	Worlds        int     // 0: no campaign
	Seed          uint64
	// Progress, if set, is called after each scenario and each world.
	Progress func(done, total int)
}

// SimScenario is one scenario's row.
type SimScenario struct {
	Name                         string
	Truth                        string
	Reads, Violations, Backwards int
	ErrP50US, ErrP99US           float64
	EpsP50US                     float64
	EpsVsMin                     float64
	Failures                     []string // unmet expectations
}

// SimCampaign summarises the random worlds.
type SimCampaign struct {
	Worlds, Reads, Broken int
	Violations            int // bad reads of the broken world (the campaign stops at it)
	Seed                  uint64
	BrokenWorld           string // the first broken world's name, "" when none
	Elapsed               time.Duration
}

// SimResult is RunSim's outcome.
type SimResult struct {
	Scenarios []SimScenario
	Campaign  *SimCampaign // nil without a campaign
}

// RunSim runs the matrix and the campaign.
func RunSim(r SimRun) (SimResult, error) {
	if r.Worlds < 0 {
		return SimResult{}, fmt.Errorf("bench: --worlds %d: must be ≥ 0", r.Worlds)
	}
	scs, err := sim.LoadDir(r.Dir)
	if err != nil {
		return SimResult{}, err
	}
	total := len(scs) + r.Worlds
	opt := sim.Options{DurationScale: r.DurationScale}
	var out SimResult
	for i, sc := range scs {
		res, err := sim.Run(sc, opt)
		if err != nil {
			return out, fmt.Errorf("scenario %s: %w", sc.Name, err)
		}
		out.Scenarios = append(out.Scenarios, SimScenario{Name: res.Name, Truth: res.Mode.String(),
			Reads: res.Reads, Violations: res.Violations, Backwards: res.Backwards,
			ErrP50US: res.ErrP50, ErrP99US: res.ErrP99, EpsP50US: res.EpsP50, EpsVsMin: res.EpsVsMin, Failures: res.Failures})
		if r.Progress != nil {
			r.Progress(i+1, total)
		}
	}
	if r.Worlds == 0 {
		return out, nil
	}
	var progress func(int, sim.Result)
	if r.Progress != nil {
		progress = func(i int, _ sim.Result) { r.Progress(len(scs)+i+1, total) }
	}
	rep, err := sim.Fuzz(r.Worlds, r.Seed, sim.Options{}, progress)
	if err != nil {
		return out, err
	}
	c := &SimCampaign{Worlds: rep.Worlds, Reads: rep.Reads, Seed: r.Seed, Elapsed: rep.Elapsed}
	if rep.Failing != nil {
		c.Broken, c.BrokenWorld, c.Violations = 1, rep.Failing.Name, rep.Violations // Fuzz stops at the first broken world
	}
	out.Campaign = c
	return out, nil
}
