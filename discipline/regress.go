package discipline

import "math"

// point is one measurement of the raw offset xr = U − T (free-running
// timescale minus true time) at raw time u, true to within ±boundNS.
type point struct {
	u       float64 // ns on the free-running timescale, relative to the epoch
	xr      float64 // ns
	boundNS float64 // |measured − true| ≤ boundNS
	// lone: the point rests on one source alone, which may have stepped
	// unseen (with two or more, a step by one breaks their agreement).
	lone bool
}

// fit is a weighted least-squares line through points, with a hard bound on
// the slope error.
type fit struct {
	slope    float64 // dxr/du, dimensionless
	slopeUnc float64 // |slope − true slope| ≤ slopeUnc when the true xr is linear
	// slopeSD is the slope's standard error from the residuals (weighted
	// least squares: σ̂²/Sxx with σ̂² = Σ w·r²/(n − 2)): a statistic for
	// weighing samples, never a bound. 0 with fewer than three points.
	slopeSD float64
	ok      bool
}

// regress fits xr = a + slope·u with weights 1/bound². The least-squares
// slope is a linear combination Σ a_i·xr_i with Σ a_i = 0 and Σ a_i·u_i = 1,
// so a line shifted by errors e_i, |e_i| ≤ bound_i, moves the slope by at
// most Σ |a_i|·bound_i. That is a bound, not a standard error: it holds for
// any error distribution within the per-point bounds. Wander of the true
// frequency inside the window is not covered here; the drift bound covers it
// (the least-squares slope is a positively weighted mean of the local slopes).
func regress(pts []point) fit {
	if len(pts) < 2 {
		return fit{}
	}
	l, ok := fitLine(len(pts), func(i int) (u, x, w float64) {
		p := pts[i]
		return p.u, p.xr, 1 / (p.boundNS * p.boundNS)
	})
	if !ok {
		return fit{}
	}
	mu, mx, sxx := l.mu, l.mx, l.sxx
	var unc float64
	for _, p := range pts {
		w := 1 / (p.boundNS * p.boundNS)
		unc += math.Abs(w*(p.u-mu)/sxx) * p.boundNS
	}
	// The feasible slope range (slopeRange) is often tighter, but it is a
	// bound only while every point holds one line: a lone reference that
	// steps by less than its points' widths leaves a feasible window whose
	// range misses the true slope (a random world found it), while the
	// least-squares bound degrades gracefully. It decides trimming only.
	slope := l.slope
	var sd float64
	if n := len(pts); n > 2 {
		var rss float64
		for _, p := range pts {
			r := p.xr - mx - slope*(p.u-mu)
			rss += r * r / (p.boundNS * p.boundNS)
		}
		sd = math.Sqrt(rss / float64(n-2) / sxx)
	}
	for _, p := range pts {
		if p.lone {
			unc = math.Max(unc, stepRobustUnc(pts, slope))
			break
		}
	}
	return fit{slope: slope, slopeUnc: unc, slopeSD: sd, ok: true}
}

