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
//	|x − (−θ)| ≤ M = δ/2 + rootDelay/2 + rootDispersion + precision
//	                  + δ·(tol + maxfreq) + |t3 − t2|·r
//
// where the last two terms cover our own rate error during the exchange:
// the local span t4 − t1 is δ plus the server's span t3 − t2, and a clock
// whose rate is off by s measures δ short or long by s·(t4 − t1). For NTP
// the server's span is microseconds; PTP's Sync comes first and the
// Delay_Req is sent behind it (t3 ≤ t2, t4 ≤ t1), a span as long as the
// client takes to send it, or longer when the stamps come late. That span
// is covered at r = the rate's bound now (|estimate| + its error bound, at
// most the oscillator tolerance, plus the drift bound). θ and δ are taken on the free-running
// timescale, where a correction applied between t1 and t4 bends nothing. The
// discipline keeps samples on the oscillator's free-running timescale, ages
// each by the rate bound (below), selects sources by intersection (the hull
// of points covered by n − ⌊(n−1)/2⌋ intervals contains true time when a
// majority is honest) and hands an Estimate to this package:
//
//	hull  = selection ∩ previous hull carried forward    (at local time T0)
//	x̂(T0) = OffsetNS: the clock filter's estimate, moved at most a quarter
//	        of the hull's half-width from the hull's centre
//	Eps0  = max distance from x̂(T0) to the hull's edges + precision
//	ε(t)  = Eps0 + (DriftBoundPPB + FreqUncPPB)·|t − T0|
//	x̂(t)  = OffsetNS + SkewPPB·(t − T0)                (the residual still being slewed)
//	[earliest, latest] = [t − x̂(t) − ε(t),  t − x̂(t) + ε(t)]
//
// The hull carried forward is what keeps ε near what the best recent
// sample proves (δ_min/2 plus its age times the rate bound) rather than
// what the newest, perhaps queued, sample proves. The clock filter
// (package discipline) intersects each source's window of samples, aged
// with the fitted rate: queueing widens one edge of a sample at a time, so
// both edges of the intersection come from the samples least delayed in
// each direction, and its midpoint is where the clock is steered and,
// within the quarter-width limit, where the interval is centred. The
// filter decides only where inside the proven hull the centre lies; it
// never narrows the bound.
//
// The same promise is often written [t − ε', t + ε'] with ε' = ε + |x̂(t)|
// (|residual offset| is one of its Eps0 terms); centring on the corrected
// reading gives the identical guarantee with a narrower interval.
// DriftBoundPPB is the configured wander bound (15 ppm by default, RFC
// 5905's PHI). FreqUncPPB is the servo's residual frequency error: the
// oscillator tolerance (500 ppm) until two samples exist, then the hard
// bound Σ|a_i|·M_i of the weighted regression slope (see package discipline)
// — widened, while a point rests on one source alone, to cover one step of
// that source inside the window, which a line bridging it would read as
// rate (below) — so the first seconds after a fresh start or a ±100 ppm crystal do not
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
//     back to the oscillator tolerance. A lone reference's step too small
//     to make the window inconsistent still bends a line through it:
//     points on each side hold a line of the true slope (a step moves the
//     offset, not the rate), so while a point rests on one source the slope
//     bound also covers the ranges of every split of the window in two — a
//     side of one point checks nothing, and two points on either side of
//     a long silence give back the oscillator tolerance, not a rate.
//   - A lone source's new interval is never partially intersected with the
//     previous hull: the narrower of the two whole intervals is kept (no
//     narrower interval is sure to hold either the reference's old or its
//     new time). When a lone reference steps, every read is either
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
// interval still valid and widening. Disrupted: the host's clocks were
// disrupted (below) — reads fail with ErrDisrupted, which also matches
// ErrUnsynchronized, and no interval is given. A reader of a dead daemon's
// segment reads unsynchronized once its heartbeat is older than void_after
// (below), not holdover for hours.
//
// # Shared memory
//
// ShmWriter publishes (clock.Linear model, Estimate, Stamp) to a 4096-byte
// file, layout version 2, little-endian 64-bit words under a seqlock; the
// byte layout is tabulated at the top of shm.go. A reader maps it read-only,
// copies the words while the sequence is even and unchanged, reads
// CLOCK_BOOTTIME and CLOCK_MONOTONIC_RAW through the vDSO (two reads in one
// call of a small assembly stub, no cgo: package hostclock), judges the
// stamp (Judge), applies the model and calls Bound — no system call and
// no lock. A reader keeps the last snapshot it decoded (checksum verified)
// and reuses it while the sequence and checksum words are unchanged, so a
// read allocates nothing between publishes (see Reader.Now). Measured here, best of interleaved rounds in one run
// (BenchmarkShmNowVsTimeNow): 64 ns a read against 46 ns for time.Now
// (1.38×) and 25 ns for one CLOCK_MONOTONIC_RAW read. time.Now reads two
// clocks in one vDSO round; so must a TrueTime read — CLOCK_MONOTONIC_RAW
// for the model and CLOCK_BOOTTIME to notice a suspend — and the pair
// alone costs what time.Now costs; CLOCK_BOOTTIME through a system call
// costs ~300 ns (BenchmarkBootSyscall). Version mismatches are refused with
// ErrShmVersion (version 1 segments too: they carry no heartbeat); a
// checksum word catches torn or corrupt copies (Now, Snapshot and Inspect
// verify it).
//
// # Ownership of the segment
//
// The writer takes an exclusive flock on the segment file before it changes
// a byte and holds it for its life (the kernel drops it when the process
// dies, however it dies): a second writer gets ErrShmInUse, naming the
// holder's pid, and leaves the live segment byte-identical. The writer opens
// the file without following a symlink and refuses one that is not a
// regular file it owns, that others can write, or that has other hard
// links. Readers (OpenShm, and so package client and meridianctl) refuse,
// with shm.ErrUntrusted, a segment reached through a symlink, or in a
// directory that a user other than root, themselves or a user root handed
// the directory to could have written (internal/fsown.CheckTrustedDir):
// another local user's /tmp/meridian-$UID cannot serve them a false time.
//
// # Liveness
//
// Every publish stamps the segment with CLOCK_MONOTONIC_RAW and
// CLOCK_BOOTTIME (the heartbeat) and void_after = boottime + VoidAfter
// (ShmOptions; 5 s by default, five of meridiand's 1 s ticks). ClockBound's
// segment carries the same pair (as-of, void-after) in
// CLOCK_MONOTONIC_COARSE, which stops during a suspend; ours is in
// CLOCK_BOOTTIME, so a suspend counts against the window. A reader
// whose CLOCK_BOOTTIME has reached void_after reads unsynchronized: the
// writer died, hung, or the host slept past the window. void_after is in
// boottime, so a suspend counts against it. Close (a clean stop) publishes
// an unsynchronized snapshot with void_after 0: readers see unsynchronized
// at once. A stamp ahead of the reader's clocks (a segment from another
// boot) is void too.
//
// # Disruption: suspend, VM pause, migration
//
// CLOCK_MONOTONIC_RAW stops while the host is suspended (and while a guest
// whose counter is stopped is paused); CLOCK_BOOTTIME does not. After a
// suspend of length G the virtual clock, built on the raw clock, is behind
// true time by G: widening ε by tolerance × G would not contain true time —
// the reading itself is off by G. Meridian does not shift the reading by the
// boottime gap either: boottime is CLOCK_MONOTONIC plus the sleep time the
// kernel measured, which another daemon may slew and whose sleep part may
// come from a coarse RTC. It declares the clock Disrupted instead, until a
// sample taken after the gap shows where the clock is:
//
//   - Reader side (Judge): gap = (boot − stamp boot) − (raw − stamp raw).
//     A gap above GapSlack (1 ms) + GapTolPPB (500 ppm, the most the kernel
//     slews CLOCK_MONOTONIC against the raw clock) × elapsed boottime makes
//     the read Disrupted. Readers copy the snapshot first and then read
//     boot, then raw; the writer stamps a raw read taken before its boot
//     read. A preemption between any two reads can only shrink a gap or
//     age the reading, never invent a gap or a stamp from the future.
//   - Writer side (Guard): the same comparison between consecutive
//     publishes, with each boot read bracketed by two raw reads
//     (hostclock.RawBootRawNS) so that the gap is bounded from below. On a gap the writer publishes Disrupted (Publish returns
//     the estimate it published) until an estimate carries a sample taken
//     after the gap was noticed (LastSampleNS later than the local reading
//     at detection).
//   - In process: Clock.SetCheck installs ShmWriter.Check, the reader's
//     verdict against the writer's last stamp, so meridiand's own reads
//     (gRPC, NTP server, HLC) fail right after a resume exactly as shm
//     readers do, before the next publish.
//   - VMClock: where /dev/vmclock0 exists (Linux vmclock-abi.h), its
//     disruption_marker and vm_generation_counter are stamped too; a change
//     (live migration, snapshot restore) is a disruption on both sides,
//     even without a boottime gap. A side without the device skips the
//     comparison.
//
// Gaps below the tolerance (at most 1 ms + 500 ppm of the void window, 3.5 ms
// by default) are not detected; real suspends last far longer. A slew of
// CLOCK_MONOTONIC faster than 500 ppm (chrony's fast slew, ADJ_TICK) can be
// mistaken for a gap: reads then fail until the next publish, never return
// a wrong interval. A gap longer than the void window reads unsynchronized
// rather than disrupted until the writer's next publish.
//
// # Invariants
//
//   - Bound is pure: no clock reads, no allocation.
//   - earliest ≤ latest whenever Status ≠ Unsynchronized.
//   - Nothing in this package imports discipline, sockets or gRPC.
package truetime
