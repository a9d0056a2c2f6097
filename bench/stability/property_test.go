package stability

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// slope fits log10(value) against log10(tau) by least squares.
func slope(ps []Point) float64 {
	var sx, sy, sxx, sxy float64
	for _, p := range ps {
		lx, ly := math.Log10(p.TauS), math.Log10(p.Value)
		sx += lx
		sy += ly
		sxx += lx * lx
		sxy += lx * ly
	}
	n := float64(len(ps))
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
}

// Power-law noise has a known ADEV slope (SP 1065's table of noise types):
// white phase noise τ^−1 (MDEV τ^−3/2), white frequency noise τ^−1/2,
// random-walk frequency noise τ^+1/2. Seeded series of 2^15 samples,
// factors 1 … 256.
//
// Tolerance: over 20 seeds (go test -v -run TestNoiseSlopes with the loop
// widened) the fitted slopes spanned white PM ADEV −1.001…−0.999, MDEV
// −1.505…−1.490, TDEV −0.505…−0.490, white FM −0.517…−0.479 and
// random-walk FM +0.452…+0.503 (low at small m, where the discrete random
// walk still looks partly white). ±0.05 (±0.1 for random-walk FM) covers
// that with room and stays far from the neighbouring noise types, whose
// slopes differ by 0.5. Five seeds run.
func TestNoiseSlopes(t *testing.T) {
	const n = 1 << 15
	ms := Octave(256)
	for seed := uint64(1); seed <= 5; seed++ {
		rng := rand.New(rand.NewPCG(seed, 99))
		wpm := make([]float64, n)
		wfm := make([]float64, n)
		rwfm := make([]float64, n)
		yRW, xW, xRW := 0.0, 0.0, 0.0
		for i := range n {
			wpm[i] = 1e-9 * rng.NormFloat64()
			wfm[i] = xW
			xW += 1e-9 * rng.NormFloat64()
			rwfm[i] = xRW
			yRW += 1e-12 * rng.NormFloat64()
			xRW += yRW
		}
		for _, c := range []struct {
			name  string
			x     []float64
			est   estimator
			want  float64
			tol   float64
			label string
		}{
			{"white PM", wpm, ADEV, -1, 0.05, "ADEV"},
			{"white PM", wpm, MDEV, -1.5, 0.05, "MDEV"},
			{"white PM", wpm, TDEV, -0.5, 0.05, "TDEV"},
			{"white FM", wfm, ADEV, -0.5, 0.05, "ADEV"},
			{"random-walk FM", rwfm, ADEV, 0.5, 0.1, "ADEV"},
		} {
			ps, err := c.est(c.x, 1, ms)
			if err != nil {
				t.Fatal(err)
			}
			if s := slope(ps); math.Abs(s-c.want) > c.tol {
				t.Errorf("seed %d, %s: %s slope %.3f, want %.1f ± %.2f", seed, c.name, c.label, s, c.want, c.tol)
			} else if seed == 1 {
				t.Logf("%s %s slope %.3f (want %.1f)", c.name, c.label, s, c.want)
			}
		}
	}
}

// bruteMTIE is the definition, O(N·n²): the largest |x[i] − x[j]| over
// present samples at most n apart, and the number of windows of n+1 slots
// holding two or more present samples.
func bruteMTIE(x []float64, n int) (float64, int) {
	best := 0.0
	for i := range x {
		for j := i + 1; j <= i+n && j < len(x); j++ {
			if !math.IsNaN(x[i]) && !math.IsNaN(x[j]) {
				best = max(best, math.Abs(x[i]-x[j]))
			}
		}
	}
	count := 0
	for k := 0; k+n < len(x); k++ {
		present := 0
		for _, v := range x[k : k+n+1] {
			if !math.IsNaN(v) {
				present++
			}
		}
		if present >= 2 {
			count++
		}
	}
	return best, count
}

func TestMTIEAgainstBruteForce(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 200).Draw(t, "n")
		x := make([]float64, n)
		for i := range x {
			if rapid.IntRange(0, 9).Draw(t, "gap?") == 0 {
				x[i] = math.NaN()
			} else {
				x[i] = rapid.Float64Range(-1e3, 1e3).Draw(t, "x")
			}
		}
		windows := []int{1, 2, 3, 5, 8, 13, 50, 199}
		got, err := MTIE(x, 0.5, windows)
		if err != nil {
			t.Fatal(err)
		}
		gi := 0
		for _, w := range windows {
			want, count := bruteMTIE(x, w)
			if count == 0 {
				if gi < len(got) && got[gi].M == w {
					t.Fatalf("window %d: no complete window, yet a point %+v", w, got[gi])
				}
				continue
			}
			if gi >= len(got) || got[gi].M != w {
				t.Fatalf("window %d missing from %+v", w, got)
			}
			p := got[gi]
			if p.Value != want || p.N != count || p.TauS != float64(w)*0.5 {
				t.Fatalf("window %d: got %+v, brute force %v over %d windows", w, p, want, count)
			}
			gi++
		}
	})
}

