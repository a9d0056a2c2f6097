package discipline

import (
	"math"
	"math/rand/v2"
	"testing"
)

// rawAt builds a sample of a source whose offset (L − T) is x at u, with
// queueing qf on the request and qb on the reply over a base round trip d.
func rawAt(u, x, d, qf, qb float64) rawSample {
	// θ = T − L + (qf − qb)/2 for a symmetric base: the measured offset
	// (local minus source) is x − (qf − qb)/2.
	delay := d + qf + qb
	return rawSample{u: u, xr: x - (qf-qb)/2, boundNS: delay / 2, delayNS: int64(delay)}
}

// Queueing on one direction at a time leaves each edge of the window's
// intersection set by the sample least delayed in that direction: the
// filter's centre is far closer to the truth than the mean of the centres,
// the newest centre, or the centre of the least-delayed sample.
func TestFilterBeatsSampleCentres(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var sumFilt, sumMean, sumNewest, sumMinDelay float64
	const trials = 300
	for range trials {
		var ss []rawSample
		for i := range 32 {
			qf, qb := rng.ExpFloat64()*1e6, rng.ExpFloat64()*1e6 // mean 1 ms each way
			ss = append(ss, rawAt(float64(i)*1e9, 0, 2e6, qf, qb))
		}
		uNow := 31e9
		f := filterSource(ss, uNow, 0, 0, 0)
		if f.used != len(ss) {
			t.Fatalf("honest window cut at %d of %d samples", f.used, len(ss))
		}
		if math.Abs(f.center) > f.half {
			t.Fatalf("true offset 0 outside the filter's own intersection %v ± %v", f.center, f.half)
		}
		var mean float64
		best := ss[0]
		for _, s := range ss {
			mean += s.xr / float64(len(ss))
			if s.delayNS < best.delayNS {
				best = s
			}
		}
		sumFilt += math.Abs(f.center)
		sumMean += math.Abs(mean)
		sumNewest += math.Abs(ss[len(ss)-1].xr)
		sumMinDelay += math.Abs(best.xr)
	}
	t.Logf("mean |error| µs: filter %.1f, mean of centres %.1f, newest %.1f, least-delayed sample %.1f",
		sumFilt/trials/1e3, sumMean/trials/1e3, sumNewest/trials/1e3, sumMinDelay/trials/1e3)
	if sumFilt > sumMean || sumFilt > sumNewest || sumFilt > sumMinDelay {
		t.Fatal("the filter is not better than the naive estimates")
	}
}

// A source that steps ends the window at the step: the filter speaks for
// its new time, not a blend of old and new.
func TestFilterWindowEndsAtStep(t *testing.T) {
	var ss []rawSample
	for i := range 20 {
		x := 0.0
		if i >= 12 {
			x = 5e6 // 5 ms step, far beyond the 1 ms half-widths
		}
		ss = append(ss, rawAt(float64(i)*1e9, x, 2e6, 0, 0))
	}
	f := filterSource(ss, 19e9, 0, 0, 0)
	if f.used != 8 || math.Abs(f.center-5e6) > 1 {
		t.Fatalf("filter used %d samples, centre %v; want the 8 after the step, centre 5e6", f.used, f.center)
	}
}

// The fitted rate ages every sample to now: a clock running 50 ppm fast
// is estimated where it is now, not where it was.
func TestFilterAgesWithRate(t *testing.T) {
	var ss []rawSample
	for i := range 16 {
		u := float64(i) * 2e9
		ss = append(ss, rawAt(u, 50e-6*u, 2e6, 0, 0))
	}
	uNow := 40e9
	f := filterSource(ss, uNow, 0, 50e-6, 0)
	if math.Abs(f.center-50e-6*uNow) > 1 {
		t.Fatalf("centre %v, want %v", f.center, 50e-6*uNow)
	}
}

