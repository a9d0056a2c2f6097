package discipline

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestRegressExactLine(t *testing.T) {
	var pts []point
	for i := 0; i < 10; i++ {
		u := float64(i) * 1e9
		pts = append(pts, point{u: u, xr: 5000 + 20e-6*u, boundNS: 100})
	}
	f := regress(pts)
	if !f.ok || math.Abs(f.slope-20e-6) > 1e-12 {
		t.Fatalf("slope %v ok=%v, want 20e-6", f.slope, f.ok)
	}
	if !feasible(pts) {
		t.Fatal("exact line reported inconsistent")
	}
}

// The slope bound is a hard bound: for errors anywhere within the per-point
// bounds (worst cases included), the fitted slope stays within it.
func TestRegressSlopeBoundHolds(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 2000; trial++ {
		n := 2 + rng.IntN(20)
		trueSlope := (rng.Float64() - 0.5) * 200e-6
		var pts []point
		u := 0.0
		for i := 0; i < n; i++ {
			u += 1e8 + rng.Float64()*4e9
			b := 10 + rng.Float64()*1e5
			e := (rng.Float64()*2 - 1) * b
			if trial%2 == 0 { // extreme errors
				e = b
				if rng.IntN(2) == 0 {
					e = -b
				}
			}
			pts = append(pts, point{u: u, xr: 1e6 + trueSlope*u + e, boundNS: b})
		}
		f := regress(pts)
		if !f.ok {
			t.Fatalf("trial %d: no fit for %d points", trial, n)
		}
		if d := math.Abs(f.slope - trueSlope); d > f.slopeUnc*(1+1e-9)+1e-15 {
			t.Fatalf("trial %d: slope error %g exceeds bound %g", trial, d, f.slopeUnc)
		}
	}
}

func TestRegressDegenerate(t *testing.T) {
	if regress(nil).ok || regress([]point{{u: 1, xr: 1, boundNS: 1}}).ok {
		t.Fatal("fit from fewer than two points")
	}
	if regress([]point{{u: 1, xr: 1, boundNS: 1}, {u: 1, xr: 2, boundNS: 1}}).ok {
		t.Fatal("fit from points at one instant")
	}
}

func TestFeasibleDetectsKink(t *testing.T) {
	var pts []point
	for i := 0; i < 20; i++ {
		u := float64(i) * 1e9
		x := 10e-6 * u
		if i >= 10 {
			x = 10e-6*10e9 + 30e-6*(u-10e9) // frequency step of 20 ppm
		}
		pts = append(pts, point{u: u, xr: x, boundNS: 1000})
	}
	if feasible(pts) {
		t.Fatal("a 20 ppm kink went unnoticed")
	}
}

// Noise within the bounds never makes a window infeasible, and the feasible
// slope range holds the true slope, however the errors fall.
func TestSlopeRangeHoldsTrueSlopeUnderNoise(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := 0; trial < 2000; trial++ {
		n := 2 + rng.IntN(30)
		trueSlope := (rng.Float64() - 0.5) * 200e-6
		var pts []point
		u := 0.0
		for i := 0; i < n; i++ {
			u += 1e8 + rng.Float64()*4e9
			b := 10 + rng.Float64()*1e5*rng.Float64()
			e := (rng.Float64()*2 - 1) * b
			pts = append(pts, point{u: u, xr: 1e6 + trueSlope*u + e, boundNS: b})
		}
		lo, hi, ok := slopeRange(pts)
		if !ok || !feasible(pts) {
			t.Fatalf("trial %d: honest points reported infeasible", trial)
		}
		if trueSlope < lo-1e-15 || trueSlope > hi+1e-15 {
			t.Fatalf("trial %d: true slope %g outside feasible range [%g, %g]", trial, trueSlope, lo, hi)
		}
	}
}

