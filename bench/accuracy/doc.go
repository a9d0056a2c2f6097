// Package accuracy is the accuracy harness shared by the interop test
// TestAccuracyVsChrony and `meridian-bench accuracy`: clients of one time
// server, each in a network namespace joined to the server's by the
// impairment wire (package impair), sampled for their true error over time.
//
// # Paths
//
// Paths lists the impairments (clean, jitter, lossy, asymmetric,
// route-change): per direction a base delay (the minimum), jitter, loss and
// route changes. The wire's own overhead is calibrated per pair and
// direction with kernel stamps at both ends, in a client's rhythm
// (impair.CalibrateStamped), and taken off each direction's delays, so the
// configured delay is each direction's minimum as the clients' kernel
// stamps see it. What the wire adds above the minimum is not symmetric: a
// request leaves an idle machine and may wait for the wire's wake-up (its
// median was 13–200 µs above the floor in runs here), a reply finds the
// machine awake (~15 µs); scenario path-one-sided in sim/scenarios models
// this. A path whose directions differ by Δ forces an offset of Δ/2 on any
// two-way client (the path's "physics", PhysicsNS, which changes with a
// route change); every |error| figure is measured from it.
//
// The calibration before the run is 40 exchanges in 4 s, and the wire's
// overhead moves with the machine's load: its request-direction floor came
// out 15–50 µs from one run to the next. So a stamped probe
// (impair.StampProbe) runs through the whole run next to the clients, one
// exchange every probeEvery: a two-way client with a perfect clock. The
// median offset of its least-delayed tenth of exchanges,
// ProbeResult.BiasNS, is what the calibration left of the wire's
// asymmetry, and the *Measured* |error| figures are measured from
// PhysicsNS + BiasNS: the physics of the wire as it was while the clients
// used it.
//
// # Contestants and servers
//
// Contestants are meridian-ntp and meridian-ptp (meridiand clients with a
// virtual clock started on the host clock), chronyd-ntp (`chronyd -x`, never
// adjusting the clock) and ptp4l-ptp (linuxptp's ptp4l, slave only,
// `free_running 1`, software stamps, unicast UDPv4). They run in groups:
// one pair of namespaces per group, the server in namespace B, the group's
// clients in A. The NTP clients share one group; each PTP client has its
// own, because ptp4l and our PTP client both bind UDP ports 319 and 320.
// Every group's server is configured alike, and every group's wire gets the
// path's configuration with the same seed.
//
// The server is meridiand (local_stratum 1, serving NTP and PTP) with its
// virtual clock started InjectedOffsetNS away from the host clock, or
// chronyd (`local stratum 1`, serving the host clock itself, so injected
// offset 0 and NTP only). The truth is the host clock (CLOCK_REALTIME) plus
// the injected offset; a witness reads the server's own shm segment
// against it and reports how far the server strayed from that truth
// (ServerDriftMaxNS).
//
// # How each contestant's error is measured
//
// Error = the contestant's estimate of true time − the truth, in ns.
//   - meridian-*: its shm segment read in this process every 100 ms between
//     two CLOCK_REALTIME reads (retried when more than 20 µs apart): error =
//     interval midpoint − (host + injected); containment = the interval
//     holds [before, after] + injected. Negative control: the same check
//     with ε shrunk 100× must find violations.
//   - chronyd-ntp: `chronyc -c tracking` field 5 (NTP time − system time)
//     every second, minus the injected offset. chronyd -x never adjusts the
//     clock, so that figure is its own filtered estimate.
//   - ptp4l-ptp: its `master offset` lines (slave − master, one per Sync,
//     unfiltered: with free_running 1 ptp4l steers nothing, so these are
//     its raw measurements, not the error of a servo-steered clock); error
//     = −master offset − injected. ptp4l offers no in-process reading, so
//     this is how it is measured.
//
// Time to first sync counts from the contestant's start to its first
// synchronized sample (a read that succeeds; tracking at the server's
// stratum + 1; a master offset line with a path delay).
//
// Every peer runs under `setpriv --bounding-set -sys_time` (chronyd with -x,
// ptp4l with free_running 1), dies with this process (Pdeathsig) and is
// killed by PID on Close; the namespaces are deleted on Close.
package accuracy
