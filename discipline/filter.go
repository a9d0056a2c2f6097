package discipline

import (
	"math"
	"slices"
	"sort"
)

// The clock filter: per source, the best estimate of the offset now from
// every sample in its window, for steering the clock and for centring the
// estimate. It never widens or narrows the bound (the selection and the
// carried-forward estimate do that); it only decides where inside the
// proven interval the clock is steered.
//
// Each sample says the offset lies in [c − h, c + h]: c its centre, h its
// half-width (δ/2 and the source's root terms). Queueing adds to one
// direction's delay at a time: a sample whose reply waited has its lower
// edge still tight, one whose request waited its upper edge. So the
// intersection of the window's intervals, each aged by what the rate is
// statistically likely to have moved, has both edges set by the samples
// least delayed in each direction, and its midpoint is a far better
// estimate than any one sample's centre or a mean of centres; chrony's
// minimum-delay filter gets the same from samples least delayed in both
// directions at once, which are rarer.
//
// How long the window is decides how close each edge comes to its
// direction's floor: on a path whose requests queue more than its replies
// (one machine idle, the other busy), the centre is off by half of what
// the least-delayed request of the window still waited, so a short window
// is a bias, not only noise. Where the least-delayed samples are rare (a
// wake-up or a scheduler delay puts a hump above the floor, as on every
// real host), each edge is one lucky sample, and the centre jumps by tens
// of µs whenever a new one arrives or the old one ages out; the longer the
// window, the more lucky samples it holds and the less it jumps.
//
// A long window needs a precise rate: a sample of age a is moved by the
// rate's error times a. The selection's rate (the regression through the
// hulls, whose centres scatter by ~100 µs) is off by ~1 ppm on a 1 ms
// path, which limits the window to a few polls. So the filter fits the
// source's own rate (sourceTrend): a least-squares line through its
// samples' centres weighted toward the least delayed, over the longest
// window, newest first, whose residuals pass a runs test (a rate that
// changed inside the window — temperature, wander — leaves long runs of
// one sign, as chrony's regression finds). Samples are aged by three
// standard errors of that slope plus filterWanderPPB, and the window ends
// where the trend's does. Where the trend cannot be fitted (fewer than
// minTrendSamples samples), the selection's rate is used, aged by its
// standard error (filterRateUnc).

// filterWanderPPB is the statistical (not bounding) rate of divergence
// assumed between a sample and now on top of the fitted rate: it lets
// recent samples count more than old ones without the hard drift bound
// that would make any sample older than a few polls useless. A quartz
// oscillator wanders by less over the minutes a window spans; a larger
// change (a temperature step) fails the trend's runs test and cuts the
// window instead. (300 ppb aged a 4-minute-old sample by 70 µs, more than
// the edges it held were worth: on the lossy wire trace, scenario 42, the
// median error was 20 µs against 16.)
const filterWanderPPB = 100

// filtered is a source's filter output at the update.
type filtered struct {
	center float64 // L − T at now, ns
	half   float64 // half-width of the window's intersection (its weight)
	used   int     // samples in the consistent window
}

// filterSource intersects the source's samples, newest first, aged with the
// fitted rate sRate and the statistical rate uncertainty unc. A sample that
// does not overlap the newer ones is an outlier and skipped; a second in a
// row means the source stepped (or its rate moved more than the aging
// covers), and the window ends there: it is the newest consistent run of
// samples, less its lone outliers.
func filterSource(samples []rawSample, uNow, cNow, sRate, unc float64) filtered {
	return filterWindow(samples, uNow, cNow, sRate, unc, nil)
}

// filterWindow is filterSource that also leaves the samples it used in
// *keep (when keep is not nil), oldest first: the window less its lone
// outliers.
func filterWindow(samples []rawSample, uNow, cNow, sRate, unc float64, keep *[]rawSample) filtered {
	grow := unc + filterWanderPPB*1e-9
	lo, hi := math.Inf(-1), math.Inf(1)
	used, misses := 0, 0
	if keep != nil {
		*keep = (*keep)[:0]
	}
	for i := len(samples) - 1; i >= 0 && misses < 2; i-- {
		rs := samples[i]
		age := math.Abs(uNow - rs.u)
		c := rs.xr + sRate*(uNow-rs.u) + cNow
		h := rs.boundNS + grow*age
		nlo, nhi := math.Max(lo, c-h), math.Min(hi, c+h)
		if nlo > nhi {
			misses++
			continue
		}
		lo, hi = nlo, nhi
		used++
		misses = 0
		if keep != nil {
			*keep = append(*keep, rs)
		}
	}
	if keep != nil {
		slices.Reverse(*keep)
	}
	return filtered{center: (lo + hi) / 2, half: (hi - lo) / 2, used: used}
}

// pollTarget is the poll interval (ns of local time) at which a source's
// samples keep the bound near what its best sample proves. The bound a
// source holds is its best recent half-width h plus the growth G·age since
// that sample; samples within a quarter of the best come at a fraction p of
// the polls (the filter's measured noise: near 1 on a clean path, small
// under heavy queueing). Keeping the expected growth between such samples,
// G·poll/p, within a quarter of h gives poll = p·h/(4G): a clean, slowly
// growing path is polled rarely, a noisy or fast-growing one often, as
// chrony lengthens its poll when the residuals are noise and shortens it
// when they wander. 0 with fewer than minPollSamples samples.
func pollTarget(samples []rawSample, growth float64) int64 {
	const minPollSamples = 4
	if len(samples) < minPollSamples || growth <= 0 {
		return 0
	}
	best := math.Inf(1)
	for _, s := range samples {
		best = math.Min(best, s.boundNS)
	}
	near := 0
	for _, s := range samples {
		if s.boundNS <= 1.25*best {
			near++
		}
	}
	p := float64(near) / float64(len(samples))
	return int64(math.Min(p*best/(4*growth), math.MaxInt64/2))
}

