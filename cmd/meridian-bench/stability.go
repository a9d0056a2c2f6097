package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meridiantime/meridian/bench/accuracy"
	"github.com/meridiantime/meridian/bench/report"
	"github.com/meridiantime/meridian/bench/stability"
)

// newStabilityCmd is `meridian-bench stability`: ADEV, MDEV, TDEV and MTIE of
// every error series in DIR/accuracy.json.
func newStabilityCmd(g *globalFlags) *cobra.Command {
	var out string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "stability",
		Short: "ADEV/MDEV/TDEV against τ and MTIE against the window of each accuracy error series",
		Long: `Reads DIR/accuracy.json (written by meridian-bench accuracy --out DIR), puts each
contestant's error series of the measured span on its sampling grid (τ0 = the
sampling interval; missing samples are gaps, never interpolated), computes
ADEV, MDEV, TDEV and MTIE (NIST SP 1065; package bench/stability), prints a
table and fills the stability section of DIR/results.json.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, out = g.json, g.out // the root's --json and --out
			if out == "" {
				return errors.New("stability: --out DIR is required (the directory meridian-bench accuracy --out wrote)")
			}
			rep, err := readAccuracy(out)
			if err != nil {
				return err
			}
			curves, err := analyzeAccuracy(rep)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(curves); err != nil {
					return err
				}
			} else {
				printStability(cmd.OutOrStdout(), curves)
			}
			res, err := loadResults(out)
			if err != nil {
				return err
			}
			if res.Stability == nil {
				res.Stability = &report.Stability{}
			}
			res.Stability.Contestants = replaceByName(res.Stability.Contestants, func(s report.StabilityCurves) string { return s.Name }, curves)
			delete(res.NotMeasured, report.SectionStability)
			return report.Save(out, res)
		},
	}
	return cmd
}

// readAccuracy reads DIR/accuracy.json strictly.
func readAccuracy(dir string) (*accuracy.Report, error) {
	path := filepath.Join(dir, accuracyFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("stability: %w (run meridian-bench accuracy --out %s first)", err, dir)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var rep accuracy.Report
	if err := dec.Decode(&rep); err != nil {
		return nil, fmt.Errorf("stability: %s: %w", path, err)
	}
	for _, p := range rep.Paths {
		for _, c := range p.Contestants {
			if len(c.TNS) != len(c.ErrNS) {
				return nil, fmt.Errorf("stability: %s: path %s, %s: %d times for %d errors", path, p.Path, c.Name, len(c.TNS), len(c.ErrNS))
			}
			if c.SampleIntervalNS <= 0 {
				return nil, fmt.Errorf("stability: %s: path %s, %s: sample_interval_ns %d: must be > 0", path, p.Path, c.Name, c.SampleIntervalNS)
			}
		}
	}
	return &rep, nil
}

// onGrid keeps the samples from fromNS on, and of several falling in one
// slot of tau0 (a late tick followed by a timely one) the first, so that
// stability.Grid gets one sample a slot. The slots are Grid's: nearest to
// t0 + k·tau0 with t0 the first kept sample.
func onGrid(tNS, errNS []int64, fromNS, tau0 int64) ([]int64, []float64) {
	var ts []int64
	var xs []float64
	var t0, last int64 = 0, -1
	for i, t := range tNS {
		if t < fromNS {
			continue
		}
		if len(ts) == 0 {
			t0 = t
		}
		slot := (t - t0 + tau0/2) / tau0
		if len(ts) > 0 && (slot == last || t <= ts[len(ts)-1]) {
			continue
		}
		last = slot
		ts = append(ts, t)
		xs = append(xs, float64(errNS[i])/1e9)
	}
	return ts, xs
}

// analyzeAccuracy computes every contestant's curves over its measured span.
func analyzeAccuracy(rep *accuracy.Report) ([]report.StabilityCurves, error) {
	var out []report.StabilityCurves
	warmNS := int64(rep.WarmupS * 1e9)
	for _, p := range rep.Paths {
		for _, c := range p.Contestants {
			name := seriesName(p.Path, c.Name)
			ts, xs := onGrid(c.TNS, c.ErrNS, warmNS, c.SampleIntervalNS)
			if len(xs) < 3 {
				continue // nothing to analyze: no curve rather than an empty one
			}
			x, err := stability.Grid(ts, xs, time.Duration(c.SampleIntervalNS))
			if err != nil {
				return nil, fmt.Errorf("stability: %s: %w", name, err)
			}
			cv, err := stability.Analyze(x, time.Duration(c.SampleIntervalNS).Seconds())
			if err != nil {
				return nil, fmt.Errorf("stability: %s: %w", name, err)
			}
			out = append(out, report.StabilityCurves{Name: name, Curves: cv})
		}
	}
	return out, nil
}

// near is the point whose τ is nearest target on a log scale (nil for
// none).
func near(ps []stability.Point, targetS float64) *stability.Point {
	var best *stability.Point
	for i := range ps {
		if best == nil || math.Abs(math.Log(ps[i].TauS/targetS)) < math.Abs(math.Log(best.TauS/targetS)) {
			best = &ps[i]
		}
	}
	return best
}

func printStability(w io.Writer, cs []report.StabilityCurves) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "series\tτ0\tsamples\tgaps\tADEV(~1s)\tADEV(~10s)\tMDEV(~1s)\tTDEV(~1s)\tTDEV(~10s)\tMTIE(~1s)\tMTIE(~10s)\tMTIE(max)\t")
	// Each cell is value@τ: the octave point nearest the column's τ.
	f := func(ps []stability.Point, targetS float64, seconds bool) string {
		p := near(ps, targetS)
		if targetS == 0 && len(ps) > 0 {
			p = &ps[len(ps)-1]
		}
		if p == nil {
			return "-"
		}
		if seconds {
			return fmt.Sprintf("%s@%gs", us(int64(math.Round(p.Value*1e9))), p.TauS)
		}
		return fmt.Sprintf("%.2e@%gs", p.Value, p.TauS)
	}
	for _, c := range cs {
		cv := c.Curves
		fmt.Fprintf(tw, "%s\t%gs\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", c.Name, cv.Tau0S, cv.Samples, cv.Gaps,
			f(cv.ADEV, 1, false), f(cv.ADEV, 10, false), f(cv.MDEV, 1, false), f(cv.TDEV, 1, true), f(cv.TDEV, 10, true),
			f(cv.MTIE, 1, true), f(cv.MTIE, 10, true), f(cv.MTIE, 0, true))
	}
	_ = tw.Flush()
}
