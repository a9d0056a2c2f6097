// Package clock defines the clocks Meridian reads and disciplines.
//
// Interfaces: Reader (NowNS), Disciplined (AdjFreqPPB, FreqPPB, MaxFreqPPB,
// Step, SetSync), Timers. Implementations live in sub-packages:
//
//   - virtual: the default. A software clock over CLOCK_MONOTONIC_RAW
//     (read through the vDSO by MonoRawNS), corrected in frequency and
//     phase. Needs no privilege and never touches CLOCK_REALTIME.
//   - simclock: a simulated oscillator for the simulator.
//   - system: CLOCK_REALTIME (or any clock id) through clock_adjtime, opt-in.
//   - phc: a NIC's PTP hardware clock through its dynamic clock id.
//   - fake: test doubles (manual clock and timers, a reader that panics).
//
// Sign conventions: AdjFreqPPB(+x) makes a clock run x ppb faster than its
// oscillator; Step(+s) moves the reading forward by s ns.
//
// Invariants: the software clocks share the Linear model
// L = BaseNS + (R − BaseRawNS)(1 + FreqPPB·1e-9); a frequency change rebases
// at the raw instant of the change, so readings are continuous across it.
// Tests never call system or phc against a real clock except read-only
// (modes = 0) queries.
package clock
