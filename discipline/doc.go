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
//     δ·(tolerance + maxfreq) + |t3 − t2|·rateBound: a hard bound on
//     |measured − true| when the source is honest (see package truetime for
//     the derivation; the last term is the rate error over a PTP server's
//     span between a Sync and the Delay_Req sent behind it). θ and δ are
//     computed on the free-running timescale U.
//   - Candidates. A sample of age a bounds the offset now by M + g·a with
//     g = FreqUnc + DriftBound; each source's newest sample is its candidate
//     for selection (a liar that stopped lying must not speak through old
//     samples).
//   - Selection. With n candidate sources, at most ⌊(n−1)/2⌋ may lie: the
//     hull of points covered by n − ⌊(n−1)/2⌋ intervals contains true time.
//     Sources whose interval misses it are falsetickers; fewer survivors than
//     MinSources, or no majority region, means no synchronisation. The hull
//     is further intersected with the previous hull carried forward, which
//     keeps what the best past samples proved; a lone source keeps the
//     narrower of its new and the carried interval instead.
//   - Clock filter (filter.go). Per source, the intersection of its window
//     of samples aged with the fitted rate (statistically, not by the hard
//     bound) gives the offset estimate used to steer the clock and to centre
//     the estimate inside the hull: queueing delays one direction at a
//     time, so each edge comes from the sample least delayed that way.
//     Selected sources are combined weighted by their filtered widths. The
//     window ends at the newest sample that no longer overlaps the newer
//     ones (a step), and where the source's own rate (a weighted fit
//     through its samples, sourceTrend) stops fitting a line (a runs
//     test); that rate, not the selection's, ages the window, so it can
//     reach back 256 samples. From the spread of the window's half-widths
//     the filter also advises each source's poll (pollTarget).
//   - Frequency. A weighted least-squares line through the selections'
//     hulls (U, xr) gives the oscillator's rate s; its error bound
//     Σ|a_i|·M_i becomes FreqUncPPB. Until it is
//     tighter than the oscillator tolerance (500 ppm), the tolerance is
//     used. A window no line passes through is trimmed from the oldest end.
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
