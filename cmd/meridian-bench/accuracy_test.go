package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/meridiantime/meridian/bench/accuracy"
	"github.com/meridiantime/meridian/bench/report"
	"github.com/meridiantime/meridian/sim"
)

// TestAccuracySmoke (MERIDIAN_BENCH_SMOKE=1; root, iproute2, /dev/net/tun,
// chrony, linuxptp) builds meridiand and meridian-bench, runs `accuracy
// --smoke` and then `stability` into a temporary --out, and checks: exit 0;
// accuracy.json and results.json well formed, every measured number
// finite; every Meridian read contained true time (coverage 1.0, 0
// violations) while the same reads with ε/100 did not (the containment
// check's negative control); and every contestant's median |error| is
// well under the injected offset while what it measured against the host
// clock is near it — the negative control of the error itself: a client
// that ignored its server would measure 0 and show the whole offset as
// error.
func TestAccuracySmoke(t *testing.T) {
	bin := smokeBinaries(t, "root, iproute2, /dev/net/tun, chrony, linuxptp; about a minute")
	out := t.TempDir()
	const injected = 5 * time.Millisecond
	run := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(filepath.Join(bin, "meridian-bench"), args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			t.Fatalf("meridian-bench %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, stdout.String(), stderr.String())
		}
		t.Logf("meridian-bench %v (%v):\n%s%s", args, time.Since(start).Round(time.Second), stdout.String(), stderr.String())
		return stdout.Bytes()
	}
	traces := t.TempDir()
	stdout := run("accuracy", "--smoke", "--json", "--offset", injected.String(), "--meridiand", filepath.Join(bin, "meridiand"), "--out", out, "--traces", traces)
	checkTraces(t, traces)
	run("stability", "--out", out)

	var printed, saved accuracy.Report
	if err := json.Unmarshal(stdout, &printed); err != nil {
		t.Fatalf("--json output: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(out, "accuracy.json"))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&saved); err != nil {
		t.Fatalf("accuracy.json: %v", err)
	}
	if len(saved.Paths) != 2 || len(printed.Paths) != 2 {
		t.Fatalf("want 2 paths in accuracy.json and on stdout, got %d and %d", len(saved.Paths), len(printed.Paths))
	}
	for _, p := range saved.Paths {
		if len(p.Contestants) != len(accuracy.ContestantNames) {
			t.Errorf("%s: %d contestants, want %d", p.Path, len(p.Contestants), len(accuracy.ContestantNames))
		}
		for _, c := range p.Contestants {
			checkContestant(t, p.Path, &c, int64(injected))
		}
		for _, g := range p.Groups {
			// The truth's witness: each server's own segment against host +
			// injected.
			if g.ServerReads == 0 || g.ServerDriftMaxNS > 100_000 {
				t.Errorf("%s %v: server witness %d reads, max drift %v (want ≥ 1 read within 100µs of host + injected)", p.Path, g.Contestants, g.ServerReads, time.Duration(g.ServerDriftMaxNS))
			}
		}
	}

	res, err := report.Load(out) // validates every section
	if err != nil {
		t.Fatal(err)
	}
	want := 2 * len(accuracy.ContestantNames)
	if res.Offsets == nil || len(res.Offsets.Series) != want || res.Errors == nil || len(res.Errors.Contestants) != want {
		t.Fatalf("results.json: want %d offset series and error sets, got %+v / %+v", want, res.Offsets, res.Errors)
	}
	if res.EpsVsError == nil || len(res.EpsVsError.Contestants) != 4 || res.Coverage == nil || len(res.Coverage.Rows) != 4 {
		t.Fatalf("results.json: want 4 ε-vs-error sets and coverage rows (2 Meridian clients × 2 paths), got %+v / %+v", res.EpsVsError, res.Coverage)
	}
	for _, r := range res.Coverage.Rows {
		if r.Reads == 0 || r.Violations != 0 {
			t.Errorf("coverage %s/%s: %d violations in %d reads, want 0 in > 0", r.Scenario, r.Name, r.Violations, r.Reads)
		}
	}
	if res.Stability == nil || len(res.Stability.Contestants) != want {
		t.Fatalf("results.json: want %d stability curves, got %+v", want, res.Stability)
	}
	for _, s := range res.Stability.Contestants {
		if len(s.Curves.ADEV) == 0 || len(s.Curves.MTIE) == 0 {
			t.Errorf("stability %s: empty curves %+v", s.Name, s.Curves)
		}
	}
}

// errorer is what checkContestant needs of a testing.T.
type errorer interface {
	Helper()
	Errorf(format string, args ...any)
}

func checkContestant(t errorer, path string, c *accuracy.ContestantResult, injected int64) {
	t.Helper()
	name := path + "/" + c.Name
	if c.Samples < 3 || c.FirstSyncNS < 0 {
		t.Errorf("%s: %d samples, first sync %v: want ≥ 3 and synchronized", name, c.Samples, time.Duration(c.FirstSyncNS))
		return
	}
	if len(c.TNS) != len(c.ErrNS) || (c.EpsNS != nil && len(c.EpsNS) != len(c.ErrNS)) {
		t.Errorf("%s: series lengths %d/%d/%d", name, len(c.TNS), len(c.ErrNS), len(c.EpsNS))
	}
	for _, v := range []float64{float64(c.P50AbsErrNS), float64(c.P99AbsErrNS), float64(c.MedianErrNS), float64(c.MedianOffsetNS), c.EpsOverProvable} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Errorf("%s: a non-finite figure in %+v", name, c)
		}
	}
	// A generous bound: a fifth of the injected offset (|error − physics|).
	// A client that ignored its server would show the whole offset as
	// error, and would have measured ≈ 0 against the host clock instead of
	// ≈ injected.
	if c.P50AbsErrNS > injected/5 {
		t.Errorf("%s: median |error| %v, want < %v (injected %v)", name, time.Duration(c.P50AbsErrNS), time.Duration(injected/5), time.Duration(injected))
	}
	// What it measured against the host clock: the injected offset plus the
	// path's physics (≤ 750 µs here) and its error: within half of it.
	if d := c.MedianOffsetNS - injected; d < -injected/2 || d > injected/2 {
		t.Errorf("%s: measured %v against the host clock, want the injected %v ± %v", name, time.Duration(c.MedianOffsetNS), time.Duration(injected), time.Duration(injected/2))
	}
	if accuracy.IsMeridian(c.Name) {
		if c.Coverage == nil || *c.Coverage != 1 || c.Violations != 0 || c.CheckedReads == 0 {
			t.Errorf("%s: coverage %v, %d violations in %d reads: want 1.0, 0", name, c.Coverage, c.Violations, c.CheckedReads)
		}
		if c.ControlViolations == 0 {
			t.Errorf("%s: negative control: with ε/100 no read missed the truth in %d reads: the check cannot fail", name, c.CheckedReads)
		}
		if !(c.EpsOverProvable >= 1) {
			t.Errorf("%s: ε/min %v: ε below the provable minimum cannot be right", name, c.EpsOverProvable)
		}
	}
}

