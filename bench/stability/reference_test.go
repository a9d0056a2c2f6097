package stability

import (
	"fmt"
	"math"
	"testing"
)

// The 1000-point test data set of NIST SP 1065 (Riley, "Handbook of
// Frequency Stability Analysis", the section on test data sets; first
// published in W.J. Riley, "The Calculation of Time Domain Frequency
// Stability"): fractional frequency n[i]/2147483647 with
// n[i+1] = 16807·n[i] mod 2147483647, n[0] = 1234567890, tau0 = 1 s.
func nbs1000() []float64 {
	const mod = 2147483647
	n := int64(1234567890)
	y := make([]float64, 1000)
	for i := range y {
		y[i] = float64(n) / mod
		n = 16807 * n % mod
	}
	return y
}

// The handbook's reference statistics for that set at averaging factors 1,
// 10 and 100, as published (7 significant digits). Cross-checked against
// two independent copies: allantools' tests/nbs14/test_nbs14_1000point.py
// (Stable32 values) and a time-nuts list post of 2010-01-18 listing the
// same statistics to 10 digits from another implementation.
var nbs1000Factors = []int{1, 10, 100}

var (
	nbs1000ADEV  = []float64{2.922319e-01, 9.965736e-02, 3.897804e-02} // non-overlapping
	nbs1000OADEV = []float64{2.922319e-01, 9.159953e-02, 3.241343e-02}
	nbs1000MDEV  = []float64{2.922319e-01, 6.172376e-02, 2.170921e-02}
	nbs1000TDEV  = []float64{1.687202e-01, 3.563623e-01, 1.253382e+00}
)

// A published value has 7 significant digits: it is within half a unit of
// the 7th digit, a relative 5e-7 at most.
const publishedRelTol = 1e-6

type estimator func(x []float64, tau0S float64, ms []int) ([]Point, error)

// checkAgainst compares est at factors ms with published values.
func checkAgainst(name string, est estimator, x []float64, tau0S float64, ms []int, want []float64, relTol float64) error {
	got, err := est(x, tau0S, ms)
	if err != nil {
		return fmt.Errorf("%s: %v", name, err)
	}
	if len(got) != len(ms) {
		return fmt.Errorf("%s: %d points for %d factors", name, len(got), len(ms))
	}
	for i, p := range got {
		if p.M != ms[i] {
			return fmt.Errorf("%s: point %d has m = %d, want %d", name, i, p.M, ms[i])
		}
		if rel := math.Abs(p.Value-want[i]) / want[i]; !(rel <= relTol) {
			return fmt.Errorf("%s(m=%d) = %.10g, published %.7g (relative error %.2g > %.0g)", name, p.M, p.Value, want[i], rel, relTol)
		}
	}
	return nil
}

// checkNBS1000 is the reference check: overlapping ADEV, MDEV and TDEV of
// the 1000-point set against the published values. The negative controls
// hand it broken estimators.
func checkNBS1000(oadev, mdev, tdev estimator) error {
	x, err := PhaseFromFrequency(nbs1000(), 1)
	if err != nil {
		return err
	}
	if err := checkAgainst("OADEV", oadev, x, 1, nbs1000Factors, nbs1000OADEV, publishedRelTol); err != nil {
		return err
	}
	if err := checkAgainst("MDEV", mdev, x, 1, nbs1000Factors, nbs1000MDEV, publishedRelTol); err != nil {
		return err
	}
	return checkAgainst("TDEV", tdev, x, 1, nbs1000Factors, nbs1000TDEV, publishedRelTol)
}

func TestNBS1000DataSet(t *testing.T) {
	y := nbs1000()
	// The handbook prints the generator's first values.
	for i, want := range []float64{1234567890, 395529916, 1209410747, 633705974} {
		if got := y[i] * 2147483647; math.Abs(got-want) > 1e-3 {
			t.Fatalf("n[%d] = %.0f, published %.0f", i, got, want)
		}
	}
	// Published average and (sample) standard deviation of the set.
	mean, ss := 0.0, 0.0
	for _, v := range y {
		mean += v
	}
	mean /= float64(len(y))
	for _, v := range y {
		ss += (v - mean) * (v - mean)
	}
	sd := math.Sqrt(ss / float64(len(y)-1))
	if math.Abs(mean-4.897745e-01) > 5e-8 || math.Abs(sd-2.884664e-01) > 5e-8 {
		t.Fatalf("mean %.9f sd %.9f, published 4.897745e-01 and 2.884664e-01", mean, sd)
	}
}

