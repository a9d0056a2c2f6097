// Package truetime turns what the discipline knows into a TrueTime interval
// [earliest, latest] that contains true time on every read, and publishes it
// to other processes through shared memory.
//
// # The bound
//
// All offsets are "local clock minus true time". A two-way exchange with a
// source gives t1 (local send), t2, t3 (source receive and send) and t4
// (local receive):
//
//	θ = ((t2 − t1) + (t3 − t4)) / 2      offset of the source from us
//	δ = (t4 − t1) − (t3 − t2)            round-trip path delay
//
// Whatever the split of δ between the two directions, the source's clock at
// our midpoint lies within θ ± δ/2 — the path-delay term is what bounds
// asymmetry and is what makes the bound provable rather than statistical.
// The source's own error is bounded by what it advertises (root delay/2 +
// root dispersion, RFC 5905). So one sample bounds our offset x by
//
//	|x − (−θ)| ≤ M = δ/2 + rootDelay/2 + rootDispersion + precision + δ·(tol + maxfreq)
//
// where the last term covers our own rate error during the exchange. The
// discipline keeps samples on the oscillator's free-running timescale, ages
// each by the rate bound (below), selects sources by intersection (the hull
// of points covered by n − ⌊(n−1)/2⌋ intervals contains true time when a
// majority is honest) and hands an Estimate to this package:
//
//	Eps0 = half-width of that hull + precision           (at local time T0)
//	ε(t) = Eps0 + (DriftBoundPPB + FreqUncPPB)·|t − T0|
//	x̂(t) = OffsetNS + SkewPPB·(t − T0)                 (the residual still being slewed)
//	[earliest, latest] = [t − x̂(t) − ε(t),  t − x̂(t) + ε(t)]
//
// The same promise is often written [t − ε', t + ε'] with ε' = ε + |x̂(t)|
// (|residual offset| is one of its Eps0 terms); centring on the corrected
// reading gives the identical guarantee with a narrower interval.
// DriftBoundPPB is the configured wander bound (15 ppm by default, RFC
// 5905's PHI). FreqUncPPB is the servo's residual frequency error: the
// oscillator tolerance (500 ppm) until two samples exist, then the hard
// bound Σ|a_i|·M_i of the weighted regression slope (see package discipline),
// so the first seconds after a fresh start or a ±100 ppm crystal do not
// violate containment. A leap second announced by the sources widens the
// interval by 1 s on both sides within a second of a UTC midnight.
//
// # What the promise assumes
//
// earliest ≤ true time ≤ latest holds on every read when all of these hold:
//
//  1. Majority of honest sources. A source is honest while its clock is
//     within rootDelay/2 + rootDispersion of true time (what it advertises)
//     and the network delivers its packets unaltered. Of the m sources whose
//     newest sample the selection uses, at most ⌊(m−1)/2⌋ speak from a lie
//     (their newest sample was taken while they lied). Memory matters: a
//     liar's last sample stays its newest through loss or an outage after
//     it stopped lying. With m = 1 or 2 no lie can be tolerated.
//  2. Oscillator tolerance. The uncorrected oscillator's frequency error is
//     within OscillatorTolerancePPB (500 ppm), and a drift file's frequency
//     is used for steering only, never for the bound.
//  3. Drift bound. Between the frequency regression's window and the read,
//     the oscillator's frequency moves by less than DriftBoundPPB (15 ppm,
//     RFC 5905's PHI) from the regression's estimate: temperature steps,
//     ageing and wander together stay within it.
//  4. Path asymmetry within the round trip: each one-way delay is ≥ 0, so
//     the δ/2 term covers any split.
//  5. The raw counter runs whenever the host runs (suspend, VM pauses and
//     migration are detected, see below).
//
// Outside them nothing can be proven, and the daemon still behaves:
//
//   - A selection that misses the previous estimate carried forward is a
//     fault (a lone or majority reference stepped, or the oscillator left
//     the drift bound), not a sample to fit: the estimate covers both (as
//     chrony widens its root dispersion in the same event), and the
//     frequency regression starts afresh. A regression window whose points
//     stay inconsistent after trimming is discarded, and the rate falls
//     back to the oscillator tolerance.
//   - A lone source's new interval is never partially intersected with the
//     previous estimate: when a lone reference steps, every read is either
//     synchronized and holds the reference's old or its new time, or
//     unsynchronized (when covering both is wider than max_error).
//   - A lone source that drifts slowly away, or a majority that lies
//     together, cannot be caught: the interval then follows them.
//
// TrueTime never goes backwards: a later read's latest is ≥ every earlier
// read's earliest. Within the assumptions this follows from containment;
// outside them the discipline enforces it: it remembers the largest
// earliest any estimate could have handed out (including readers that copy
// an estimate up to a second before reading the clock) and raises a new
// estimate's latest to it. When that would exceed max_error the clock is
// unsynchronized until true time has passed what was promised.
//
// meridian-sim checks all of this: its scenario files (sim/scenarios) and
// its random worlds (meridian-sim fuzz) draw only inside these assumptions,
// check every read against true time, a lone stepping reference's old or
// new time, and every earlier read; a realization that leaves assumption 1
// mid-run (loss keeping a liar's sample newest) is checked for monotonicity
// only from then on.
//
// # Statuses
//
// Unsynchronized: never synchronised, or ε(t) > MaxErrorNS — reads return
// ErrUnsynchronized, never a small number. Synchronized: the newest sample
// behind the estimate is younger than HoldoverAfterNS. Holdover: older, the
// interval still valid and widening. A reader of a dead daemon's segment sees
// holdover and then unsynchronized as ε grows.
//
// # Shared memory
//
// ShmWriter publishes (clock.Linear model, Estimate) to a 4096-byte file,
// layout version 1, little-endian 64-bit words under a seqlock; the byte
// layout is tabulated at the top of shm.go. A reader maps it read-only,
// copies the words while the sequence is even and unchanged, reads
// CLOCK_MONOTONIC_RAW through the vDSO, applies the model and calls Bound —
// no system call, no lock, no allocation (measured at 1.4× a bare vDSO
// clock read). Version mismatches are refused with ErrShmVersion; a checksum
// word catches torn or corrupt copies (Snapshot verifies it).
//
// # Invariants
//
//   - Bound is pure: no clock reads, no allocation.
//   - earliest ≤ latest whenever Status ≠ Unsynchronized.
//   - Nothing in this package imports discipline, sockets or gRPC.
package truetime
