// Package discipline is Meridian's clock-discipline core: clock filter,
// source selection, combining, servo, step/slew policy and holdover. It
// turns samples (t1..t4 from any protocol) and local clock readings into a
// Correction for a clock.Disciplined and a truetime.Estimate.
//
// # Must never
//
// Read a clock, sleep, start goroutines or touch sockets. Time is an input
// (the nowNS argument and the sample timestamps); the simulator and the
// daemon are two drivers of the same code.
//
// # How it works
//
//   - Free-running timescale. The discipline records every correction it
//     makes (steps, frequency changes) as segments, and stores each sample as
//     (U, xr = U − true time) where U is what the oscillator alone would read.
//     Samples therefore survive steps and frequency changes unchanged.
//   - Per-sample bound M = δ/2 + rootDelay/2 + rootDispersion + precision +
//     δ·(tolerance + maxfreq): a hard bound on |measured − true| when the
//     source is honest (see package truetime for the derivation).
//   - Clock filter. A sample of age a bounds the offset now by M + g·a with
//     g = FreqUnc + DriftBound; each source offers its narrowest aged sample.
//   - Selection. With n candidate sources, at most ⌊(n−1)/2⌋ may lie: the
//     hull of points covered by n − ⌊(n−1)/2⌋ intervals contains true time.
//     Sources whose interval misses it are falsetickers; fewer survivors than
//     MinSources, or no majority region, means no synchronisation. The hull
//     is further intersected with the previous estimate carried forward.
//   - Frequency. A weighted least-squares line through the selected samples'
//     (U, xr) gives the oscillator's rate s; its hard error bound Σ|a_i|·M_i
//     becomes FreqUncPPB. Until it is tighter than the oscillator tolerance
//     (500 ppm), the tolerance is used.
//   - Servo. Linear regression (default): set c = −(s + x/τ)/(1 + x/τ) so the
//     offset decays with time constant τ. PI: a second-order loop on the
//     offset. Either way the Estimate predicts x̂(t) exactly, because the
//     correction is constant between updates. Offsets beyond the step
//     threshold are stepped during the first StepLimit updates.
//   - Holdover. Without a usable majority the previous estimate is carried
//     forward (status holdover) until ε passes MaxErrorNS (unsynchronized).
//
// # Invariants
//
//   - Every Estimate with a status other than Unsynchronized contains true
//     time at every later reading, provided a majority of sources is honest
//     within its advertised root values and the oscillator's frequency moves
//     less than DriftBoundPPB from the regression's estimate.
//   - Samples whose exchange spans a step must be discarded by the caller.
package discipline
