// Package hlc is a hybrid logical clock (Kulkarni, Demirbas et al., "Logical
// Physical Clocks and Consistent Snapshots in Globally Distributed
// Databases", 2014), plus Lamport and vector clocks. It is a pure core: it
// reads time only through its Physical (TrueTime) and stores its bound only
// through a Persister (package hlc/hlcfile keeps it in a file);
// internal/archtest checks that it imports no os, net, syscall or unsafe and
// calls no time.Now or time.Sleep.
//
// A timestamp is (l, c): l is physical-looking time in ns, c a logical
// counter. The physical input pt is TrueTime's latest bound, so l ≥ pt ≥ true
// time on every node.
//
// # Invariants (the paper's, in our units)
//
//   - Monotonic: every Now/Update result is greater than every earlier one
//     from the same Clock, under any concurrency (one short mutex).
//   - Happened-before ⇒ order: e → f implies hlc(e) < hlc(f).
//   - Bounded drift from physical time: l − pt ≤ ε, where ε bounds the
//     differences between nodes' physical clocks, because Update rejects
//     remote timestamps more than max(MaxOffsetFloor, EpsFactor·ε_local)
//     ahead (counted in Rejected). The counter c has 32 bits; when it would
//     overflow, l advances by 1 ns instead.
//   - Restart monotonicity: with a Persister, no wall value above the
//     persisted bound is issued before that bound is durable (write-ahead,
//     once per PersistAhead, default 100 ms), and a restarted clock issues
//     only values above it. So timestamps never go backwards across
//     restarts or crashes, even when the host clock was stepped back.
//   - No lead after a restart: a restarted clock issues nothing until pt
//     has passed the persisted bound (Now and Update return the retryable
//     *RestartWaitError meanwhile, with the remaining time), so its first
//     timestamp is pt itself, not the bound. It waits on TrueTime's latest,
//     the HLC's own physical input and what peers' max-offset rule compares
//     against: once latest > bound, the restarted clock is exactly where a
//     clock that never stopped would be. Waiting for earliest would add 2ε
//     of unavailability and protect nothing more. The wait is at most
//     PersistAhead plus any step back of the clock; the gRPC service waits
//     up to its own deadline and then answers UNAVAILABLE with a retry hint.
//     TestRestartProperty checks, over random restart sequences (and 40
//     quick crash-restarts), that no peer with the same configuration
//     rejects a timestamp and none regresses; its negative control restores
//     the old jump-to-the-bound rule and sees peers reject.
//
// # Range and encoding
//
// l is an int64 count of nanoseconds: the range is 1970-01-01 to
// 2262-04-11T23:47:16.854775807Z (MaxWallNS); past it the clock returns
// ErrExhausted rather than wrap. Key packs (l, c) into 12 bytes whose
// bytewise order is the timestamp order (big-endian l, then c). String
// gives "2006-01-02T15:04:05.000000000Z+c". The earlier encoding, 51 bits
// of µs and 12 of counter in one uint64, ended on 2041-05-10; hlcfile
// migrates a bound persisted in its microseconds.
//
// # Hazards
//
// Now and Update fail while TrueTime is unsynchronized: an HLC that keeps
// ticking on an unknown clock would silently lose its bound to real time.
package hlc
