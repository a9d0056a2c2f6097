package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meridiantime/meridian/bench/accuracy"
	"github.com/meridiantime/meridian/bench/report"
)

// accuracyFile is the raw result in an --out directory.
const accuracyFile = "accuracy.json"

// newAccuracyCmd is `meridian-bench accuracy`: the accuracy matrix (paths one
// after another; the contestants of a path at once).
func newAccuracyCmd(g *globalFlags) *cobra.Command {
	var (
		paths, contestants []string
		warm, measure      time.Duration
		offset             time.Duration
		smoke, asJSON      bool
		out, meridiand     string
		workdir, server    string
		traces             string
		xleave             bool
	)
	cmd := &cobra.Command{
		Use:   "accuracy",
		Short: "Meridian's NTP and PTP clients against chronyd and ptp4l through the impairment wire",
		Long: `Runs, path after path, Meridian's NTP and PTP clients, chronyd -x and ptp4l
(free_running 1) as clients of meridiand servers whose clocks run --offset
ahead of this host's clock, each client in a network namespace joined to its
server's by the impairment wire. Prints, per path and contestant, |error|
p50/p99 (from the offset the path's asymmetry forces), time to first sync,
and for Meridian the coverage (reads containing true time) and ε against
the provable minimum. Needs root, iproute2, /dev/net/tun, chrony, linuxptp.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, out = g.json, g.out // the root's --json and --out
			if smoke {
				if !cmd.Flags().Changed("paths") {
					paths = []string{accuracy.PathClean, accuracy.PathAsymmetric}
				}
				if !cmd.Flags().Changed("warmup") {
					warm = 15 * time.Second // ptp4l selects its master after ~7 s, then reports every Sync
				}
				if !cmd.Flags().Changed("measure") {
					measure = 10 * time.Second
				}
			}
			ps, err := accuracy.Paths(paths, warm, measure)
			if err != nil {
				return err
			}
			dir := workdir
			if dir == "" {
				tmp, err := os.MkdirTemp("", "meridian-bench-accuracy-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(tmp)
				dir = tmp
			}
			if server == accuracy.ServerChronyd && !cmd.Flags().Changed("offset") {
				offset = 0 // a chronyd server serves this host's clock
			}
			opts := accuracy.Options{Meridiand: meridiand, Contestants: contestants, Server: server,
				InjectedOffsetNS: int64(offset), Warmup: warm, Measure: measure, Dir: dir, Traces: traces != "", XLeave: xleave}
			if traces != "" {
				if err := os.MkdirAll(traces, 0o755); err != nil {
					return fmt.Errorf("--traces: %w", err)
				}
			}
			if err := accuracy.Requirements(opts); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			table := cmd.OutOrStdout()
			if asJSON {
				table = cmd.ErrOrStderr()
			}
			rep := accuracy.Report{Server: opts.Server, InjectedOffsetNS: opts.InjectedOffsetNS, WarmupS: warm.Seconds(), MeasureS: measure.Seconds(), XLeave: xleave}
			for _, p := range ps {
				fmt.Fprintf(cmd.ErrOrStderr(), "accuracy: path %s (%s): %v warm-up + %v measured\n", p.Name, accuracy.Describe(p.Impair), warm, measure)
				res, err := runPath(ctx, opts, p, traces, cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				rep.Paths = append(rep.Paths, res)
				printPath(table, &res, opts.InjectedOffsetNS)
				if ctx.Err() != nil {
					return fmt.Errorf("accuracy: interrupted during path %s", p.Name)
				}
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			}
			if out != "" {
				return saveAccuracy(out, &rep)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&paths, "paths", nil, "paths to run (default all: "+strings.Join(accuracy.PathNames, ",")+")")
	f.StringSliceVar(&contestants, "contestants", nil, "contestants (default all: "+strings.Join(accuracy.ContestantNames, ",")+")")
	f.DurationVar(&warm, "warmup", 30*time.Second, "warm-up per path, not in the statistics")
	f.DurationVar(&measure, "measure", 120*time.Second, "measured span per path")
	f.DurationVar(&offset, "offset", 5*time.Millisecond, "injected offset: the servers' clocks − this host's clock (±1s)")
	f.BoolVar(&smoke, "smoke", false, "a quick run: paths clean and asymmetric, 15 s warm-up + 10 s measured (flags given still apply)")
	f.StringVar(&meridiand, "meridiand", "bin/meridiand", "meridiand binary")
	f.StringVar(&server, "server", accuracy.ServerMeridiand, "the clients' server: "+accuracy.ServerMeridiand+" (serving --offset ahead) or "+accuracy.ServerChronyd+" (this host's clock, NTP only)")
	f.StringVar(&workdir, "workdir", "", "keep every configuration and log here (default: a temporary directory, removed)")
	f.StringVar(&traces, "traces", "", "write the one-way delays of Meridian's exchanges per path to DIR/<path>-<contestant>.trace, for the simulator's trace key")
	f.BoolVar(&xleave, "xleave", false, "the NTP clients (meridian-ntp and chronyd-ntp) use interleaved mode (chrony's xleave): the server's transmit stamp is its kernel's stamp of the previous reply")
	return cmd
}

func runPath(ctx context.Context, opts accuracy.Options, p accuracy.Path, traces string, log io.Writer) (res accuracy.PathResult, err error) {
	r, err := accuracy.Start(ctx, opts, p)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, r.Close()) }()
	r.Sample(ctx)
	if traces != "" {
		files, err := r.WriteTraces(traces)
		if err != nil {
			return res, err
		}
		for _, f := range files {
			fmt.Fprintf(log, "accuracy: wrote %s\n", f)
		}
	}
	return r.Result(), nil
}

func us(ns int64) string { return fmt.Sprintf("%.1fµs", float64(ns)/1e3) }

func printPath(w io.Writer, p *accuracy.PathResult, injected int64) {
	fmt.Fprintf(w, "\npath %s: %s (injected offset %v)\n", p.Path, p.Impairment, time.Duration(injected))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "contestant\tsamples\t|err| p50\t|err| p99\t|err|* p50\t|err|* p99\terr p50\tmeasured p50\tfirst sync\tcoverage\tε p50\tε/min\t")
	for _, c := range p.Contestants {
		sync := "never"
		if c.FirstSyncNS >= 0 {
			sync = time.Duration(c.FirstSyncNS).Round(100 * time.Millisecond).String()
		}
		cov, eps, ratio := "-", "-", "-"
		if c.Coverage != nil {
			cov = fmt.Sprintf("%.4f (%d/%d)", *c.Coverage, c.CheckedReads-c.Violations, c.CheckedReads)
			eps = us(c.EpsP50NS)
			ratio = fmt.Sprintf("%.2f", c.EpsOverProvable)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", c.Name, c.Samples, us(c.P50AbsErrNS), us(c.P99AbsErrNS),
			us(c.P50AbsErrMeasuredNS), us(c.P99AbsErrMeasuredNS), us(c.MedianErrNS), us(c.MedianOffsetNS), sync, cov, eps, ratio)
	}
	_ = tw.Flush()
	for _, g := range p.Groups {
		fmt.Fprintf(w, "  group %v: min δ %s (provable min %s), wire overhead subtracted a→b %s b→a %s (kernel stamps), server drift max %s over %d reads\n",
			g.Contestants, us(g.MinDelayNS), us(g.ProvableMinNS), us(g.Stamped.AtoBOverheadNS), us(g.Stamped.BtoAOverheadNS), us(g.ServerDriftMaxNS), g.ServerReads)
		pb := g.Probe
		fmt.Fprintf(w, "  stamped probe through the run: %d exchanges (%d a→b, %d b→a legs, %d both); excess over the configured delays a→b min %s p5 %s p50 %s, b→a min %s p5 %s p50 %s; bias %s (least-delayed tenth; over all %s, from the floors %s)\n",
			pb.Exchanges, pb.AtoBLegs, pb.BtoALegs, pb.Pairs, us(pb.AtoBExcessMinNS), us(pb.AtoBExcessP5NS), us(pb.AtoBExcessP50NS),
			us(pb.BtoAExcessMinNS), us(pb.BtoAExcessP5NS), us(pb.BtoAExcessP50NS), us(pb.BiasNS), us(pb.BiasAllNS), us(pb.BiasFloorsNS))
	}
	fmt.Fprintln(w, "  |err|: from the configured physics (half the configured asymmetry); |err|*: from the measured physics (that plus the probe's bias)")
}

// loadResults reads DIR/results.json, or starts one when there is none.
func loadResults(dir string) (*report.Results, error) {
	res, err := report.Load(dir)
	if errors.Is(err, os.ErrNotExist) {
		return &report.Results{Title: "meridian-bench"}, nil
	}
	return res, err
}

// seriesName names a contestant on a path in results.json.
func seriesName(path, contestant string) string { return path + "/" + contestant }

// replaceByName drops from list the entries named in names, then appends
// add: a rerun replaces its own entries and keeps everyone else's.
func replaceByName[T any](list []T, name func(T) string, add []T) []T {
	names := map[string]bool{}
	for _, a := range add {
		names[name(a)] = true
	}
	list = slices.DeleteFunc(list, func(x T) bool { return names[name(x)] })
	return append(list, add...)
}

// saveAccuracy writes DIR/accuracy.json and merges the report sections.
func saveAccuracy(dir string, rep *accuracy.Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, accuracyFile), append(b, '\n'), 0o644); err != nil {
		return err
	}
	res, err := loadResults(dir)
	if err != nil {
		return err
	}
	var offs []report.OffsetSeries
	var errs []report.ErrorSamples
	var ee []report.EpsErr
	var cov []report.CoverageRow
	warmNS := int64(rep.WarmupS * 1e9)
	for _, p := range rep.Paths {
		for _, c := range p.Contestants {
			name := seriesName(p.Path, c.Name)
			o := report.OffsetSeries{Name: name, TS: []float64{}, OffsetS: []float64{}}
			e := report.ErrorSamples{Name: name, ErrorS: []float64{}}
			for i, t := range c.TNS {
				o.TS = append(o.TS, accuracy.Seconds(t))
				o.OffsetS = append(o.OffsetS, accuracy.Seconds(c.ErrNS[i]))
				if t >= warmNS {
					e.ErrorS = append(e.ErrorS, accuracy.Seconds(c.ErrNS[i]))
				}
			}
			offs, errs = append(offs, o), append(errs, e)
			if c.Coverage != nil {
				x := report.EpsErr{Name: name, EpsS: []float64{}, ErrS: []float64{}}
				for i := range c.EpsNS {
					x.EpsS = append(x.EpsS, accuracy.Seconds(c.EpsNS[i]))
					x.ErrS = append(x.ErrS, accuracy.Seconds(c.ErrNS[i]))
				}
				ee = append(ee, x)
				cov = append(cov, report.CoverageRow{Name: c.Name, Scenario: p.Path, Reads: c.CheckedReads, Violations: c.Violations})
			}
		}
	}
	if res.Offsets == nil {
		res.Offsets = &report.Offsets{}
	}
	res.Offsets.Series = replaceByName(res.Offsets.Series, func(s report.OffsetSeries) string { return s.Name }, offs)
	if res.Errors == nil {
		res.Errors = &report.Errors{}
	}
	res.Errors.Contestants = replaceByName(res.Errors.Contestants, func(s report.ErrorSamples) string { return s.Name }, errs)
	if res.EpsVsError == nil {
		res.EpsVsError = &report.EpsVsError{}
	}
	res.EpsVsError.Contestants = replaceByName(res.EpsVsError.Contestants, func(s report.EpsErr) string { return s.Name }, ee)
	if res.Coverage == nil {
		res.Coverage = &report.Coverage{}
	}
	res.Coverage.Rows = replaceByName(res.Coverage.Rows, func(r report.CoverageRow) string { return r.Scenario + "/" + r.Name }, cov)
	for _, id := range []string{report.SectionOffsets, report.SectionErrors, report.SectionEpsVsError, report.SectionCoverage} {
		delete(res.NotMeasured, id)
	}
	return report.Save(dir, res)
}
