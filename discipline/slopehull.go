package discipline

import "math"

// The feasible slope ranges of the regression window (slopeRange, and the
// prefix and suffix ranges stepRobustUnc splits the window into) are
// extremes over all pairs of points. Over pairs that is O(n²) per refit,
// which limits how long the window can be; a long window is what makes the
// rate's hard bound tight (the least-squares bound falls as 1/span). With
// the points in time order each extreme is a tangent to a convex hull, and
// the ranges of every prefix (or suffix) come in O(n log n) together.

// xy is a point of a slope query.
type xy struct{ x, y float64 }

// slopeHull holds points added in strictly increasing x and answers, for a
// point q right of all of them, the largest slope from one of them to q:
// max over stored p of (q.y − p.y)/(q.x − p.x). That maximum is attained on
// the lower convex hull of the stored points (the line from q at the
// largest slope has every stored point on or above it), and along that
// hull the slopes to q rise and then fall, so a binary search finds it.
type slopeHull struct{ h []xy }

func (s *slopeHull) reset() { s.h = s.h[:0] }

// add appends p (p.x greater than every stored x).
func (s *slopeHull) add(p xy) {
	for n := len(s.h); n >= 2; n = len(s.h) {
		o, a := s.h[n-2], s.h[n-1]
		if (a.x-o.x)*(p.y-o.y)-(a.y-o.y)*(p.x-o.x) > 0 {
			break // a left turn: a stays on the lower hull
		}
		s.h = s.h[:n-1]
	}
	s.h = append(s.h, p)
}

// maxSlope is the largest slope from a stored point to q (−Inf when none
// is stored).
func (s *slopeHull) maxSlope(q xy) float64 {
	h := s.h
	if len(h) == 0 {
		return math.Inf(-1)
	}
	at := func(k int) float64 { return (q.y - h[k].y) / (q.x - h[k].x) }
	lo, hi := 0, len(h)-1
	for lo < hi {
		m := (lo + hi) / 2
		if at(m) < at(m+1) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	// Rounding can flatten the top of the rise; the neighbours settle it.
	best := at(lo)
	if lo > 0 {
		best = math.Max(best, at(lo-1))
	}
	if lo+1 < len(h) {
		best = math.Max(best, at(lo+1))
	}
	return best
}

// increasing reports whether the points' instants strictly increase (the
// regression appends them so; the hull method needs it).
func increasing(pts []point) bool {
	for i := 1; i < len(pts); i++ {
		if !(pts[i].u > pts[i-1].u) {
			return false
		}
	}
	return true
}

// slopeRanges fills pre[k] with the feasible slope range of pts[:k] and
// suf[k] with that of pts[k:] (k = 0..n; ±Inf where a part has fewer than
// two points), the points in strictly increasing u. For i < j the pair
// bounds the slope below by (L_j − U_i)/(u_j − u_i) and above by
// (U_j − L_i)/(u_j − u_i), with U = xr + bound and L = xr − bound.
func slopeRanges(pts []point, pre, suf []slopeSpan, a, b *slopeHull) {
	n := len(pts)
	all := slopeSpan{math.Inf(-1), math.Inf(1)}
	if pre != nil {
		// Prefixes: the new point j closes pairs with every earlier i.
		a.reset() // (u, U): the lower bounds' left ends
		b.reset() // (u, −L): the upper bounds' left ends, negated
		pre[0] = all
		for j := 0; j < n; j++ {
			r := pre[j]
			p := pts[j]
			r.lo = math.Max(r.lo, a.maxSlope(xy{p.u, p.xr - p.boundNS}))
			r.hi = math.Min(r.hi, -b.maxSlope(xy{p.u, -(p.xr + p.boundNS)}))
			a.add(xy{p.u, p.xr + p.boundNS})
			b.add(xy{p.u, -(p.xr - p.boundNS)})
			pre[j+1] = r
		}
	}
	if suf != nil {
		// Suffixes, walking back: x = −u increases; the new point i closes
		// pairs with every later j, and u_j − u_i = x_i − x_j, so the lower
		// bound (L_j − U_i)/(u_j − u_i) is a slope from (x_j, −L_j) to
		// (x_i, −U_i), and the upper one, negated, from (x_j, U_j) to
		// (x_i, L_i).
		a.reset()
		b.reset()
		suf[n] = all
		for i := n - 1; i >= 0; i-- {
			r := suf[i+1]
			p := pts[i]
			r.lo = math.Max(r.lo, a.maxSlope(xy{-p.u, -(p.xr + p.boundNS)}))
			r.hi = math.Min(r.hi, -b.maxSlope(xy{-p.u, p.xr - p.boundNS}))
			a.add(xy{-p.u, -(p.xr - p.boundNS)})
			b.add(xy{-p.u, p.xr + p.boundNS})
			suf[i] = r
		}
	}
}

// slopeSpan is a range of slopes.
type slopeSpan struct{ lo, hi float64 }
