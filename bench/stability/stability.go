package stability

import (
	"fmt"
	"math"
	"time"
)

// MaxAbsPhaseS is the largest |x| accepted, in seconds: with it no sum of
// squares in this package can overflow a float64.
const MaxAbsPhaseS = 1e100

// Point is one statistic at one averaging factor.
type Point struct {
	// M is the averaging factor (ADEV, MDEV, TDEV) or the window length in
	// intervals (MTIE); TauS = M·tau0.
	M    int     `json:"m"`
	TauS float64 `json:"tau_s"`
	// Value is the deviation (ADEV, MDEV: dimensionless fractional
	// frequency) or the time (TDEV, MTIE: seconds).
	Value float64 `json:"value"`
	// N is the number of terms averaged (ADEV: second differences; MDEV and
	// TDEV: outer sums; MTIE: complete windows).
	N int `json:"n"`
}

// Curves holds every statistic of one series.
type Curves struct {
	Tau0S   float64 `json:"tau0_s"`
	Samples int     `json:"samples"` // len(x)
	Gaps    int     `json:"gaps"`    // NaN entries of x
	ADEV    []Point `json:"adev"`
	MDEV    []Point `json:"mdev"`
	TDEV    []Point `json:"tdev"`
	MTIE    []Point `json:"mtie"`
}

// Analyze computes ADEV, MDEV and TDEV at octave-spaced averaging factors
// (1, 2, 4, … while the statistic has at least one term without gaps) and
// MTIE at octave-spaced windows (1, 2, 4, … ≤ N−1 intervals).
func Analyze(x []float64, tau0S float64) (Curves, error) {
	if err := check(x, tau0S); err != nil {
		return Curves{}, err
	}
	n := len(x)
	c := Curves{Tau0S: tau0S, Samples: n}
	for _, v := range x {
		if v != v {
			c.Gaps++
		}
	}
	var err error
	if c.ADEV, err = ADEV(x, tau0S, Octave((n-1)/2)); err != nil {
		return Curves{}, err
	}
	if c.MDEV, err = MDEV(x, tau0S, Octave(n/3)); err != nil {
		return Curves{}, err
	}
	if c.TDEV, err = TDEV(x, tau0S, Octave(n/3)); err != nil {
		return Curves{}, err
	}
	if c.MTIE, err = MTIE(x, tau0S, Octave(n-1)); err != nil {
		return Curves{}, err
	}
	return c, nil
}

// Octave returns 1, 2, 4, … up to and including maxM (none when maxM < 1).
func Octave(maxM int) []int {
	var ms []int
	for m := 1; m >= 1 && m <= maxM; m *= 2 {
		ms = append(ms, m)
	}
	return ms
}

// PhaseFromFrequency integrates fractional-frequency data y (one value per
// interval of tau0 seconds) into phase: x[0] = 0, x[i+1] = x[i] + y[i]·tau0.
// A NaN y makes every later phase unknown, so it is refused.
func PhaseFromFrequency(y []float64, tau0S float64) ([]float64, error) {
	x := make([]float64, len(y)+1)
	for i, v := range y {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("stability: frequency y[%d] = %v: must be finite", i, v)
		}
		x[i+1] = x[i] + v*tau0S
	}
	return x, nil
}

// Grid places time-error samples taken at tNS (nanoseconds, strictly
// increasing) on a grid of step tau0 starting at tNS[0]: each sample goes to
// the nearest slot, and a slot with no sample is NaN (a gap). Two samples in
// one slot are an error: the sampling is faster than tau0.
func Grid(tNS []int64, xS []float64, tau0 time.Duration) ([]float64, error) {
	if len(tNS) != len(xS) {
		return nil, fmt.Errorf("stability: %d timestamps for %d values", len(tNS), len(xS))
	}
	if tau0 <= 0 {
		return nil, fmt.Errorf("stability: tau0 = %v: must be > 0", tau0)
	}
	if len(tNS) == 0 {
		return nil, nil
	}
	for i := 1; i < len(tNS); i++ {
		if tNS[i] <= tNS[i-1] {
			return nil, fmt.Errorf("stability: timestamp %d (%d ns) is not after timestamp %d (%d ns)", i, tNS[i], i-1, tNS[i-1])
		}
	}
	step := int64(tau0)
	slot := func(t int64) int64 { return (t - tNS[0] + step/2) / step }
	last := slot(tNS[len(tNS)-1])
	if last >= 1<<28 {
		return nil, fmt.Errorf("stability: %d slots of %v (span %d ns): too many", last+1, tau0, tNS[len(tNS)-1]-tNS[0])
	}
	out := make([]float64, last+1)
	for i := range out {
		out[i] = math.NaN()
	}
	prev := int64(-1)
	for i, t := range tNS {
		s := slot(t)
		if s == prev {
			return nil, fmt.Errorf("stability: samples %d and %d fall in one slot of %v (t = %d ns): sampled faster than tau0", i-1, i, tau0, t)
		}
		out[s] = xS[i]
		prev = s
	}
	return out, nil
}

func check(x []float64, tau0S float64) error {
	if !(tau0S >= 1e-30 && tau0S <= 1e30) {
		return fmt.Errorf("stability: tau0 = %v s: must be within [1e-30, 1e30] s", tau0S)
	}
	for i, v := range x {
		if v != v {
			continue // a gap
		}
		if math.IsInf(v, 0) || math.Abs(v) > MaxAbsPhaseS {
			return fmt.Errorf("stability: x[%d] = %v s: must be finite with |x| ≤ %g s (NaN marks a gap)", i, v, MaxAbsPhaseS)
		}
	}
	return nil
}

