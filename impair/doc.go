// Package impair is a userspace impairment wire between two network
// namespaces: our stand-in for the netem qdisc, which this machine lacks.
//
// A Wire copies Ethernet frames between two file descriptors (in practice
// two TAP devices, one moved into each namespace) and delays, jitters, drops
// and reorders them per direction, as a Config says. Every random decision
// comes from an RNG seeded by Config.Seed, so a run's decisions are
// reproducible (arrival times of course depend on the machine).
//
// Owns:
//   - the scheduler core (link): pure, takes the arrival instant as an input
//     and returns each frame's due instant; unit-tested on a fake clock;
//   - the driver (Wire): one reader per direction stamps each frame when read
//     (CLOCK_MONOTONIC) and queues it in a heap by due instant; one timer per
//     direction (a timerfd, where Go's own timers are up to 1 ms late)
//     wakes the delivery 200 µs before a frame is due, and it spins to the
//     instant: a timerfd wake-up alone came 60–90 µs late, unevenly between
//     the directions of an exchange; spun, a write starts a median 2–5 µs
//     after its due instant (DirStats.Lateness*, and the write's own time
//     into the kernel apart, DirStats.Write*);
//   - the namespace pair (Pair): two namespaces joined either by the wire
//     (NewPair) or by a plain veth pair (NewVethPair), unique names per
//     process and pair, deleted by Close — the helper interop tests and the
//     bench CLI share;
//   - calibration (Pair.Probe, Pair.Calibrate): UDP echoes between the
//     namespaces, stamped in this process on one CLOCK_MONOTONIC, measure
//     each direction's one-way delay; with zero impairment that is the
//     wire's own overhead, which Config.SubtractNS can take off the
//     configured delays;
//   - stamped calibration (Pair.StampFloors, Pair.CalibrateStamped): the
//     same legs as kernel stamps see them (software transmit stamp at the
//     sender, receive stamp at the receiver, one CLOCK_REALTIME), in a time
//     client's rhythm (a request after a pause, the reply at once), and each
//     direction's overhead over its base delay for Path.SubtractNS. The
//     wire's wake-up to read a request from an idle machine is slower than
//     the one for the reply, so the two overheads differ;
//   - the stamped probe (Pair.StartStampProbe): the same exchanges, one
//     every interval for as long as a measurement runs beside it, so the
//     legs are the wire's while the clients use it (its overhead moves
//     with the machine's load).
//
// Units: delays are time.Duration; instants are CLOCK_MONOTONIC
// nanoseconds. Delays are never negative: jitter adds to the base delay, so
// the base delay is each direction's minimum (plus the overhead).
//
// Must never: touch the root namespace's addresses or routes, send anything
// outside the two namespaces it created, or keep running after Close.
package impair
