package interop

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meridiantime/meridian/bench/accuracy"
)

// The accuracy side by side (issue 15), on the harness meridian-bench
// accuracy uses (package bench/accuracy): our NTP client (meridiand,
// virtual clock started on time) and `chronyd -x`, both in namespace A,
// poll the same chronyd server (namespace B, `local stratum 1`, serving the
// host clock: injected offset 0) every second through the impairment wire.
// Truth is the host clock:
//   - ours: the shm segment read in this process every 100 ms; error =
//     interval midpoint − CLOCK_REALTIME read right after; containment =
//     earliest ≤ host time ≤ latest with the host read before and after;
//   - chrony's: `chronyc -c tracking` field 5 (index 4) every second. chronyd
//     -x never adjusts the clock, so that field (NTP time − system time,
//     negative when the host looks fast) is chrony's own error, with the
//     same sign as ours.
//
// Assertions: no containment violation on any path, ever (also during the
// warm-up); the negative control — the same check on the same reads with ε
// shrunk 100× — must find violations on every path. Every |error| figure
// is measured from half the path's asymmetry, the offset physics forces on
// any NTP client (0 on the symmetric paths): |error − asymmetry/2|, and
// again from the measured physics: the same plus the offset a stamped
// probe (impair.StampProbe, a two-way client with a perfect clock) showed
// in its least-delayed exchanges through the run (accuracy.ProbeResult);
// the probe must have completed enough exchanges for it. Ours ≤ chrony's
// median |error − measured physics| per path is asserted only with
// MERIDIAN_ACCURACY_STRICT=1 (the lead switches it on); otherwise a miss
// is logged as "NOT YET". MERIDIAN_ACCURACY_OUT=file writes the harness's
// report (accuracy.Report) as JSON; MERIDIAN_ACCURACY_SECONDS sets the
// measured span (default 120, after a 30 s warm-up; 600 with
// MERIDIAN_ACCURACY_STRICT=1). Two minutes check containment; they do
// not decide a comparison: on the lossy path our 30-second medians
// wandered by ±20 µs and chronyd's sat 60–116 µs off for its first four
// to five minutes in two of four runs, so a two-minute median of either
// swings by more than the two clients differ.
func TestAccuracyVsChrony(t *testing.T) {
	needChronyWire(t)
	warm, measure := 30*time.Second, 120*time.Second
	if accuracyStrict() {
		measure = 600 * time.Second
	}
	if v := os.Getenv("MERIDIAN_ACCURACY_SECONDS"); v != "" {
		s, err := strconv.Atoi(v)
		if err != nil || s < 10 {
			t.Fatalf("MERIDIAN_ACCURACY_SECONDS: want whole seconds ≥ 10, got %q", v)
		}
		measure = time.Duration(s) * time.Second
	}
	paths, err := accuracy.Paths([]string{accuracy.PathClean, accuracy.PathJitter, accuracy.PathLossy, accuracy.PathAsymmetric}, warm, measure)
	if err != nil {
		t.Fatal(err)
	}
	opts := accuracy.Options{Meridiand: buildMeridiand(t), Contestants: []string{accuracy.MeridianNTP, accuracy.ChronydNTP},
		Server: accuracy.ServerChronyd, Warmup: warm, Measure: measure, Dir: t.TempDir()}
	start := time.Now()
	// Setup in this goroutine (it may fail the test), then all paths sample
	// at once: t.Parallel would run only GOMAXPROCS (2 here) of them at a
	// time, for no CPU reason (they mostly sleep).
	var runs []*accuracy.Run
	for _, p := range paths {
		r, err := accuracy.Start(t.Context(), opts, p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := r.Close(); err != nil {
				t.Error(err)
			}
		})
		runs = append(runs, r)
	}
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Add(1)
		go func() { defer wg.Done(); r.Sample(t.Context()) }()
	}
	wg.Wait()
	rep := accuracy.Report{Server: opts.Server, WarmupS: warm.Seconds(), MeasureS: measure.Seconds()}
	for i, r := range runs {
		res := r.Result()
		rep.Paths = append(rep.Paths, res)
		t.Run(paths[i].Name, func(t *testing.T) { evaluateAccuracy(t, paths[i], &res, measure, r.LogTail) })
	}
	wall := time.Since(start)
	var b strings.Builder
	fmt.Fprintf(&b, "accuracy vs chronyd -x, %v warm-up + %v measured, %v wall:\n", warm, measure, wall.Round(time.Second))
	fmt.Fprintf(&b, "%-10s %10s %10s %10s %10s %10s %10s %10s %10s %5s  %s\n",
		"path", "ours p50", "chrony p50", "ours p50*", "chrony p50*", "bias*", "ours p99", "ours ε p50", "ε/min", "viol", "impairment")
	us := func(ns int64) string { return fmt.Sprintf("%.1fµs", float64(ns)/1e3) }
	for _, p := range rep.Paths {
		ours, chrony, g := p.Contestant(accuracy.MeridianNTP), p.Contestant(accuracy.ChronydNTP), p.Group(accuracy.MeridianNTP)
		if ours == nil || chrony == nil || g == nil {
			continue
		}
		fmt.Fprintf(&b, "%-10s %10s %10s %10s %10s %10s %10s %10s %10.2f %5d  %s\n", p.Path,
			us(ours.P50AbsErrNS), us(chrony.P50AbsErrNS), us(ours.P50AbsErrMeasuredNS), us(chrony.P50AbsErrMeasuredNS),
			us(g.Probe.BiasNS), us(ours.P99AbsErrNS), us(ours.EpsP50NS), ours.EpsOverProvable, ours.Violations, p.Impairment)
	}
	b.WriteString("(p50: |error − configured physics|; p50*: |error − measured physics|, the configured physics plus bias*,\n" +
		"the median offset of the stamped probe's least-delayed tenth of exchanges through the run)\n")
	t.Log(b.String())
	if out := os.Getenv("MERIDIAN_ACCURACY_OUT"); out != "" {
		j, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(out, append(j, '\n'), 0o644); err != nil {
			t.Errorf("MERIDIAN_ACCURACY_OUT: %v", err)
		} else {
			t.Logf("wrote %s", out)
		}
	}
}