// stepRobustUnc bounds |slope − true slope| when the points' source may
// have stepped once inside the window (a lone reference that steps is
// outside the assumptions, but its time before or after the step is still
// promised). A step leaves each side holding a line of the true slope — a
// step moves the offset, not the rate — so the true slope lies in the
// feasible ranges of both sides. Bridged by a line through both, the
// step's size over the gap looks like rate, which the bound above cannot
// see: a point, or two close together, on one side of a long gap check
// nothing, and a line through them claims a slope error of a fraction of a
// ppm. The true slope is in the union over splits k of
//
//	range(points before k) ∩ range(points from k on)
//
// (a side of fewer than two points constrains nothing); the result is the
// distance from slope to that union's far edge, +Inf when a split leaves
// the slope unconstrained. Splits the data rule out (an empty
// intersection) are skipped. Points are in time order.
func stepRobustUnc(pts []point, slope float64) float64 {
	n := len(pts)
	if n < 2 {
		return math.Inf(1)
	}
	// pre[k], suf[k]: ranges of pts[:k] and pts[k:].
	pre := make([]slopeSpan, n+1)
	suf := make([]slopeSpan, n+1)
	if increasing(pts) {
		var a, b slopeHull
		slopeRanges(pts, pre, suf, &a, &b)
	} else {
		prefixSuffixPairs(pts, pre, suf)
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for k := 0; k <= n; k++ {
		l, h := math.Max(pre[k].lo, suf[k].lo), math.Min(pre[k].hi, suf[k].hi)
		if l > h {
			continue
		}
		lo, hi = math.Min(lo, l), math.Max(hi, h)
	}
	if lo > hi {
		return 0 // no line fits at all: refit trims the window
	}
	return math.Max(slope-lo, hi-slope)
}

// prefixSuffixPairs is slopeRanges over every pair, for points whose
// instants do not strictly increase (and as the tests' reference).
func prefixSuffixPairs(pts []point, pre, suf []slopeSpan) {
	n := len(pts)
	all := slopeSpan{math.Inf(-1), math.Inf(1)}
	pre[0], suf[n] = all, all
	for k := 1; k <= n; k++ {
		r := pre[k-1]
		b := pts[k-1]
		for i := 0; i < k-1; i++ {
			lo, hi := pairRange(pts[i], b)
			r.lo, r.hi = math.Max(r.lo, lo), math.Min(r.hi, hi)
		}
		pre[k] = r
	}
	for k := n - 1; k >= 0; k-- {
		r := suf[k+1]
		a := pts[k]
		for j := k + 1; j < n; j++ {
			lo, hi := pairRange(a, pts[j])
			r.lo, r.hi = math.Max(r.lo, lo), math.Min(r.hi, hi)
		}
		suf[k] = r
	}
}

// pairRange is the range of slopes of the lines through points a and b
// (in time order) within both bounds; unbounded for one instant.
func pairRange(a, b point) (lo, hi float64) {
	du := b.u - a.u
	if du <= 0 {
		return math.Inf(-1), math.Inf(1)
	}
	return ((b.xr - b.boundNS) - (a.xr + a.boundNS)) / du, ((b.xr + b.boundNS) - (a.xr - a.boundNS)) / du
}

// slopeRange is the range of slopes of the lines that pass within every
// point's bound: [lo, hi], ok false when no line does (lo > hi) or fewer
// than two distinct instants. For a fixed slope s, an intercept exists iff
// every pair of points agrees on it, so the feasible slopes are exactly the
// intersection of the pairwise ranges
//
//	((xr_j − b_j) − (xr_i + b_i)) / (u_j − u_i) ≤ s ≤ ((xr_j + b_j) − (xr_i − b_i)) / (u_j − u_i)
//
// When the true xr is linear and every point holds it, the true slope is in
// the range.
func slopeRange(pts []point) (lo, hi float64, ok bool) {
	if n := len(pts); n >= 2 && increasing(pts) {
		pre := make([]slopeSpan, n+1)
		var a, b slopeHull
		slopeRanges(pts, pre, nil, &a, &b)
		return pre[n].lo, pre[n].hi, pre[n].lo <= pre[n].hi
	}
	return slopeRangePairs(pts)
}

// slopeRangePairs is slopeRange over every pair: for points whose instants
// do not strictly increase (and as the tests' reference).
func slopeRangePairs(pts []point) (lo, hi float64, ok bool) {
	lo, hi = math.Inf(-1), math.Inf(1)
	pairs := 0
	for i := range pts {
		for j := i + 1; j < len(pts); j++ {
			a, b := pts[i], pts[j]
			du := b.u - a.u
			if du == 0 {
				continue
			}
			if du < 0 {
				a, b, du = b, a, -du
			}
			pairs++
			lo = math.Max(lo, ((b.xr-b.boundNS)-(a.xr+a.boundNS))/du)
			hi = math.Min(hi, ((b.xr+b.boundNS)-(a.xr-a.boundNS))/du)
		}
	}
	return lo, hi, pairs > 0 && lo <= hi
}

// feasible reports whether some line passes within every point's bound. A
// window where none does cannot hold a linear true offset: the oscillator's
// rate changed inside it (or a point is wrong), and older points should be
// dropped so the frequency estimate follows the new rate. Noise alone never
// makes a window infeasible, however far the least-squares line lands
// from a narrow point.
func feasible(pts []point) bool {
	if len(pts) < 2 {
		return true
	}
	_, _, ok := slopeRange(pts)
	return ok
}

// line is a weighted least-squares line x = mx + slope·(u − mu).
type line struct {
	slope, mu, mx float64
	sxx           float64 // Σ w·(u − mu)²
}

// fitLine fits a line by weighted least squares to the n points at(i)
// gives (u, x and a weight > 0); ok is false when the u do not spread.
func fitLine(n int, at func(i int) (u, x, w float64)) (line, bool) {
	var sw, su, sx float64
	for i := range n {
		u, x, w := at(i)
		sw += w
		su += w * u
		sx += w * x
	}
	mu, mx := su/sw, sx/sw
	var sxx, sxy float64
	for i := range n {
		u, x, w := at(i)
		du := u - mu
		sxx += w * du * du
		sxy += w * du * (x - mx)
	}
	if !(sxx > 0) {
		return line{}, false
	}
	return line{slope: sxy / sxx, mu: mu, mx: mx, sxx: sxx}, true
}