func TestNBS1000Reference(t *testing.T) {
	if err := checkNBS1000(ADEV, MDEV, TDEV); err != nil {
		t.Fatal(err)
	}
	// The term counts of a gap-free series: N−2m and N−3m+1, N = 1001.
	x, _ := PhaseFromFrequency(nbs1000(), 1)
	a, _ := ADEV(x, 1, nbs1000Factors)
	m, _ := MDEV(x, 1, nbs1000Factors)
	for i, f := range nbs1000Factors {
		if a[i].N != 1001-2*f || m[i].N != 1001-3*f+1 {
			t.Errorf("m=%d: ADEV N %d (want %d), MDEV N %d (want %d)", f, a[i].N, 1001-2*f, m[i].N, 1001-3*f+1)
		}
	}
}

// Units: the same series with x and tau0 both scaled by 1e-9 has the same
// fractional-frequency deviations and a TDEV scaled by 1e-9.
func TestNBS1000Scaling(t *testing.T) {
	x, _ := PhaseFromFrequency(nbs1000(), 1)
	xs := make([]float64, len(x))
	for i, v := range x {
		xs[i] = v * 1e-9 // the same series in units a billion times larger
	}
	// With tau0 = 1e-9 s the fractional frequency is unchanged.
	if err := checkAgainst("OADEV scaled", ADEV, xs, 1e-9, nbs1000Factors, nbs1000OADEV, publishedRelTol); err != nil {
		t.Error(err)
	}
	tdevWant := make([]float64, 3)
	for i, v := range nbs1000TDEV {
		tdevWant[i] = v * 1e-9
	}
	if err := checkAgainst("TDEV scaled", TDEV, xs, 1e-9, nbs1000Factors, tdevWant, publishedRelTol); err != nil {
		t.Error(err)
	}
}

// The handbook's small test set: 9 frequency values (tau0 = 1), published
// ADEV(1), overlapping ADEV(2), MDEV(2), TDEV(1), TDEV(2) and the
// non-overlapping ADEV(2).
func TestNBS10PointReference(t *testing.T) {
	x, err := PhaseFromFrequency([]float64{892, 809, 823, 798, 671, 644, 883, 903, 677}, 1)
	if err != nil {
		t.Fatal(err)
	}
	ms := []int{1, 2}
	for _, c := range []struct {
		name string
		est  estimator
		want []float64
	}{
		{"OADEV", ADEV, []float64{91.22945, 85.95287}},
		{"MDEV", MDEV, []float64{91.22945, 74.78849}},
		{"TDEV", TDEV, []float64{52.67135, 86.35831}},
		{"ADEV (non-overlapping, test helper)", nonOverlappingADEV, []float64{91.22945, 115.8082}},
	} {
		// 7 significant digits published: relative 1e-6.
		if err := checkAgainst(c.name, c.est, x, 1, ms, c.want, publishedRelTol); err != nil {
			t.Error(err)
		}
	}
}

// PHASE.DAT (distributed with Stable32; a copy is in allantools'
// tests/phasedat) is the 1000-point set with its mean frequency removed,
// integrated to phase. Stable32's MTIE of it, printed to 5 digits, for
// windows of 1, 3, 7, … 511 intervals.
func TestMTIEStable32Reference(t *testing.T) {
	y := nbs1000()
	mean := 0.0
	for _, v := range y {
		mean += v
	}
	mean /= float64(len(y))
	for i := range y {
		y[i] -= mean
	}
	x, _ := PhaseFromFrequency(y, 1)
	// PHASE.DAT's first values, to check this is the same series.
	if math.Abs(x[1]-8.511601033439709e-02) > 1e-12 || math.Abs(x[2]-(-2.204754825860608e-01)) > 1e-12 {
		t.Fatalf("x[1], x[2] = %.15g, %.15g: not PHASE.DAT", x[1], x[2])
	}
	windows := []int{1, 3, 7, 15, 31, 63, 127, 255, 511}
	want := []float64{5.0597e-01, 1.2984e+00, 2.2922e+00, 2.9949e+00, 4.4550e+00, 6.5989e+00, 6.8061e+00, 7.8205e+00, 7.8205e+00}
	got, err := MTIE(x, 1, windows)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range got {
		// 5 significant digits: within half a unit of the 5th.
		if math.Abs(p.Value-want[i]) > 0.5e-4*math.Pow(10, math.Floor(math.Log10(want[i])))+1e-12 {
			t.Errorf("MTIE(%d) = %.6g, Stable32 %.5g", p.M, p.Value, want[i])
		}
		if p.N != 1001-windows[i] {
			t.Errorf("MTIE(%d): %d windows, Stable32 %d", p.M, p.N, 1001-windows[i])
		}
	}
}