func TestMTIEHandMade(t *testing.T) {
	x := []float64{0, 1, 3, 2, -1, 0, 5}
	got, err := MTIE(x, 1, []int{1, 2, 3, 6, 7})
	if err != nil {
		t.Fatal(err)
	}
	// 1: the largest step, 0→5 (5); 2: [-1 0 5] (6); 3: [2 -1 0 5] (6);
	// 6: the whole series, 5 − (−1) = 6; 7: longer than the series, absent.
	want := []Point{{1, 1, 5, 6}, {2, 2, 6, 5}, {3, 3, 6, 4}, {6, 6, 6, 1}}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("point %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	// With a gap each window counts the samples it has: 1 interval: 0→1,
	// 1→3, −1→0, 0→5 (4 windows hold two samples); 2: [3 _ −1] spans 4,
	// [−1 0 5] 6 (all 5 windows); 3: 4 windows; 6: the whole, 6.
	g := []float64{0, 1, 3, math.NaN(), -1, 0, 5}
	got, _ = MTIE(g, 1, []int{1, 2, 3, 6})
	want = []Point{{1, 1, 5, 4}, {2, 2, 6, 5}, {3, 3, 6, 4}, {6, 6, 6, 1}}
	if len(got) != len(want) {
		t.Fatalf("with a gap: got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("with a gap, point %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	// In [3 _ 4] no window of 1 interval holds two samples (left out); the
	// window of 2 does.
	if ps, _ := MTIE([]float64{3, math.NaN(), 4}, 1, []int{1, 2}); len(ps) != 1 || ps[0] != (Point{2, 2, 1, 1}) {
		t.Errorf("[3 _ 4]: got %+v, want only window 2 (1 over 1 window)", ps)
	}
}

// bruteADEV is the overlapping formula over the terms that read no gap.
func bruteADEV(x []float64, m int) (float64, int) {
	sum, n := 0.0, 0
	for i := 0; i+2*m < len(x); i++ {
		if math.IsNaN(x[i]) || math.IsNaN(x[i+m]) || math.IsNaN(x[i+2*m]) {
			continue
		}
		d := x[i+2*m] - 2*x[i+m] + x[i]
		sum += d * d
		n++
	}
	return sum, n
}

// Gap policy: the result is the formula's average over exactly the terms
// whose samples are all present (ADEV; MDEV against the literal double
// sum), and N counts them.
func TestGapPolicy(t *testing.T) {
	x, _ := PhaseFromFrequency(nbs1000(), 1)
	g := append([]float64(nil), x...)
	for _, i := range []int{5, 6, 7, 300, 640} {
		g[i] = math.NaN()
	}
	ms := []int{1, 2, 10, 100, 333}
	a, err := ADEV(g, 1, ms)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		sum, n := bruteADEV(g, m)
		want := math.Sqrt(sum / (2 * float64(n) * float64(m*m)))
		if a[i].N != n || math.Abs(a[i].Value-want) > 1e-12*want {
			t.Errorf("ADEV m=%d: got %+v, want %v over %d terms", m, a[i], want, n)
		}
	}
	md, err := MDEV(g, 1, ms)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		sum, n := 0.0, 0
	outer:
		for j := 0; j+3*m-1 < len(g); j++ {
			inner := 0.0
			for k := j; k < j+m; k++ {
				d := g[k+2*m] - 2*g[k+m] + g[k]
				if math.IsNaN(d) {
					continue outer
				}
				inner += d
			}
			sum += inner * inner
			n++
		}
		if n == 0 {
			if i < len(md) && md[i].M == m {
				t.Errorf("MDEV m=%d: no complete term, yet %+v", m, md[i])
			}
			continue
		}
		want := math.Sqrt(sum / (2 * float64(m*m) * float64(m*m) * float64(n)))
		if md[i].N != n || math.Abs(md[i].Value-want) > 1e-9*want {
			t.Errorf("MDEV m=%d: got %+v, want %v over %d terms", m, md[i], want, n)
		}
	}
	// Without gaps the result is unchanged by the policy.
	if err := checkNBS1000(ADEV, MDEV, TDEV); err != nil {
		t.Fatal(err)
	}
}

func TestGrid(t *testing.T) {
	s := int64(time.Second)
	// Jittered stamps around 0, 1, 2, 4, 5 s: slot 3 is a gap.
	tNS := []int64{0, s + 3e8, 2*s - 2e8, 4 * s, 5*s + 1e8}
	x := []float64{1, 2, 3, 5, 6}
	g, err := Grid(tNS, x, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(g) != 6 || g[0] != 1 || g[1] != 2 || g[2] != 3 || !math.IsNaN(g[3]) || g[4] != 5 || g[5] != 6 {
		t.Fatalf("grid %v", g)
	}
	c, err := Analyze(g, 1)
	if err != nil || c.Gaps != 1 || c.Samples != 6 {
		t.Fatalf("Analyze: %+v, %v", c, err)
	}
	for _, bad := range []struct {
		t    []int64
		x    []float64
		want string
	}{
		{[]int64{0, s, s}, []float64{1, 2, 3}, "timestamp 2"},
		{[]int64{0, s, s + 2e8}, []float64{1, 2, 3}, "samples 1 and 2 fall in one slot"},
		{[]int64{0}, []float64{1, 2}, "1 timestamps for 2 values"},
	} {
		if _, err := Grid(bad.t, bad.x, time.Second); err == nil || !contains(err.Error(), bad.want) {
			t.Errorf("Grid(%v): error %v, want one naming %q", bad.t, err, bad.want)
		}
	}
}

func TestBadInputNamed(t *testing.T) {
	for _, c := range []struct {
		x    []float64
		tau0 float64
		want string
	}{
		{[]float64{0, math.Inf(1)}, 1, "x[1] = +Inf"},
		{[]float64{0, 1, 2e100}, 1, "x[2] = 2e+100"},
		{[]float64{0, 1}, 0, "tau0 = 0"},
		{[]float64{0, 1}, math.NaN(), "tau0 = NaN"},
	} {
		if _, err := Analyze(c.x, c.tau0); err == nil || !contains(err.Error(), c.want) {
			t.Errorf("Analyze(%v, %v): error %v, want one naming %q", c.x, c.tau0, err, c.want)
		}
	}
	if _, err := ADEV([]float64{0, 1, 2}, 1, []int{1, 0}); err == nil || !contains(err.Error(), "factor [1] = 0") {
		t.Errorf("factor 0: %v", err)
	}
	if _, err := PhaseFromFrequency([]float64{1, math.NaN()}, 1); err == nil || !contains(err.Error(), "y[1]") {
		t.Errorf("NaN frequency: %v", err)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// A series decoded from fuzz bytes: int16 phase steps scaled by a
// per-input exponent, some samples gaps.
func FuzzAnalyze(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, int8(0))
	f.Add([]byte{255, 127, 0, 128, 1, 1, 1, 1, 200, 13, 0, 0, 7, 7}, int8(-9))
	f.Add([]byte{0x80, 0, 0x80, 0, 0x7f, 0xff, 0x80, 0x00, 0x7f, 0xff}, int8(90))
	f.Fuzz(func(t *testing.T, data []byte, exp int8) {
		if len(data) > 2*600 {
			data = data[:2*600]
		}
		scale := math.Pow(10, float64(max(-100, min(int(exp), 95))))
		x := make([]float64, len(data)/2)
		for i := range x {
			v := int16(uint16(data[2*i])<<8 | uint16(data[2*i+1]))
			if v == math.MinInt16 {
				x[i] = math.NaN() // a gap
			} else {
				x[i] = float64(v) * scale
			}
		}
		c, err := Analyze(x, 1e-3)
		if err != nil {
			t.Fatal(err)
		}
		for name, ps := range map[string][]Point{"ADEV": c.ADEV, "MDEV": c.MDEV, "TDEV": c.TDEV, "MTIE": c.MTIE} {
			prevM := 0
			for _, p := range ps {
				if math.IsNaN(p.Value) || math.IsInf(p.Value, 0) || p.Value < 0 {
					t.Fatalf("%s(m=%d) = %v for finite input", name, p.M, p.Value)
				}
				if p.N < 1 || p.M <= prevM {
					t.Fatalf("%s: point %+v after m=%d", name, p, prevM)
				}
				prevM = p.M
			}
		}
		for i := 1; i < len(c.MTIE); i++ {
			if c.MTIE[i].Value < c.MTIE[i-1].Value {
				t.Fatalf("MTIE decreases: %+v then %+v", c.MTIE[i-1], c.MTIE[i])
			}
		}
	})
}
