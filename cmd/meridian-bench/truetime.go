package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/meridiantime/meridian/bench"
	"github.com/meridiantime/meridian/bench/report"
	"github.com/meridiantime/meridian/client"
)

// Table ids of the truetime subcommand in results.json.
const (
	tableTrueTimeReads = "truetime-reads"
	tableTrueTimeGRPC  = "truetime-grpc"
)

const trueTimeReadsMethod = "in one process, best of interleaved rounds: each round runs every read perRound times, one read after the other, and each read keeps its lowest ns per call (the ratios are what to compare; absolute times depend on the machine and its load)"

type readsJSON struct {
	Rounds          int     `json:"rounds"`
	PerRound        int     `json:"per_round"`
	ShmNowNS        float64 `json:"shm_now_ns"`
	MonoRawNS       float64 `json:"monoraw_ns"`
	TimeNowNS       float64 `json:"time_now_ns"`
	HLCNowNS        float64 `json:"hlc_now_ns"`
	HLCUpdateNS     float64 `json:"hlc_update_ns"`
	ShmPerTimeNow   float64 `json:"shm_per_time_now"`
	ShmPerMonoRaw   float64 `json:"shm_per_monoraw"`
	HLCNowPerShm    float64 `json:"hlc_now_per_shm"`
	HLCUpdatePerShm float64 `json:"hlc_update_per_shm"`
}

type grpcRowJSON struct {
	Name        string  `json:"name"`
	Conns       int     `json:"conns"`
	Concurrency int     `json:"concurrency"`
	Calls       uint64  `json:"calls"`
	CallsPerS   float64 `json:"calls_per_s"`
	P50NS       int64   `json:"p50_ns"`
	P99NS       int64   `json:"p99_ns"`
	P999NS      int64   `json:"p999_ns"`
}

type trueTimeJSON struct {
	Subcommand string        `json:"subcommand"`
	Method     string        `json:"method"`
	Reads      readsJSON     `json:"reads"`
	GRPC       []grpcRowJSON `json:"grpc"`
	// NowPerHealthThroughput: loaded TimeService.Now calls/s over
	// health.Check calls/s; NowPerHealthP50: one caller's medians;
	// GRPCNowP50PerShmNow: one caller's gRPC Now median over a shm read.
	NowPerHealthThroughput float64 `json:"now_per_health_throughput"`
	NowPerHealthP50        float64 `json:"now_per_health_p50"`
	GRPCNowP50PerShmNow    float64 `json:"grpc_now_p50_per_shm_now"`
}