type recorder struct{ errs []string }

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// The smoke test's checks against made-up results (no root needed): a
// client that followed its server passes; the negative controls — one
// that ignored its server (measured 0 against the host clock, so its error
// is the whole injected offset), and a Meridian client with one read that
// missed the truth — fail.
func TestSmokeChecksFailWhenTheyShould(t *testing.T) {
	const inj = int64(5 * time.Millisecond)
	one := 1.0
	good := accuracy.ContestantResult{Name: accuracy.MeridianNTP, Samples: 10, FirstSyncNS: 1e9,
		TNS: []int64{1, 2}, ErrNS: []int64{3, 4}, EpsNS: []int64{5, 6},
		P50AbsErrNS: 20_000, P99AbsErrNS: 90_000, MedianErrNS: -20_000, MedianOffsetNS: inj - 20_000,
		CheckedReads: 100, Coverage: &one, ControlViolations: 40, EpsOverProvable: 1.7}
	var r recorder
	checkContestant(&r, "clean", &good, inj)
	if len(r.errs) != 0 {
		t.Fatalf("a good result failed: %v", r.errs)
	}
	ignored := good
	ignored.MedianErrNS, ignored.P50AbsErrNS, ignored.MedianOffsetNS = -inj, inj, 0
	r = recorder{}
	checkContestant(&r, "clean", &ignored, inj)
	if len(r.errs) != 2 {
		t.Fatalf("a client that ignored its server: want 2 failures (error, measured offset), got %v", r.errs)
	}
	missed := good
	cov := 0.99
	missed.Coverage, missed.Violations = &cov, 1
	r = recorder{}
	checkContestant(&r, "clean", &missed, inj)
	if len(r.errs) != 1 {
		t.Fatalf("a read that missed the truth: want 1 failure, got %v", r.errs)
	}
}

// checkTraces: --traces wrote our NTP client's one-way delays per path, in
// the simulator's format, and they are the wire's (independent truth: the
// path's configured delays, which the calibration makes each direction's
// floor as kernel stamps see it, and the servers' injected offset, which
// the trace takes off): each leg's least over the few exchanges of a smoke
// run is within 30 µs below and 150 µs above its configured delay, and its
// median above it by less than 1 ms. Swapped legs (2 ms against 0.5 ms on
// the asymmetric path) or the offset left in (5 ms) would be far outside.
func checkTraces(t *testing.T, dir string) {
	t.Helper()
	paths, err := accuracy.Paths([]string{accuracy.PathClean, accuracy.PathAsymmetric}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		name := filepath.Join(dir, p.Name+"-"+accuracy.MeridianNTP+".trace")
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := sim.ParseTrace(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(rows) < 10 {
			t.Fatalf("%s: %d exchanges", name, len(rows))
		}
		for leg, want := range []time.Duration{p.Impair.AtoB.Delay, p.Impair.BtoA.Delay} {
			var v []float64
			for _, r := range rows {
				v = append(v, r[leg])
			}
			slices.Sort(v)
			w := float64(want.Microseconds())
			if v[0] < w-30 || v[0] > w+150 || v[len(v)/2]-w > 1000 {
				t.Errorf("%s: leg %d least %.1f µs, median %.1f µs; the wire's floor is %v", name, leg, v[0], v[len(v)/2], want)
			}
		}
	}
}
