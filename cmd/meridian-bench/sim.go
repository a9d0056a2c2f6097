package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meridiantime/meridian/bench"
	"github.com/meridiantime/meridian/bench/report"
)

const (
	tableSimScenarios = "sim-scenarios"
	tableSimCampaign  = "sim-campaign"
)

type simJSON struct {
	Subcommand    string              `json:"subcommand"`
	Dir           string              `json:"dir"`
	DurationScale float64             `json:"duration_scale"`
	Scenarios     []bench.SimScenario `json:"scenarios"`
	Campaign      *bench.SimCampaign  `json:"campaign,omitempty"`
	TotalReads    int                 `json:"total_reads"`
	Violations    int                 `json:"violations"` // containment + monotonicity, matrix and campaign
}

func newSimCmd(g *globalFlags) *cobra.Command {
	var run bench.SimRun
	var smoke bool
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "the simulator's scenario matrix and a random-world campaign, tabulated",
		Long: `sim runs every scenario file in --scenarios and --worlds random worlds of campaign
--seed through package sim (the real engines, discipline, TrueTime clock and shared
memory against simulated time) and tabulates per scenario: checked reads, containment
violations, |error| p50/p99, ε p50 and ε over the provable minimum; for the campaign:
worlds, reads checked and broken worlds (it stops at the first). A violation is a
result, reported and recorded, not a failure of this command.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if smoke {
				run.Worlds = 3
			}
			if run.DurationScale < 0 || run.DurationScale > 100 {
				return fmt.Errorf("--duration-scale %v: want (0, 100]", run.DurationScale)
			}
			return runSim(g, run)
		},
	}
	f := cmd.Flags()
	f.StringVar(&run.Dir, "scenarios", "sim/scenarios", "directory of scenario files (*.yaml)")
	f.Float64Var(&run.DurationScale, "duration-scale", 1, "multiply every scenario's duration")
	f.IntVar(&run.Worlds, "worlds", 100, "random worlds in the campaign (0: none)")
	f.Uint64Var(&run.Seed, "seed", 1, "campaign seed")
	f.BoolVar(&smoke, "smoke", false, "reduced run (seconds): 3 worlds")
	return cmd
}

func runSim(g *globalFlags, run bench.SimRun) error {
	pr := newProgress(g.stderr)
	defer pr.wait()
	var set func(int)
	run.Progress = func(done, total int) {
		if set == nil {
			set = pr.task("sim: scenarios and worlds", total)
		}
		set(done)
	}
	res, err := bench.RunSim(run)
	if err != nil {
		return failed("sim: %v", err)
	}
	scale := run.DurationScale
	if scale == 0 {
		scale = 1
	}
	out := simJSON{Subcommand: "sim", Dir: run.Dir, DurationScale: scale, Scenarios: res.Scenarios, Campaign: res.Campaign}
	st := report.Table{ID: tableSimScenarios, Heading: "Simulator: the scenario matrix",
		Columns: []string{"scenario", "truth", "reads", "violations", "backwards", "|err| p50", "|err| p99", "ε p50", "ε/min", "expectations"},
		Note: fmt.Sprintf("%s at duration scale %g, deterministic (simulated time). violations: reads whose interval missed the truth; ε/min: median over reads of ε over the provable minimum at the read; expectations: the scenario file's own (timed ones assume duration scale 1).",
			run.Dir, scale)}
	cov := report.Coverage{}
	for _, s := range res.Scenarios {
		exp := "ok"
		if len(s.Failures) > 0 {
			exp = "FAIL: " + strings.Join(s.Failures, "; ")
		}
		st.Rows = append(st.Rows, []string{s.Name, s.Truth, fmt.Sprint(s.Reads), fmt.Sprint(s.Violations), fmt.Sprint(s.Backwards),
			fmtNS(s.ErrP50US * 1e3), fmtNS(s.ErrP99US * 1e3), fmtNS(s.EpsP50US * 1e3), fmt.Sprintf("%.2f", s.EpsVsMin), exp})
		cov.Rows = append(cov.Rows, report.CoverageRow{Name: "meridian (sim)", Scenario: s.Name, Reads: int64(s.Reads), Violations: int64(s.Violations)})
		out.TotalReads += s.Reads
		out.Violations += s.Violations + s.Backwards
	}
	ct := report.Table{ID: tableSimCampaign, Heading: "Simulator: random-world campaign",
		Columns: []string{"seed", "worlds", "reads checked", "broken worlds", "first broken world"}}
	if c := res.Campaign; c != nil {
		first := "–"
		if c.BrokenWorld != "" {
			first = c.BrokenWorld + " (the campaign stops there: meridian-sim fuzz shrinks it)"
		}
		ct.Rows = [][]string{{fmt.Sprint(c.Seed), fmt.Sprint(c.Worlds), fmt.Sprint(c.Reads), fmt.Sprint(c.Broken), first}}
		ct.Note = fmt.Sprintf("Worlds 0..%d of the seed, generated inside the stated assumptions; a broken world has a read that missed its truth, TrueTime going backwards or shared memory disagreeing with the in-process clock.", c.Worlds-1)
		cov.Rows = append(cov.Rows, report.CoverageRow{Name: "meridian (sim)", Scenario: fmt.Sprintf("%d random worlds, seed %d", c.Worlds, c.Seed), Reads: int64(c.Reads), Violations: int64(c.Violations)})
		out.TotalReads += c.Reads
		out.Violations += c.Violations
	} else {
		ct.NotMeasured = "--worlds 0"
	}
	if !g.json {
		printTable(g.stdout, st)
		printTable(g.stdout, ct)
	}
	return g.finish("sim", out, func(r *report.Results) {
		r.SetTable(st)
		r.SetTable(ct)
		r.Coverage = &cov
		filled(r, report.SectionCoverage)
	})
}