// The poll target lengthens with the best half-width and shortens with the
// bound's growth and with the share of samples far from the best.
func TestPollTarget(t *testing.T) {
	clean := make([]rawSample, 16)
	for i := range clean {
		clean[i] = rawAt(float64(i)*1e9, 0, 2e6, 0, 0) // h = 1 ms
	}
	const g = 20e-6 // 20 ppm
	if got, want := pollTarget(clean, g), int64(1e6/(4*g)); math.Abs(float64(got-want)) > 1 {
		t.Fatalf("clean: %d ns, want h/(4G) = %d", got, want)
	}
	if pollTarget(clean, 2*g) >= pollTarget(clean, g) {
		t.Fatal("faster growth did not shorten the poll")
	}
	noisy := append([]rawSample(nil), clean...)
	for i := range noisy {
		if i%4 != 0 {
			noisy[i] = rawAt(float64(i)*1e9, 0, 2e6, 3e6, 0) // 1.5 ms of queueing
		}
	}
	if got, want := pollTarget(noisy, g), pollTarget(clean, g)/4; math.Abs(float64(got-want)) > 1 {
		t.Fatalf("one sample in four near the best: %d ns, want a quarter of the clean target %d", got, want)
	}
	if pollTarget(clean[:3], g) != 0 {
		t.Fatal("advice from three samples")
	}
}

// A lone outlier (a corrupted or wildly late exchange) is skipped, not a
// reason to forget the window behind it.
func TestFilterSkipsLoneOutlier(t *testing.T) {
	var ss []rawSample
	for i := range 20 {
		ss = append(ss, rawAt(float64(i)*1e9, 0, 2e6, 0, 0))
	}
	ss[15].xr = 40e6 // 40 ms off, far beyond its 1 ms half-width
	f := filterSource(ss, 19e9, 0, 0, 0)
	if f.used != 19 || math.Abs(f.center) > 1 {
		t.Fatalf("filter used %d samples, centre %v; want 19 (all but the outlier), centre 0", f.used, f.center)
	}
}

// erlang4 is queueing with a hump above the floor: the sum of four
// exponentials of mean m/4 (the least-delayed samples are rare).
func erlang4(rng *rand.Rand, m float64) float64 {
	var q float64
	for range 4 {
		q += rng.ExpFloat64() * m / 4
	}
	return q
}

// The source's own trend recovers its rate from samples whose queueing has
// a sparse floor, with a standard error that is honest: the slope is
// within three of them of the truth in nearly every window.
func TestTrendRecoversRate(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var sc trendScratch
	const trials = 400
	miss := 0
	var sumSD float64
	for range trials {
		rate := (rng.Float64() - 0.5) * 100e-6 // ±50 ppm
		var ss []rawSample
		for i := range 256 {
			u := float64(i) * 1e9
			ss = append(ss, rawAt(u, rate*u, 2e6, erlang4(rng, 150e3), erlang4(rng, 110e3)))
		}
		tr, ok := sourceTrend(ss, &sc)
		if !ok {
			t.Fatal("no trend from 256 samples")
		}
		if math.Abs(tr.slope-rate) > 3*tr.sd {
			miss++
		}
		sumSD += tr.sd
	}
	t.Logf("mean standard error %.0f ppb; %d of %d windows off by more than 3 of them", sumSD/trials*1e9, miss, trials)
	if miss > trials/20 {
		t.Fatalf("%d of %d slopes off by more than three standard errors", miss, trials)
	}
	if sumSD/trials > 200e-9 {
		t.Fatalf("mean standard error %.0f ppb: the trend is too loose to age a long window", sumSD/trials*1e9)
	}
}

// A rate that changes inside the window (a temperature step) leaves long
// runs of one sign in a line's residuals: the runs test cuts the window
// back toward the change, and the centre stays near the truth. Negative
// control: the line through the whole window misses by far more.
func TestTrendCutsAtRateChange(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	var sc trendScratch
	var sumCut, sumWhole float64
	const trials = 100
	for range trials {
		var ss []rawSample
		x := 0.0
		for i := range 256 {
			u := float64(i) * 1e9
			if i >= 192 {
				x += 2e-6 * 1e9 // +2 ppm from sample 192 on
			}
			ss = append(ss, rawAt(u, x, 2e6, erlang4(rng, 40e3), erlang4(rng, 40e3)))
		}
		uNow, truth := 255e9, x
		tr, ok := sourceTrend(ss, &sc)
		if !ok {
			t.Fatal("no trend")
		}
		if tr.n == len(ss) {
			t.Fatal("the runs test kept a window across a 2 ppm rate change")
		}
		cut := filterSource(ss[len(ss)-tr.n:], uNow, 0, tr.slope, 3*tr.sd)
		whole, _ := fitTrend(ss, &sc)
		all := filterSource(ss, uNow, 0, whole.slope, 3*whole.sd)
		sumCut += math.Abs(cut.center - truth)
		sumWhole += math.Abs(all.center - truth)
	}
	t.Logf("mean |centre − truth| µs: cut window %.1f, whole window %.1f", sumCut/trials/1e3, sumWhole/trials/1e3)
	if sumCut*2 > sumWhole {
		t.Fatal("cutting the window at the rate change did not halve the error")
	}
}