func newTrueTimeCmd(g *globalFlags) *cobra.Command {
	var md string
	var rounds, perRound, conns, conc, slices int
	var dur time.Duration
	var smoke bool
	cmd := &cobra.Command{
		Use:   "truetime",
		Short: "shm Now, HLC Now/Update and gRPC Now, each against its baseline in the same run",
		Long: `truetime starts a meridiand (local reference, unix socket, its own temporary directory)
and measures in one process: a shared-memory Now through package client against a bare
CLOCK_MONOTONIC_RAW vDSO read and time.Now; HLC Now and Update over that segment against
the shm read they are built on (best of interleaved rounds); then gRPC TimeService.Now
against grpc.health.v1 Check on the same server, loaded (conns × concurrency: calls/s,
p50/p99/p99.9) and from one caller.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if smoke {
				rounds, perRound, dur, conns, conc, slices = 20, 2000, 300*time.Millisecond, 2, 4, 2
			}
			if rounds < 1 || perRound < 1 || conns < 1 || conc < 1 || slices < 1 {
				return fmt.Errorf("--rounds, --per-round, --conns, --concurrency and --slices must be ≥ 1")
			}
			if dur <= 0 || dur > 2*time.Minute {
				return fmt.Errorf("--duration %v: want (0, 2m]", dur)
			}
			return runTrueTime(g, md, rounds, perRound, conns, conc, slices, dur)
		},
	}
	f := cmd.Flags()
	f.StringVar(&md, "meridiand", "bin/meridiand", "meridiand binary")
	f.IntVar(&rounds, "rounds", 200, "interleaved rounds of the in-process reads")
	f.IntVar(&perRound, "per-round", 5000, "calls of each read per round")
	f.IntVar(&conns, "conns", 4, "gRPC connections of the loaded runs")
	f.IntVar(&conc, "concurrency", 32, "calls in flight per connection")
	f.DurationVar(&dur, "duration", 5*time.Second, "each gRPC run (4 runs, ≤ 2m each), split into --slices alternating slices")
	f.IntVar(&slices, "slices", 5, "gRPC runs alternate in this many slices")
	f.BoolVar(&smoke, "smoke", false, "reduced run (seconds): 20 rounds × 2000, 300ms gRPC runs, 2 conns × 4")
	return cmd
}

func runTrueTime(g *globalFlags, md string, rounds, perRound, conns, conc, slices int, dur time.Duration) error {
	d, err := startLocalDaemon(md)
	if err != nil {
		return failed("truetime: %v", err)
	}
	defer d.stop()
	s, err := client.OpenShm(d.shm)
	if err != nil {
		return failed("truetime: %v", err)
	}
	defer s.Close()
	pr := newProgress(g.stderr)
	defer pr.wait()

	set := pr.task("truetime: in-process reads", 1)
	rc, err := bench.TrueTimeReads(s, rounds, perRound)
	if err != nil {
		return failed("truetime: %v", err)
	}
	set(1)
	out := trueTimeJSON{Subcommand: "truetime", Method: trueTimeReadsMethod, Reads: readsJSON{
		Rounds: rc.Rounds, PerRound: rc.PerRound, ShmNowNS: rc.ShmNowNS, MonoRawNS: rc.MonoRawNS, TimeNowNS: rc.TimeNowNS,
		HLCNowNS: rc.HLCNowNS, HLCUpdateNS: rc.HLCUpdateNS,
		ShmPerTimeNow: rc.ShmNowNS / rc.TimeNowNS, ShmPerMonoRaw: rc.ShmNowNS / rc.MonoRawNS,
		HLCNowPerShm: rc.HLCNowNS / rc.ShmNowNS, HLCUpdatePerShm: rc.HLCUpdateNS / rc.ShmNowNS,
	}}
	r := out.Reads
	if err := checkFinite("truetime reads", r.ShmNowNS, r.MonoRawNS, r.TimeNowNS, r.HLCNowNS, r.HLCUpdateNS, r.ShmPerTimeNow, r.ShmPerMonoRaw, r.HLCNowPerShm, r.HLCUpdatePerShm); err != nil {
		return err
	}

	runs := []struct {
		name, method string
		conns, conc  int
	}{
		{"health.Check, loaded", "health", conns, conc},
		{"TimeService.Now, loaded", "now", conns, conc},
		{"health.Check, one caller", "health", 1, 1},
		{"TimeService.Now, one caller", "now", 1, 1},
	}
	// The methods alternate in slices (health, Now, health, Now, …), so
	// a burst of other work on a shared machine hits both alike.
	set = pr.task("truetime: gRPC slices", len(runs)*slices)
	addr := "unix://" + d.sock
	per := make([][]bench.GRPCLoadResult, len(runs))
	for k := range slices {
		for i, run := range runs {
			lr, err := bench.RunGRPCLoad(context.Background(), bench.GRPCLoad{Address: addr, Conns: run.conns, Concurrency: run.conc, Duration: dur / time.Duration(slices), Method: run.method})
			if err != nil {
				return failed("truetime: %s: %v", run.name, err)
			}
			if lr.Errors > 0 || lr.BadReplies > 0 || lr.Requests == 0 {
				return failed("truetime: %s: %d calls, %d errors (first: %v), %d bad replies", run.name, lr.Requests, lr.Errors, lr.FirstError, lr.BadReplies)
			}
			per[i] = append(per[i], lr)
			set(k*len(runs) + i + 1)
		}
	}
	res := make([]bench.GRPCLoadResult, len(runs))
	for i, run := range runs {
		res[i] = combineSlices(per[i])
		lr := res[i]
		out.GRPC = append(out.GRPC, grpcRowJSON{Name: run.name, Conns: run.conns, Concurrency: run.conc, Calls: lr.Requests, CallsPerS: lr.RPS,
			P50NS: lr.P50.Nanoseconds(), P99NS: lr.P99.Nanoseconds(), P999NS: lr.P999.Nanoseconds()})
	}
	out.NowPerHealthThroughput = res[1].RPS / res[0].RPS
	out.NowPerHealthP50 = float64(res[3].P50) / float64(res[2].P50)
	out.GRPCNowP50PerShmNow = float64(res[3].P50.Nanoseconds()) / rc.ShmNowNS
	if err := checkFinite("truetime gRPC ratios", out.NowPerHealthThroughput, out.NowPerHealthP50, out.GRPCNowP50PerShmNow); err != nil {
		return err
	}

	readsT, grpcT := trueTimeTables(out)
	if !g.json {
		printTable(g.stdout, readsT)
		printTable(g.stdout, grpcT)
	}
	return g.finish("truetime", out, func(r *report.Results) {
		r.SetTable(readsT)
		r.SetTable(grpcT)
	})
}

// combineSlices: calls/s over all slices (calls over elapsed time), and
// each percentile the median of the slices' percentiles.
func combineSlices(rs []bench.GRPCLoadResult) bench.GRPCLoadResult {
	var c bench.GRPCLoadResult
	var p50, p99, p999 []time.Duration
	for _, r := range rs {
		c.Requests += r.Requests
		c.Elapsed += r.Elapsed
		p50, p99, p999 = append(p50, r.P50), append(p99, r.P99), append(p999, r.P999)
	}
	c.RPS = float64(c.Requests) / c.Elapsed.Seconds()
	med := func(v []time.Duration) time.Duration { slices.Sort(v); return v[len(v)/2] }
	c.P50, c.P99, c.P999 = med(p50), med(p99), med(p999)
	return c
}

func trueTimeTables(o trueTimeJSON) (reads, grpc report.Table) {
	r := o.Reads
	x := func(v float64) string { return fmt.Sprintf("%.2f×", v) }
	reads = report.Table{ID: tableTrueTimeReads, Heading: "TrueTime reads against their baselines",
		Columns: []string{"read", "per call", "baseline", "baseline per call", "ratio"},
		Rows: [][]string{
			{"shm Now (package client)", fmtNS(r.ShmNowNS), "time.Now", fmtNS(r.TimeNowNS), x(r.ShmPerTimeNow)},
			{"shm Now (package client)", fmtNS(r.ShmNowNS), "CLOCK_MONOTONIC_RAW (vDSO)", fmtNS(r.MonoRawNS), x(r.ShmPerMonoRaw)},
			{"HLC Now", fmtNS(r.HLCNowNS), "shm Now", fmtNS(r.ShmNowNS), x(r.HLCNowPerShm)},
			{"HLC Update", fmtNS(r.HLCUpdateNS), "shm Now", fmtNS(r.ShmNowNS), x(r.HLCUpdatePerShm)},
		},
		Note: fmt.Sprintf("%d rounds × %d calls, %s.", r.Rounds, r.PerRound, o.Method)}
	grpc = report.Table{ID: tableTrueTimeGRPC, Heading: "gRPC TimeService.Now against grpc.health.v1 Check on the same meridiand",
		Columns: []string{"method", "conns × in flight", "calls", "calls/s", "p50", "p99", "p99.9"}}
	for _, row := range o.GRPC {
		grpc.Rows = append(grpc.Rows, []string{row.Name, fmt.Sprintf("%d × %d", row.Conns, row.Concurrency), fmt.Sprint(row.Calls),
			fmt.Sprintf("%.0f", row.CallsPerS), fmtNS(float64(row.P50NS)), fmtNS(float64(row.P99NS)), fmtNS(float64(row.P999NS))})
	}
	grpc.Note = fmt.Sprintf("Unix socket, closed loop, the four runs alternating in slices (calls/s over all slices; each percentile the median of the slices'), every Now reply checked (synchronized, earliest ≤ latest). Now/Check: %.2f× the throughput loaded, %.2f× the median latency from one caller; one caller's gRPC Now median is %.0f× a shm read.",
		o.NowPerHealthThroughput, o.NowPerHealthP50, o.GRPCNowP50PerShmNow)
	return reads, grpc
}
