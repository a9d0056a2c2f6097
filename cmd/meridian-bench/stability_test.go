package main

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/meridiantime/meridian/bench/accuracy"
	"github.com/meridiantime/meridian/bench/report"
	"github.com/meridiantime/meridian/bench/stability"
)

// onGrid keeps one sample a slot (the first), drops the warm-up, and its
// output is accepted by stability.Grid, which refuses two samples in a
// slot (the control: the unthinned series is refused).
func TestOnGridFeedsGrid(t *testing.T) {
	ms := int64(time.Millisecond)
	// A late tick (160 ms) followed by a timely one (200 ms): one slot.
	ts := []int64{-100 * ms, 0, 100 * ms, 160 * ms, 200 * ms, 300 * ms, 700 * ms}
	xs := []int64{9, 1, 2, 3, 4, 5, 6}
	gt, gx := onGrid(ts, xs, 0, 100*ms)
	if want := []int64{0, 100 * ms, 160 * ms, 300 * ms, 700 * ms}; !slices.Equal(gt, want) {
		t.Fatalf("times %v, want %v", gt, want)
	}
	if gx[2] != 3e-9 {
		t.Fatalf("the first of a slot is kept: %v", gx)
	}
	x, err := stability.Grid(gt, gx, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(x) != 8 || x[2] != 3e-9 || x[3] != 5e-9 || !math.IsNaN(x[4]) || x[7] != 6e-9 {
		t.Fatalf("grid %v", x)
	}
	raw := make([]float64, 0, len(ts)-1)
	for _, v := range xs[1:] {
		raw = append(raw, float64(v))
	}
	if _, err := stability.Grid(ts[1:], raw, 100*time.Millisecond); err == nil {
		t.Fatal("control: Grid accepted two samples in one slot")
	}
}

// A contestant's curves from accuracy.json: a linear error ramp of slope
// y has ADEV 0 (no frequency change) and MTIE = y·τ exactly.
func TestAnalyzeAccuracyRamp(t *testing.T) {
	const n, slope = 200, 1e-6 // 1 µs/s
	c := accuracy.ContestantResult{Name: accuracy.ChronydNTP, SampleIntervalNS: int64(time.Second)}
	for i := range n {
		c.TNS = append(c.TNS, int64(i)*int64(time.Second))
		c.ErrNS = append(c.ErrNS, int64(i)*1000) // slope × 1 s, exactly
	}
	rep := &accuracy.Report{WarmupS: 10, Paths: []accuracy.PathResult{{Path: "clean", Contestants: []accuracy.ContestantResult{c}}}}
	cs, err := analyzeAccuracy(rep)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].Name != "clean/chronyd-ntp" || cs[0].Curves.Samples != n-10 {
		t.Fatalf("curves %+v", cs)
	}
	cv := cs[0].Curves
	for _, p := range cv.ADEV {
		if p.Value > 1e-15 {
			t.Errorf("ADEV(%gs) = %g, want 0 for a pure ramp", p.TauS, p.Value)
		}
	}
	for _, p := range cv.MTIE {
		if math.Abs(p.Value-slope*p.TauS) > 2e-9 {
			t.Errorf("MTIE(%gs) = %g, want %g", p.TauS, p.Value, slope*p.TauS)
		}
	}
	if err := (&report.Results{Stability: &report.Stability{Contestants: cs}}).Validate(); err != nil {
		t.Fatal(err)
	}
}

// A rerun replaces its own entries and keeps everyone else's.
func TestReplaceByName(t *testing.T) {
	name := func(s string) string { return s[:1] }
	got := replaceByName([]string{"a1", "b1", "c1"}, name, []string{"b2", "d2"})
	if want := []string{"a1", "c1", "b2", "d2"}; !slices.Equal(got, want) {
		t.Fatalf("%v, want %v", got, want)
	}
}