// --- negative controls: broken estimators the reference check must catch.

// nonOverlappingADEV is the original (non-overlapping) Allan deviation: one
// second difference every m samples. It is a valid estimator, but not the
// overlapping one the report claims.
func nonOverlappingADEV(x []float64, tau0S float64, ms []int) ([]Point, error) {
	var out []Point
	for _, m := range ms {
		sum, n := 0.0, 0
		for i := 0; i+2*m < len(x); i += m {
			d := x[i+2*m] - 2*x[i+m] + x[i]
			sum += d * d
			n++
		}
		tau := float64(m) * tau0S
		out = append(out, Point{M: m, TauS: tau, Value: math.Sqrt(sum / (2 * float64(n) * tau * tau)), N: n})
	}
	return out, nil
}

// bruteMDEV transcribes the handbook's double sum literally, O(N·m), with
// extra added to the inner sum's length: 0 is the formula, 1 an
// off-by-one (i = j … j+m).
func bruteMDEV(extra int) estimator {
	return func(x []float64, tau0S float64, ms []int) ([]Point, error) {
		var out []Point
		for _, m := range ms {
			sum, n := 0.0, 0
			for j := 0; j+3*m-1+extra < len(x); j++ {
				inner := 0.0
				for i := j; i < j+m+extra; i++ {
					inner += x[i+2*m] - 2*x[i+m] + x[i]
				}
				sum += inner * inner
				n++
			}
			tau := float64(m) * tau0S
			mf := float64(m)
			out = append(out, Point{M: m, TauS: tau, Value: math.Sqrt(sum / (2 * mf * mf * tau * tau * float64(n))), N: n})
		}
		return out, nil
	}
}

func tdevOf(md estimator) estimator {
	return func(x []float64, tau0S float64, ms []int) ([]Point, error) {
		p, err := md(x, tau0S, ms)
		for i := range p {
			p[i].Value *= p[i].TauS / math.Sqrt(3)
		}
		return p, err
	}
}

func TestReferenceCheckCatchesBrokenEstimators(t *testing.T) {
	// The literal transcription passes: the check accepts a correct
	// implementation that shares no code with the package's.
	if err := checkNBS1000(ADEV, bruteMDEV(0), tdevOf(bruteMDEV(0))); err != nil {
		t.Fatalf("literal MDEV formula fails the reference check: %v", err)
	}
	for _, c := range []struct {
		name              string
		oadev, mdev, tdev estimator
	}{
		{"non-overlapping ADEV", nonOverlappingADEV, MDEV, TDEV},
		{"MDEV inner sum off by one", ADEV, bruteMDEV(1), TDEV},
		{"TDEV from an off-by-one MDEV", ADEV, MDEV, tdevOf(bruteMDEV(1))},
	} {
		err := checkNBS1000(c.oadev, c.mdev, c.tdev)
		if err == nil {
			t.Errorf("%s: the reference check passed it", c.name)
			continue
		}
		t.Logf("%s caught: %v", c.name, err)
	}
	// The non-overlapping estimator does match the published non-overlapping
	// ADEV: the control is a real estimator, caught for being the wrong one.
	x, _ := PhaseFromFrequency(nbs1000(), 1)
	if err := checkAgainst("ADEV", nonOverlappingADEV, x, 1, nbs1000Factors, nbs1000ADEV, publishedRelTol); err != nil {
		t.Error(err)
	}
}
