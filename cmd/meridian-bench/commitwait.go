package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/meridiantime/meridian/bench"
	"github.com/meridiantime/meridian/bench/report"
)

const tableCommitWait = "commit-wait"

type commitWaitRowJSON struct {
	EpsNS            int64   `json:"eps_ns"`
	WaitP50NS        int64   `json:"wait_p50_ns"`
	WaitP99NS        int64   `json:"wait_p99_ns"`
	NoWaitP50NS      int64   `json:"nowait_p50_ns"`
	NoWaitP99NS      int64   `json:"nowait_p99_ns"`
	OverheadNS       int64   `json:"overhead_ns"`
	BoundNS          int64   `json:"bound_ns"`
	OverheadPerBound float64 `json:"overhead_per_bound"`
	WaitTPS          float64 `json:"wait_txn_per_s"`
	NoWaitTPS        float64 `json:"nowait_txn_per_s"`
	WaitPerNoWaitTPS float64 `json:"wait_per_nowait_throughput"`
}

type commitWaitJSON struct {
	Subcommand string              `json:"subcommand"`
	Backend    string              `json:"backend"`
	Method     string              `json:"method"`
	Txns       int                 `json:"txns"`
	Workers    int                 `json:"workers"`
	DurationNS int64               `json:"duration_ns"`
	Escapes    int64               `json:"escapes"`
	Rows       []commitWaitRowJSON `json:"rows"`
}

const commitWaitMethod = "three in-process memory shards (package txn over txn/memory), a node whose TrueTime interval is [true−ε, true+ε] (txntest.Node); latency: one read-write transaction over two shards at a time, commit wait on and off (txn.Options.UnsafeSkipCommitWait) alternating; throughput: workers running two-key transactions over 1000 keys back to back, each mode for the duration; overhead = median(on) − median(off), against the bound 2ε + 50 µs"

func newCommitWaitCmd(g *globalFlags) *cobra.Command {
	var eps []time.Duration
	var txns, workers int
	var dur time.Duration
	var backend string
	var smoke bool
	cmd := &cobra.Command{
		Use:   "commit-wait",
		Short: "transaction latency and throughput against ε, commit wait on and off (memory shards)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if backend != "memory" {
				return fmt.Errorf("--backend %q: memory only (an etcd backend is not built into meridian-bench yet; make txn-long-etcd runs transactions on etcd)", backend)
			}
			if smoke {
				txns, dur, workers = 20, 150*time.Millisecond, 8
			}
			cw := bench.CommitWait{Eps: eps, Txns: txns, Duration: dur, Workers: workers}
			return runCommitWait(g, cw)
		},
	}
	f := cmd.Flags()
	f.DurationSliceVar(&eps, "eps", []time.Duration{10 * time.Microsecond, 100 * time.Microsecond, time.Millisecond, 10 * time.Millisecond}, "ε values")
	f.IntVar(&txns, "txns", 500, "latency samples per ε and mode")
	f.DurationVar(&dur, "duration", 2*time.Second, "each throughput run (per ε and mode)")
	f.IntVar(&workers, "workers", 16, "throughput: transactions in parallel")
	f.StringVar(&backend, "backend", "memory", "shard backend (memory only)")
	f.BoolVar(&smoke, "smoke", false, "reduced run (seconds): 20 transactions, 150ms throughput runs, 8 workers")
	return cmd
}

func runCommitWait(g *globalFlags, cw bench.CommitWait) error {
	pr := newProgress(g.stderr)
	defer pr.wait()
	set := pr.task("commit-wait: ε × mode", 2*len(cw.Eps))
	cw.Progress = func(done, _ int) { set(done) }
	res, err := bench.RunCommitWait(context.Background(), cw)
	if err != nil {
		return failed("commit-wait: %v", err)
	}
	if res.Escapes > 0 {
		return failed("commit-wait: %d TrueTime intervals missed the harness's true time: the harness is broken", res.Escapes)
	}
	out := commitWaitJSON{Subcommand: "commit-wait", Backend: res.Backend, Method: commitWaitMethod, Txns: cw.Txns, Workers: cw.Workers, DurationNS: cw.Duration.Nanoseconds()}
	for _, r := range res.Rows {
		row := commitWaitRowJSON{EpsNS: r.EpsNS, WaitP50NS: r.WaitP50NS, WaitP99NS: r.WaitP99NS, NoWaitP50NS: r.NoWaitP50NS, NoWaitP99NS: r.NoWaitP99NS,
			OverheadNS: r.OverheadNS, BoundNS: r.BoundNS, OverheadPerBound: r.OverheadPerBound, WaitTPS: r.WaitTPS, NoWaitTPS: r.NoWaitTPS}
		row.WaitPerNoWaitTPS = r.WaitTPS / r.NoWaitTPS
		if err := checkFinite("commit-wait", row.OverheadPerBound, row.WaitTPS, row.NoWaitTPS, row.WaitPerNoWaitTPS); err != nil {
			return err
		}
		out.Rows = append(out.Rows, row)
	}
	t := report.Table{ID: tableCommitWait, Heading: "Commit wait: latency and throughput against ε (memory shards)",
		Columns: []string{"ε", "p50 on", "p99 on", "p50 off", "p99 off", "overhead", "bound 2ε+50µs", "overhead/bound", "txn/s on", "txn/s off", "on/off"},
		Note:    commitWaitMethod + fmt.Sprintf(". %d transactions per ε and mode; %d workers for %v per throughput run. Memory backend only.", cw.Txns, cw.Workers, cw.Duration)}
	for _, r := range out.Rows {
		t.Rows = append(t.Rows, []string{fmtNS(float64(r.EpsNS)), fmtNS(float64(r.WaitP50NS)), fmtNS(float64(r.WaitP99NS)), fmtNS(float64(r.NoWaitP50NS)), fmtNS(float64(r.NoWaitP99NS)),
			fmtNS(float64(r.OverheadNS)), fmtNS(float64(r.BoundNS)), fmt.Sprintf("%.2f", r.OverheadPerBound), fmt.Sprintf("%.0f", r.WaitTPS), fmt.Sprintf("%.0f", r.NoWaitTPS), fmt.Sprintf("%.2f×", r.WaitPerNoWaitTPS)})
	}
	lat := report.CommitLatency{Backends: []report.LatencySeries{{Name: "memory, commit wait"}, {Name: "memory, no commit wait"}}}
	for _, s := range res.Samples {
		b := &lat.Backends[1]
		if s.Wait {
			b = &lat.Backends[0]
		}
		b.EpsS = append(b.EpsS, float64(s.EpsNS)/1e9)
		b.LatencyS = append(b.LatencyS, float64(s.LatencyNS)/1e9)
	}
	if !g.json {
		printTable(g.stdout, t)
	}
	return g.finish("commit-wait", out, func(r *report.Results) {
		r.SetTable(t)
		r.CommitLatency = &lat
		filled(r, report.SectionCommitLatency)
	})
}