// minTrendSamples is the fewest samples a source's trend is fitted to.
const minTrendSamples = 8

// trendRunsZ is the runs test's threshold: a window whose residuals have
// fewer sign runs than chance allows at z < −trendRunsZ is too long.
const trendRunsZ = 2.5

// trend is a source's own rate, fitted by sourceTrend.
type trend struct {
	slope float64 // dxr/du
	sd    float64 // its standard error
	n     int     // the newest n samples of the window it was fitted to
}

// trendScratch holds sourceTrend's buffers between updates.
type trendScratch struct {
	w, res, srt []float64
	win         []rawSample
}

// trendCache is a source's last trend and the window it was fitted to (U
// of its oldest and newest samples, and their count): the trend depends
// on the window alone, so it is fitted again only when a sample came or
// the window changed.
type trendCache struct {
	key [2]float64
	n   int
	tr  trend
	ok  bool
}

// filterTrended is the clock filter: a first pass with the selection's
// rate sRate (aged by unc) finds the newest consistent window and its lone
// outliers; the source's own trend is fitted to the window less those
// outliers; a second pass over the trend's part of it, aged with that
// trend, gives the estimate. Without a trend (too few samples) the first
// pass is the estimate.
func filterTrended(samples []rawSample, uNow, cNow, sRate, unc float64, tc *trendCache, sc *trendScratch) filtered {
	f := filterWindow(samples, uNow, cNow, sRate, unc, &sc.win)
	win := sc.win // the window less its outliers, oldest first
	if len(win) < minTrendSamples {
		return f
	}
	if key := [2]float64{win[0].u, win[len(win)-1].u}; key != tc.key || len(win) != tc.n {
		tc.key, tc.n = key, len(win)
		tc.tr, tc.ok = sourceTrend(win, sc)
	}
	if !tc.ok {
		return f
	}
	return filterSource(win[len(win)-tc.tr.n:], uNow, cNow, tc.tr.slope, 3*tc.tr.sd)
}

// sourceTrend fits the rate of a source's samples (oldest first): a
// weighted least-squares line through their centres xr over U, each
// weighted 1/(1 + excess/scale)² by how far its half-width exceeds the
// least in the window, scale the median excess (≥ 1 µs), so queueing,
// which is noise here, speaks little. It tries the whole window, then
// halves it from the oldest end, and returns the longest fit whose
// residuals pass the runs test. ok is false below minTrendSamples.
func sourceTrend(samples []rawSample, sc *trendScratch) (trend, bool) {
	n := len(samples)
	if n < minTrendSamples {
		return trend{}, false
	}
	for ; ; n /= 2 {
		t, ok := fitTrend(samples[len(samples)-n:], sc)
		if !ok {
			return trend{}, false
		}
		if n/2 < minTrendSamples || runsPass(sc.res[:n]) {
			return t, true
		}
	}
}

// fitTrend is one weighted fit of sourceTrend; it leaves the residuals in
// sc.res.
func fitTrend(samples []rawSample, sc *trendScratch) (trend, bool) {
	n := len(samples)
	best := math.Inf(1)
	for _, s := range samples {
		best = math.Min(best, s.boundNS)
	}
	sc.srt = sc.srt[:0]
	for _, s := range samples {
		sc.srt = append(sc.srt, s.boundNS-best)
	}
	sort.Float64s(sc.srt)
	scale := math.Max(sc.srt[n/2], 1000)
	sc.w = sc.w[:0]
	for _, s := range samples {
		q := 1 + (s.boundNS-best)/scale
		sc.w = append(sc.w, 1/(q*q))
	}
	l, ok := fitLine(n, func(i int) (u, x, w float64) { return samples[i].u, samples[i].xr, sc.w[i] })
	if !ok {
		return trend{}, false
	}
	var rss float64
	sc.res = sc.res[:0]
	for i, s := range samples {
		r := s.xr - l.mx - l.slope*(s.u-l.mu)
		sc.res = append(sc.res, r)
		rss += sc.w[i] * r * r
	}
	return trend{slope: l.slope, sd: math.Sqrt(rss / float64(n-2) / l.sxx), n: n}, true
}

// runsPass is a Wald–Wolfowitz runs test on the signs of residuals in time
// order: false when the runs are fewer than chance allows (z < −trendRunsZ),
// which a line that no longer fits (the rate changed) leaves.
func runsPass(res []float64) bool {
	var pos, neg, runs int
	prev := 0
	for _, r := range res {
		sg := 0
		switch {
		case r > 0:
			sg = 1
			pos++
		case r < 0:
			sg = -1
			neg++
		default:
			continue // on the line: no sign (a noiseless source)
		}
		if sg != prev {
			runs++
		}
		prev = sg
	}
	if pos == 0 || neg == 0 {
		// A weighted fit's residuals sum to 0: one sign alone means all
		// (or all but one) lie on the line.
		return true
	}
	n := float64(pos + neg)
	pq := 2 * float64(pos) * float64(neg)
	mu := pq/n + 1
	v := pq * (pq - n) / (n * n * (n - 1))
	if !(v > 0) {
		return true
	}
	return (float64(runs)-mu)/math.Sqrt(v) >= -trendRunsZ
}