// On a sparse floor a long window aged with the source's trend estimates
// the offset better than a short one: more lucky samples hold the edges.
// The short window (32 samples, the filter's earlier length) is the
// negative control.
func TestLongWindowOnSparseFloor(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	var sc trendScratch
	var sumLong, sumShort float64
	const trials = 300
	for range trials {
		rate := (rng.Float64() - 0.5) * 20e-6
		var ss []rawSample
		for i := range 256 {
			u := float64(i) * 1e9
			ss = append(ss, rawAt(u, rate*u, 2e6, erlang4(rng, 150e3), erlang4(rng, 110e3)))
		}
		uNow := 255e9
		truth := rate * uNow
		estimate := func(win []rawSample) float64 {
			tr, ok := sourceTrend(win, &sc)
			if !ok {
				t.Fatal("no trend")
			}
			return filterSource(win[len(win)-tr.n:], uNow, 0, tr.slope, 3*tr.sd+filterWanderPPB*1e-9).center
		}
		sumLong += math.Abs(estimate(ss) - truth)
		sumShort += math.Abs(estimate(ss[len(ss)-32:]) - truth)
	}
	t.Logf("mean |centre − truth| µs: 256 samples %.1f, 32 samples %.1f", sumLong/trials/1e3, sumShort/trials/1e3)
	if sumLong > 0.75*sumShort {
		t.Fatal("the long window is not clearly better than the short one")
	}
}

// The runs test passes random signs and fails a window whose residuals
// fall into two long runs.
func TestRunsPass(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	fails := 0
	for range 1000 {
		res := make([]float64, 128)
		for i := range res {
			res[i] = rng.NormFloat64()
		}
		if !runsPass(res) {
			fails++
		}
	}
	if fails > 30 { // z < −2.5 by chance: ~0.6 %
		t.Fatalf("random residuals failed the runs test %d times in 1000", fails)
	}
	bent := make([]float64, 128)
	for i := range bent {
		bent[i] = rng.NormFloat64() + 3*math.Cos(float64(i)/128*2*math.Pi)
	}
	if runsPass(bent) {
		t.Fatal("a bent window passed the runs test")
	}
	if !runsPass(make([]float64, 64)) {
		t.Fatal("a noiseless window (every residual 0) failed the runs test")
	}
}

// A lone outlier inside the window (a corrupted or wildly late exchange)
// neither bends the trend nor moves the centre: the filter leaves the
// samples its first pass skipped out of the trend's fit. Negative control:
// the trend fitted with the outlier in is off by far more.
func TestTrendIgnoresLoneOutlier(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	var ss []rawSample
	for i := range 200 {
		ss = append(ss, rawAt(float64(i)*1e9, 0, 2e6, erlang4(rng, 100e3), erlang4(rng, 100e3)))
	}
	ss[190].xr = 40e6 // 40 ms off, far beyond its 1 ms half-width
	var tc trendCache
	var sc trendScratch
	f := filterTrended(ss, 199e9, 0, 0, 1e-6, &tc, &sc)
	if !tc.ok || math.Abs(f.center) > 30e3 || math.Abs(tc.tr.slope) > 0.2e-6 {
		t.Fatalf("centre %.1f µs, trend %.0f ppb (ok %v): want within 30 µs and 200 ppb of 0", f.center/1e3, tc.tr.slope*1e9, tc.ok)
	}
	bent, ok := sourceTrend(ss, &sc)
	if !ok || math.Abs(bent.slope) < 1e-6 {
		t.Fatalf("the negative control: a trend through the outlier is off by only %.0f ppb (window %d)", bent.slope*1e9, bent.n)
	}
	t.Logf("centre %.1f µs, trend %.0f ppb; through the outlier the trend is %.0f ppb", f.center/1e3, tc.tr.slope*1e9, bent.slope*1e9)
}