// slopeSD is the slope's standard error: over many lines with independent
// noise (Gaussian, σ 20 µs, equal weights), the spread of the fitted slopes
// about the true one matches the mean reported standard error within 15 %.
func TestRegressSlopeSDMatchesSpread(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const trials, n, sigma = 4000, 32, 20e3
	var sumSq, sumSD float64
	for range trials {
		var pts []point
		for i := range n {
			u := float64(i) * 1e9
			pts = append(pts, point{u: u, xr: 1e6 + 3e-6*u + rng.NormFloat64()*sigma, boundNS: 1e6})
		}
		f := regress(pts)
		if !f.ok || f.slopeSD <= 0 {
			t.Fatalf("fit %+v", f)
		}
		sumSq += (f.slope - 3e-6) * (f.slope - 3e-6)
		sumSD += f.slopeSD
	}
	spread, reported := math.Sqrt(sumSq/trials), sumSD/trials
	t.Logf("slope spread %.3g, mean reported standard error %.3g", spread, reported)
	if r := reported / spread; r < 0.85 || r > 1.15 {
		t.Fatalf("reported standard error %.3g is %.2f× the actual spread %.3g", reported, r, spread)
	}
	if two := regress(pts2()); two.slopeSD != 0 {
		t.Fatalf("two points: slopeSD %v, want 0 (no residual to judge)", two.slopeSD)
	}
}

func pts2() []point {
	return []point{{u: 0, xr: 0, boundNS: 1}, {u: 1e9, xr: 5, boundNS: 1}}
}

// A lone source that steps once inside the window: each side still holds
// a line of the true slope, but a line through both does not. Wherever no
// line fails the window (an infeasible window is trimmed by refit, so it
// never reaches rate), the slope bound must still hold. Spacings include
// long gaps with one or two points on a side, where a bridging line checks
// nothing. The negative control: the same worlds without the lone mark
// (the least-squares bound alone) must miss the true slope somewhere.
func TestRegressBoundHoldsAcrossOneStep(t *testing.T) {
	run := func(lone bool) (checked, missed int) {
		rng := rand.New(rand.NewPCG(3, 4))
		for trial := 0; trial < 4000; trial++ {
			n := 2 + rng.IntN(12)
			trueSlope := (rng.Float64() - 0.5) * 200e-6
			split := rng.IntN(n + 1) // points from split on are after the step
			step := (rng.Float64() - 0.5) * 2e6 * math.Pow(rng.Float64(), 2)
			var pts []point
			u := 0.0
			for i := 0; i < n; i++ {
				if rng.IntN(4) == 0 {
					u += 1e11 + rng.Float64()*5e11 // a gap of minutes
				} else {
					u += 1e9 + rng.Float64()*2e9
				}
				b := 10 + rng.Float64()*2e5
				x := 1e6 + trueSlope*u + (rng.Float64()*2-1)*b
				if i >= split {
					x += step
				}
				pts = append(pts, point{u: u, xr: x, boundNS: b, lone: lone})
			}
			if !feasible(pts) {
				continue
			}
			f := regress(pts)
			if !f.ok {
				continue
			}
			checked++
			if math.Abs(f.slope-trueSlope) > f.slopeUnc*(1+1e-9)+1e-15 {
				missed++
				if lone {
					t.Errorf("trial %d: %d points, step %.0f ns before point %d: slope error %g exceeds bound %g",
						trial, n, step, split, math.Abs(f.slope-trueSlope), f.slopeUnc)
				}
			}
		}
		return checked, missed
	}
	checked, _ := run(true)
	if checked < 1000 {
		t.Fatalf("only %d feasible worlds checked", checked)
	}
	if c, m := run(false); m == 0 {
		t.Fatalf("negative control: the least-squares bound alone held in all %d worlds; the test cannot tell", c)
	} else {
		t.Logf("the least-squares bound alone missed the true slope in %d of %d worlds", m, c)
	}
}

