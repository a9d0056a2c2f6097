// Package hlc is a hybrid logical clock (Kulkarni, Demirbas et al., "Logical
// Physical Clocks and Consistent Snapshots in Globally Distributed
// Databases", 2014), plus Lamport and vector clocks.
//
// A timestamp is (l, c): l is physical-looking time in µs, c a logical
// counter. The physical input pt is TrueTime's latest bound, so l ≥ pt ≥ true
// time on every node.
//
// # Invariants (the paper's, in our units)
//
//   - Monotonic: every Now/Update result is greater than every earlier one
//     from the same Clock, under any concurrency (one CAS on a 64-bit word).
//   - Happened-before ⇒ order: e → f implies hlc(e) < hlc(f).
//   - Bounded drift from physical time: l − pt ≤ ε, where ε bounds the
//     differences between nodes' physical clocks, because Update rejects
//     remote timestamps more than max(MaxOffsetFloor, EpsFactor·ε_local)
//     ahead (counted in Rejected). The counter c is bounded (12 bits); when
//     it would overflow, l advances by 1 µs instead — a bounded extra lead
//     that only an event rate above 4096 per µs can cause.
//   - Restart monotonicity: with a Persister, no wall value above the
//     persisted bound is issued before that bound is durable (write-ahead,
//     once per PersistAhead), and a restarted clock starts above it. So
//     timestamps never go backwards across restarts or crashes, even when
//     the host clock was stepped back meanwhile.
//
// # Encoding
//
// Encode packs (l, c) into 64 bits — 51 bits of µs (until year 2112) and 12
// of counter — whose unsigned order equals timestamp order. String gives
// "2006-01-02T15:04:05.000000Z+c".
//
// # Hazards
//
// Now and Update fail while TrueTime is unsynchronized: an HLC that keeps
// ticking on an unknown clock would silently lose its bound to real time.
package hlc
