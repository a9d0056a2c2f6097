// Package ntp is Meridian's NTPv4 socket shell and server.
//
// The protocol itself is package ntp/engine (pure: no clock, no socket).
// Source.Run drives an engine.Engine from a UDP socket with kernel or NIC
// timestamps (package hwts) and timers, and hands its samples to the daemon
// tagged with the step generation of the clock at send time. Server answers
// requests from its workers (one socket each, SO_REUSEPORT when several)
// with batched I/O (recvmmsg/sendmmsg),
// one shared rate-limit table, and Server.HandleRequest, the request handler
// the simulator answers its simulated clients with.
//
// Invariants:
//   - Receive stamps may be late, never early; transmit stamps may be early,
//     never late. That is what keeps θ ± δ/2 a true bound (see rxAt, txAt).
//   - The server reports real state: LI=3 and stratum 16 while the clock is
//     unsynchronized; otherwise the estimate's stratum, reference, root delay,
//     and a root dispersion covering ε. Timestamps are TrueTime midpoints.
//   - Replies are never longer than requests (no amplification); malformed,
//     short, control (6) and private (7) packets, and packets from port 0,
//     are dropped and counted. One failed entry of a batched send never
//     drops the rest of the batch.
//
// Interleaved mode (xleave.go, txstamp.go): replies carry the kernel's
// transmit stamp of the previous reply to clients that ask, from a
// bounded per-address table; a transmit stamp is still never later than
// the real send. Only replies the table records ask the kernel for their
// transmit stamp (a per-datagram control message), so basic clients cost
// no error-queue traffic.
//
// Each worker owns a blocking socket outside Go's network poller (detach)
// and waits in recvmmsg itself: one system call per wake-up, and no epoll
// callback in the kernel for every datagram in and every reply sent.
//
// Per batch, not per request (batch.go): one recvmmsg, one
// CLOCK_REALTIME/served-clock pair read after it (the receive stamps'
// conversion), one served-clock read just before the send (every basic
// reply's transmit timestamp, when the estimate is still the one the
// replies were built from), one sendmmsg; the
// error queue is read only while stamps may wait on it. Per request: the
// kernel receive stamp, the checks, the rate limit and client log. The
// bare responder interop/testdata/ntpfloor is the socket API's limit
// that `meridian-bench ntp-server` measures this against.
//
// Not yet: NTS.
package ntp