// needChronyWire: chronyd, chronyc and setpriv, and the impairment wire.
func needChronyWire(t *testing.T) {
	t.Helper()
	need(t, "chronyd")
	need(t, "chronyc")
	need(t, "setpriv")
	needWire(t)
}

// accuracyStrict reports whether ours ≤ chrony's median is asserted.
func accuracyStrict() bool { return os.Getenv("MERIDIAN_ACCURACY_STRICT") == "1" }

// evaluateAccuracy asserts containment (and, with
// MERIDIAN_ACCURACY_STRICT=1, ours ≤ chrony's median) on one path.
func evaluateAccuracy(t *testing.T, path accuracy.Path, res *accuracy.PathResult, measure time.Duration, logTail func(string) string) {
	ours, chrony, g := res.Contestant(accuracy.MeridianNTP), res.Contestant(accuracy.ChronydNTP), res.Group(accuracy.MeridianNTP)
	if ours == nil || chrony == nil || g == nil {
		t.Fatalf("missing results: %+v", res)
	}
	for _, v := range ours.ViolationExamples {
		t.Errorf("containment violation %s", v)
	}
	if ours.Violations > 0 {
		t.Errorf("%d of %d reads missed the host clock", ours.Violations, ours.CheckedReads)
	}
	if ours.ControlViolations == 0 {
		t.Errorf("negative control: with ε shrunk 100× the containment check found no violation in %d reads: it cannot fail", ours.CheckedReads)
	}
	if ours.Samples < int(measure/(200*time.Millisecond)) {
		t.Errorf("only %d synchronized reads in %v (%d refused)", ours.Samples, measure, ours.Unsynchronized)
	}
	if chrony.Samples < int(measure/(2*time.Second)) {
		t.Errorf("chronyd reported tracking for only %d of %v s", chrony.Samples, measure.Seconds())
	}
	if t.Failed() {
		t.Logf("meridiand log (tail):\n%s", logTail(accuracy.MeridianNTP))
	}
	if ours.Samples == 0 || chrony.Samples == 0 {
		return
	}
	// Basic mode: neither client's exchanges were interleaved (the
	// negative control of TestAccuracyXLeave's counts).
	if ours.Interleaved != 0 || chrony.Interleaved != 0 {
		t.Errorf("basic mode: interleaved exchanges counted, ours %d chrony's %d", ours.Interleaved, chrony.Interleaved)
	}
	if g.MinDelayNS == 0 {
		t.Error("neither client reported a round-trip delay")
		return
	}
	t.Logf("ours median |err| %v p99 %v (signed median %v), ε median %v, ε/min %.2f; chrony median |err| %v p99 %v (signed %v); min δ ours %v chrony %v; %d reads, %d chrony samples, %d violations in %d checks (%d loosely bracketed; with ε/100, the negative control, %d); first sync ours %v chrony %v; wire %+v",
		time.Duration(ours.P50AbsErrNS), time.Duration(ours.P99AbsErrNS), time.Duration(ours.MedianErrNS),
		time.Duration(ours.EpsP50NS), ours.EpsOverProvable, time.Duration(chrony.P50AbsErrNS), time.Duration(chrony.P99AbsErrNS), time.Duration(chrony.MedianErrNS),
		time.Duration(ours.MinDelayNS), time.Duration(chrony.MinDelayNS), ours.Samples, chrony.Samples, ours.Violations, ours.CheckedReads, ours.LooseReads, ours.ControlViolations,
		time.Duration(ours.FirstSyncNS), time.Duration(chrony.FirstSyncNS), g.Wire)
	// The wire itself, witnessed by chrony: an asymmetric path shifts any
	// NTP client's offset by half the asymmetry (the jitter is symmetric
	// on every path here). 250 µs: chrony's p99 stays within ~50 µs of its
	// median on the asymmetric path; the rest is the wire's lateness under
	// load.
	if want := accuracy.PhysicsNS(path.Impair, 0); want != 0 && abs64(chrony.MedianErrNS-want) > 250e3 {
		t.Errorf("chrony's median offset %v on a %v / %v path: the wire's asymmetry should make it %v ± 250µs",
			time.Duration(chrony.MedianErrNS), path.Impair.AtoB.Delay, path.Impair.BtoA.Delay, time.Duration(want))
	}
	// The stamped probe ran through the run: without its floors there is
	// no measured physics to judge by.
	if !g.Probe.Valid {
		t.Errorf("the stamped probe completed %d of %d exchanges: too few for the measured physics", g.Probe.Pairs, g.Probe.Exchanges)
	}
	t.Logf("probe: %d exchanges, %d complete; excess over the configured delays a→b min %v p5 %v p50 %v, b→a min %v p5 %v p50 %v; bias %v (over all %v, from the floors %v); |err − measured physics| ours p50 %v p99 %v, chrony p50 %v p99 %v",
		g.Probe.Exchanges, g.Probe.Pairs, time.Duration(g.Probe.AtoBExcessMinNS), time.Duration(g.Probe.AtoBExcessP5NS), time.Duration(g.Probe.AtoBExcessP50NS),
		time.Duration(g.Probe.BtoAExcessMinNS), time.Duration(g.Probe.BtoAExcessP5NS), time.Duration(g.Probe.BtoAExcessP50NS),
		time.Duration(g.Probe.BiasNS), time.Duration(g.Probe.BiasAllNS), time.Duration(g.Probe.BiasFloorsNS),
		time.Duration(ours.P50AbsErrMeasuredNS), time.Duration(ours.P99AbsErrMeasuredNS), time.Duration(chrony.P50AbsErrMeasuredNS), time.Duration(chrony.P99AbsErrMeasuredNS))
	// Judged from the measured physics: both clients see the same wire at
	// the same time, and the probe's floors are that wire's, where the
	// calibration before the run saw the machine as it was then.
	if ours.P50AbsErrMeasuredNS > chrony.P50AbsErrMeasuredNS {
		msg := fmt.Sprintf("%s: our median |error − measured physics| %v exceeds chrony's %v (from the configured physics: %v and %v)", path.Name,
			time.Duration(ours.P50AbsErrMeasuredNS), time.Duration(chrony.P50AbsErrMeasuredNS),
			time.Duration(ours.P50AbsErrNS), time.Duration(chrony.P50AbsErrNS))
		if accuracyStrict() {
			t.Error(msg)
		} else {
			t.Log("NOT YET (asserted with MERIDIAN_ACCURACY_STRICT=1): " + msg)
		}
	}
}