// randomWindow is a regression window of n points in strictly increasing
// u: a line, a kink or a step, with errors inside (or, shape 3, partly
// outside) the points' bounds, gaps from microseconds to minutes.
func randomWindow(rng *rand.Rand, n int) []point {
	pts := make([]point, n)
	u := rng.Float64() * 1e13
	slope := (rng.Float64() - 0.5) * 1e-3
	x0 := (rng.Float64() - 0.5) * 1e7
	shape := rng.IntN(4)
	at := rng.IntN(n + 1)
	for i := range pts {
		switch rng.IntN(3) {
		case 0:
			u += 1e3 + rng.Float64()*1e6
		case 1:
			u += 1e9 * (0.5 + rng.Float64())
		default:
			u += 1e9 * rng.ExpFloat64() * 30
		}
		b := math.Exp(rng.Float64()*12) + 1
		x := x0 + slope*u
		switch {
		case shape == 1 && i >= at:
			x += 20e-6 * (u - pts[max(at-1, 0)].u)
		case shape == 2 && i >= at:
			x += 5e4
		}
		e := (2*rng.Float64() - 1) * b
		if shape == 3 && rng.IntN(8) == 0 {
			e *= 3
		}
		pts[i] = point{u: u, xr: x + e, boundNS: b}
	}
	return pts
}

func sameSlope(a, b float64) bool {
	if math.IsInf(a, 0) || math.IsInf(b, 0) {
		return a == b
	}
	return math.Abs(a-b) <= 1e-9*math.Max(math.Abs(b), 1e-12)
}

// The hull method gives every prefix's and suffix's feasible slope range
// as the pairwise definition does, on random windows of every shape
// (feasible and not) and size. The negative control answers each query
// from the newest hull point alone, skipping the tangent search: the same
// comparison finds it wrong.
func TestSlopeRangesMatchPairs(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	var a, b slopeHull
	controlWrong := 0
	for trial := range 3000 {
		n := 2 + rng.IntN(120)
		if trial%50 == 0 {
			n = 256 + rng.IntN(64)
		}
		pts := randomWindow(rng, n)
		pre, suf := make([]slopeSpan, n+1), make([]slopeSpan, n+1)
		rpre, rsuf := make([]slopeSpan, n+1), make([]slopeSpan, n+1)
		slopeRanges(pts, pre, suf, &a, &b)
		prefixSuffixPairs(pts, rpre, rsuf)
		for k := range n + 1 {
			if !sameSlope(pre[k].lo, rpre[k].lo) || !sameSlope(pre[k].hi, rpre[k].hi) ||
				!sameSlope(suf[k].lo, rsuf[k].lo) || !sameSlope(suf[k].hi, rsuf[k].hi) {
				t.Fatalf("trial %d, n %d, k %d: hull pre %v suf %v, pairs pre %v suf %v", trial, n, k, pre[k], suf[k], rpre[k], rsuf[k])
			}
		}
		lo, hi, ok := slopeRange(pts)
		rlo, rhi, rok := slopeRangePairs(pts)
		if ok != rok || !sameSlope(lo, rlo) || !sameSlope(hi, rhi) {
			t.Fatalf("trial %d: slopeRange [%v, %v] %v, pairs [%v, %v] %v", trial, lo, hi, ok, rlo, rhi, rok)
		}
		// Negative control: the newest hull point only.
		a.reset()
		for j, p := range pts {
			q := xy{p.u, p.xr - p.boundNS}
			if len(a.h) > 0 {
				last := a.h[len(a.h)-1]
				if got := (q.y - last.y) / (q.x - last.x); !sameSlope(max(got, rpre[j].lo), rpre[j+1].lo) {
					controlWrong++
					break
				}
			}
			a.add(xy{p.u, p.xr + p.boundNS})
		}
	}
	if controlWrong < 100 {
		t.Fatalf("negative control: answering from the newest hull point was wrong in only %d of 3000 windows", controlWrong)
	}
	t.Logf("negative control wrong in %d of 3000 windows", controlWrong)
}

// Points whose instants repeat take the pairwise path (a pair at one
// instant constrains nothing) and still give its result.
func TestSlopeRangeRepeatedInstant(t *testing.T) {
	pts := []point{{u: 0, xr: 0, boundNS: 10}, {u: 1e9, xr: 1000, boundNS: 10}, {u: 1e9, xr: 1005, boundNS: 10}, {u: 2e9, xr: 2000, boundNS: 10}}
	if increasing(pts) {
		t.Fatal("repeated instant reported increasing")
	}
	lo, hi, ok := slopeRange(pts)
	if !ok || lo > 1e-6 || hi < 1e-6 {
		t.Fatalf("range [%v, %v] %v should hold the slope 1e-6", lo, hi, ok)
	}
}
