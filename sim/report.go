package sim

import (
	"fmt"
	"strings"
)

// RunAll runs every scenario in order.
func RunAll(scs []Scenario, opt Options) ([]Result, error) {
	out := make([]Result, 0, len(scs))
	for _, sc := range scs {
		r, err := Run(sc, opt)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// FormatTable renders results as a fixed-width table. The output depends
// only on the results, so the same seeds give byte-identical reports.
func FormatTable(rs []Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-26s %-5s %9s %5s %4s %9s %9s %9s %9s %9s %9s %9s %7s %6s %8s %6s %5s %6s %6s  %s\n",
		"scenario", "truth", "reads", "viol", "back", "err50µs", "err99µs", "errmaxµs", "mid50µs", "mid99µs", "ε50µs", "ε99µs", "ε/min", "tight", "sync@s", "sync%", "steps", "faults", "reqs", "expectations")
	total, viol := 0, 0
	for _, r := range rs {
		exp := "ok"
		if len(r.Failures) > 0 {
			exp = "FAIL: " + strings.Join(r.Failures, "; ")
		}
		sync := "never"
		if r.FirstSyncS >= 0 {
			sync = fmt.Sprintf("%.1f", r.FirstSyncS)
		}
		mode := r.Mode.String()
		if r.LeftAssumptionsS >= 0 && r.Mode == TruthTrue {
			mode = "true*" // left the majority assumption mid-run: monotonicity only from then on
		}
		fmt.Fprintf(&b, "%-26s %-5s %9d %5d %4d %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %7.2f %6.3f %8s %6.1f %5d %6d %6d  %s\n",
			r.Name, mode, r.Reads, r.Violations, r.Backwards, r.ErrP50, r.ErrP99, r.ErrMax, r.MidP50, r.MidP99, r.EpsP50, r.EpsP99, r.EpsVsMin, r.Tightness, sync, r.SyncedPct, r.Steps, r.Faults, r.Requests, exp)
		total += r.Reads
		viol += r.Violations + r.Backwards
	}
	fmt.Fprintf(&b, "total: %d scenarios, %d checked reads, %d containment or monotonicity violations\n", len(rs), total, viol)
	fmt.Fprintf(&b, "truth: true = true time (within the assumptions; true* = until the realization left the majority assumption, see LeftAssumptionsS), ref = a lone reference's time before or after its latest step, none = outside the assumptions (monotonicity only)\n")
	fmt.Fprintf(&b, "back: reads whose latest fell below an earlier earliest; err: |clock − true|; mid: |interval midpoint − true|; ε: half-width; ε/min: median over reads of ε over the provable minimum at the read (min over honest samples so far of δ/2 + root delay/2 + root dispersion + drift bound × age); tight: max |mid − true|/ε\n")
	return b.String()
}

// Failed reports whether any result missed an expectation.
func Failed(rs []Result) bool {
	for _, r := range rs {
		if len(r.Failures) > 0 {
			return true
		}
	}
	return false
}
