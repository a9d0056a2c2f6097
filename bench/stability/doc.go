// Package stability computes the frequency- and time-stability statistics
// of a time-error (phase) series: overlapping Allan deviation (ADEV),
// modified Allan deviation (MDEV), time deviation (TDEV) and maximum time
// interval error (MTIE), each for a set of averaging factors.
//
// It is a pure core: values in, values out; no clock, no I/O.
//
// # Input
//
// x[i] is the time error (phase) in seconds of sample i, taken every tau0
// seconds: x[i] is the error at t0 + i·tau0. N = len(x). An averaging factor
// m gives τ = m·tau0. Frequency data y (fractional frequency, one value per
// interval) becomes phase with PhaseFromFrequency: x[0] = 0,
// x[i+1] = x[i] + y[i]·tau0 (N = len(y)+1 phase points).
//
// # Formulas (NIST SP 1065, W.J. Riley, "Handbook of Frequency Stability
// Analysis", 2008, written here from the handbook's definitions)
//
// Overlapping Allan variance, from phase:
//
//	σy²(τ) = 1 / (2 (N−2m) τ²) · Σ_{i=0}^{N−2m−1} (x[i+2m] − 2x[i+m] + x[i])²
//
// Modified Allan variance, from phase:
//
//	Mod σy²(τ) = 1 / (2 m² τ² (N−3m+1)) · Σ_{j=0}^{N−3m} ( Σ_{i=j}^{j+m−1} (x[i+2m] − 2x[i+m] + x[i]) )²
//
// Time variance:  σx²(τ) = (τ²/3) · Mod σy²(τ).
//
// MTIE for a window of n intervals (τ = n·tau0, n+1 samples):
//
//	MTIE(τ) = max_{k=0}^{N−n−1} ( max_{k≤i≤k+n} x[i] − min_{k≤i≤k+n} x[i] )
//
// computed exactly (a monotone-deque sliding maximum and minimum, O(N) per
// window). Each Point carries N, the number of terms the estimate averaged
// (ADEV: second differences; MDEV/TDEV: outer terms; MTIE: windows).
//
// # Gaps
//
// A missing sample is NaN (Grid places timestamped samples on the tau0 grid
// and leaves the empty slots NaN). Policy: a term is used only when every
// sample it reads is present — an ADEV term needs x[i], x[i+m], x[i+2m]; an
// MDEV/TDEV term needs all of x[j..j+3m−1]. Terms touching a gap are skipped,
// never interpolated, and N counts only the terms used, so a point estimated
// from few terms says so. MTIE takes each window's peak-to-peak over the
// samples it has — the largest |x[i] − x[j]| over present samples at most n
// slots apart — and N counts the windows holding two or more: requiring
// complete windows instead would let a gap make MTIE shrink as the window
// grows. A τ with no usable term is left out of the result. Every estimate is
// thus an average of real terms (ADEV, MDEV, TDEV) or a maximum over real
// samples (MTIE); nothing bridges a gap, so a gap can only hide an excursion,
// and a long outage hides the largest τ.
//
// # Limits
//
// Values must be finite or NaN (a gap) with |x| ≤ 1e100 s, so that no sum of
// squares can overflow; anything else is an error naming the index. tau0 must
// be within [1e-30, 1e30] s.
package stability
