package discipline

import "math"

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
// is a bias, not only noise. Samples are therefore aged by the rate's
// statistical error (the regression's standard error, filterRateUnc), not
// by a fraction of its hard bound, which is tens of times wider and left
// samples older than a few polls with no say.

// filterWanderPPB is the statistical (not bounding) rate of divergence
// assumed between a sample and now on top of the fitted rate: it lets
// recent samples count more than old ones without the hard drift bound
// that would make any sample older than a few polls useless.
const filterWanderPPB = 300

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
	grow := unc + filterWanderPPB*1e-9
	lo, hi := math.Inf(-1), math.Inf(1)
	used, misses := 0, 0
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