func abs64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// meridian-bench accuracy --xleave: both clients of the chronyd server
// ask for interleaved mode and get it (their interleaved exchanges are
// counted, as TestAccuracyVsChrony checks they are not without it), and
// our intervals still contain the host's time on every read.
func TestAccuracyXLeave(t *testing.T) {
	needChronyWire(t)
	warm, measure := 10*time.Second, 20*time.Second
	paths, err := accuracy.Paths([]string{accuracy.PathClean}, warm, measure)
	if err != nil {
		t.Fatal(err)
	}
	opts := accuracy.Options{Meridiand: buildMeridiand(t), Contestants: []string{accuracy.MeridianNTP, accuracy.ChronydNTP},
		Server: accuracy.ServerChronyd, Warmup: warm, Measure: measure, Dir: t.TempDir(), XLeave: true}
	r, err := accuracy.Start(t.Context(), opts, paths[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	r.Sample(t.Context())
	res := r.Result()
	ours, chrony := res.Contestant(accuracy.MeridianNTP), res.Contestant(accuracy.ChronydNTP)
	if ours == nil || chrony == nil {
		t.Fatalf("missing results: %+v", res)
	}
	if ours.Violations != 0 || ours.CheckedReads == 0 || ours.ControlViolations == 0 {
		t.Errorf("containment: %d violations in %d reads (control %d)", ours.Violations, ours.CheckedReads, ours.ControlViolations)
	}
	// ~1 exchange a second for 30 s: most of ours after the first are
	// interleaved; chronyd's once-a-second reports say so too.
	if ours.Interleaved < 5 || chrony.Interleaved < 5 {
		t.Errorf("interleaved exchanges: ours %d, chrony's reports %d; want ≥ 5 each\nmeridiand log (tail):\n%s",
			ours.Interleaved, chrony.Interleaved, r.LogTail(accuracy.MeridianNTP))
	}
	t.Logf("interleaved: ours %d samples, chrony %d reports; median |err| ours %v chrony %v",
		ours.Interleaved, chrony.Interleaved, time.Duration(ours.P50AbsErrNS), time.Duration(chrony.P50AbsErrNS))
}
