package discipline

import "math"

// point is one measurement of the raw offset xr = U − T (free-running
// timescale minus true time) at raw time u, true to within ±boundNS.
type point struct {
	u       float64 // ns on the free-running timescale, relative to the epoch
	xr      float64 // ns
	boundNS float64 // |measured − true| ≤ boundNS
}

// fit is a weighted least-squares line through points, with a hard bound on
// the slope error.
type fit struct {
	slope    float64 // dxr/du, dimensionless
	slopeUnc float64 // |slope − true slope| ≤ slopeUnc when the true xr is linear
	ok       bool
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
	var sw, su, sx float64
	for _, p := range pts {
		w := 1 / (p.boundNS * p.boundNS)
		sw += w
		su += w * p.u
		sx += w * p.xr
	}
	mu, mx := su/sw, sx/sw
	var sxx, sxy float64
	for _, p := range pts {
		w := 1 / (p.boundNS * p.boundNS)
		du := p.u - mu
		sxx += w * du * du
		sxy += w * du * (p.xr - mx)
	}
	if sxx <= 0 || math.IsNaN(sxx) {
		return fit{}
	}
	var unc float64
	for _, p := range pts {
		w := 1 / (p.boundNS * p.boundNS)
		unc += math.Abs(w*(p.u-mu)/sxx) * p.boundNS
	}
	return fit{slope: sxy / sxx, slopeUnc: unc, ok: true}
}

// consistent reports whether every point lies within its bound of the fitted
// line. A point far off the line means the true offset was not linear over
// the window (a frequency step), and older points should be dropped so the
// frequency estimate follows the new rate.
func consistent(pts []point, f fit) bool {
	if !f.ok {
		return true
	}
	var sw, su, sx float64
	for _, p := range pts {
		w := 1 / (p.boundNS * p.boundNS)
		sw += w
		su += w * p.u
		sx += w * p.xr
	}
	mu, mx := su/sw, sx/sw
	for _, p := range pts {
		res := p.xr - (mx + f.slope*(p.u-mu))
		if math.Abs(res) > p.boundNS {
			return false
		}
	}
	return true
}
