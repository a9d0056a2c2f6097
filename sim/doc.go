// Package sim is a deterministic discrete-event simulator that drives the
// real discipline and truetime code with known true time.
//
// A scenario (sim/scenarios/*.yaml, stating only what differs from
// Defaults) describes a host oscillator (offset, frequency error, wander,
// temperature steps, drift file) and sources behind links (delay,
// asymmetry, exponential jitter, loss, outages, clock errors that make a
// source lie). The runner polls sources, applies the discipline's
// corrections to a simclock.Clock exactly as meridiand applies them to its
// virtual clock, and reads TrueTime at jittered instants, checking every read
// against true time.
//
// Per scenario it reports containment violations, |clock error| p50/p99/max,
// ε p50/p99, ε/|error|, time to first synchronized and whether the
// scenario's expectations held. Same scenarios and seed → byte-identical
// report (no map iteration, no wall-clock reads, seeded PCG streams).
package sim