func checkFactors(ms []int, what string) error {
	for i, m := range ms {
		if m < 1 {
			return fmt.Errorf("stability: %s factor [%d] = %d: must be ≥ 1", what, i, m)
		}
	}
	return nil
}

// ADEV is the overlapping Allan deviation of phase x at averaging factors ms.
// A factor with no term free of gaps (including m > (N−1)/2) is left out.
func ADEV(x []float64, tau0S float64, ms []int) ([]Point, error) {
	if err := check(x, tau0S); err != nil {
		return nil, err
	}
	if err := checkFactors(ms, "ADEV averaging"); err != nil {
		return nil, err
	}
	var out []Point
	for _, m := range ms {
		sum, n := 0.0, 0
		for i := 0; i+2*m < len(x); i++ {
			d := x[i+2*m] - 2*x[i+m] + x[i]
			if d != d {
				continue
			}
			sum += d * d
			n++
		}
		if n == 0 {
			continue
		}
		tau := float64(m) * tau0S
		out = append(out, Point{M: m, TauS: tau, Value: math.Sqrt(sum / (2 * float64(n) * tau * tau)), N: n})
	}
	return out, nil
}

// MDEV is the modified Allan deviation of phase x at averaging factors ms.
// A factor with no term free of gaps (including m > N/3) is left out.
func MDEV(x []float64, tau0S float64, ms []int) ([]Point, error) {
	if err := check(x, tau0S); err != nil {
		return nil, err
	}
	if err := checkFactors(ms, "MDEV averaging"); err != nil {
		return nil, err
	}
	var out []Point
	for _, m := range ms {
		sum, n := modSum(x, m)
		if n == 0 {
			continue
		}
		tau := float64(m) * tau0S
		mf := float64(m)
		out = append(out, Point{M: m, TauS: tau, Value: math.Sqrt(sum / (2 * mf * mf * tau * tau * float64(n))), N: n})
	}
	return out, nil
}

// TDEV is the time deviation of phase x at averaging factors ms, in the
// units of x: τ/√3 · MDEV.
func TDEV(x []float64, tau0S float64, ms []int) ([]Point, error) {
	md, err := MDEV(x, tau0S, ms)
	if err != nil {
		return nil, err
	}
	for i := range md {
		md[i].Value *= md[i].TauS / math.Sqrt(3)
	}
	return md, nil
}

// modSum returns Σ_j (Σ_{i=j}^{j+m−1} d[i])² over the outer terms j whose
// samples x[j..j+3m−1] are all present, and their number, where
// d[i] = x[i+2m] − 2x[i+m] + x[i].
//
// The inner sum slides (add the entering d, drop the leaving one) and is
// summed afresh every m steps, so rounding cannot accumulate over more
// than m updates: O(N) per factor.
func modSum(x []float64, m int) (float64, int) {
	nd := len(x) - 2*m // number of second differences
	if nd < m {
		return 0, 0
	}
	d := make([]float64, nd)
	bad := make([]int, nd+1) // bad[k]: gaps among d[0..k-1]
	for i := range d {
		d[i] = x[i+2*m] - 2*x[i+m] + x[i]
		bad[i+1] = bad[i]
		if d[i] != d[i] {
			bad[i+1]++
		}
	}
	sum, n := 0.0, 0
	inner, running := 0.0, false
	for j := 0; j+m <= nd; j++ {
		if bad[j+m] != bad[j] {
			running = false
			continue
		}
		if running && j%m != 0 {
			inner += d[j+m-1] - d[j-1]
		} else {
			inner = 0
			for _, v := range d[j : j+m] {
				inner += v
			}
			running = true
		}
		sum += inner * inner
		n++
	}
	return sum, n
}

// MTIE is the maximum time interval error of phase x for windows of n
// intervals (n+1 slots, τ = n·tau0), in the units of x: the largest
// peak-to-peak excursion of the samples present in any window, i.e. the
// largest |x[i] − x[j]| over present samples at most n slots apart. A
// window length with no window holding two present samples (including
// n ≥ N) is left out.
func MTIE(x []float64, tau0S float64, windows []int) ([]Point, error) {
	if err := check(x, tau0S); err != nil {
		return nil, err
	}
	if err := checkFactors(windows, "MTIE window"); err != nil {
		return nil, err
	}
	var out []Point
	for _, w := range windows {
		if w >= len(x) {
			continue
		}
		best, count := slidingRange(x, w+1)
		if count == 0 {
			continue
		}
		out = append(out, Point{M: w, TauS: float64(w) * tau0S, Value: best, N: count})
	}
	return out, nil
}

// slidingRange returns the largest max−min over the present samples of
// every window of k slots of x, and the number of windows holding at least
// two present samples, with monotone deques of indices (gaps are never
// pushed): O(len(x)).
func slidingRange(x []float64, k int) (float64, int) {
	maxQ := make([]int, 0, k)
	minQ := make([]int, 0, k)
	best, count, present := 0.0, 0, 0
	for i, v := range x {
		if v == v {
			present++
			for len(maxQ) > 0 && x[maxQ[len(maxQ)-1]] <= v {
				maxQ = maxQ[:len(maxQ)-1]
			}
			maxQ = append(maxQ, i)
			for len(minQ) > 0 && x[minQ[len(minQ)-1]] >= v {
				minQ = minQ[:len(minQ)-1]
			}
			minQ = append(minQ, i)
		}
		if i >= k {
			if old := x[i-k]; old == old {
				present--
			}
		}
		if len(maxQ) > 0 && maxQ[0] <= i-k {
			maxQ = maxQ[1:]
		}
		if len(minQ) > 0 && minQ[0] <= i-k {
			minQ = minQ[1:]
		}
		if i >= k-1 && present >= 2 {
			best = max(best, x[maxQ[0]]-x[minQ[0]])
			count++
		}
	}
	return best, count
}
