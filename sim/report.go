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
	fmt.Fprintf(&b, "%-22s %9s %5s %9s %9s %9s %9s %9s %7s %6s %8s %6s %5s  %s\n",
		"scenario", "reads", "viol", "err50µs", "err99µs", "errmaxµs", "ε50µs", "ε99µs", "ε/err", "tight", "sync@s", "sync%", "steps", "expectations")
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
		fmt.Fprintf(&b, "%-22s %9d %5d %9.1f %9.1f %9.1f %9.1f %9.1f %7.1f %6.3f %8s %6.1f %5d  %s\n",
			r.Name, r.Reads, r.Violations, r.ErrP50, r.ErrP99, r.ErrMax, r.EpsP50, r.EpsP99, r.Ratio, r.Tightness, sync, r.SyncedPct, r.Steps, exp)
		total += r.Reads
		viol += r.Violations
	}
	fmt.Fprintf(&b, "total: %d scenarios, %d checked reads, %d containment violations\n", len(rs), total, viol)
	fmt.Fprintf(&b, "err: |clock − true|; ε: half-width; ε/err: ε50/max(err50, 1 µs); tight: max |mid − true|/ε (> 1 is a violation)\n")
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
