// Package ntp is Meridian's NTPv4 client source and server.
//
// The cores are pure: Client builds requests and validates replies (random
// origin timestamps against off-path spoofing, reachability register, KoD
// RATE backs off and DENY/RSTR stop the source, LI=3/stratum 16 sources give
// no sample); Server.handle answers one request into a caller's buffer
// without allocating. The shells (Source.Run, Server.Serve) own sockets and
// clocks.
//
// Invariants:
//   - Receive stamps may be late, never early; transmit stamps may be early,
//     never late. That is what keeps θ ± δ/2 a true bound (see rxAt).
//   - The server reports real state: LI=3 and stratum 16 while the clock is
//     unsynchronized; otherwise the estimate's stratum, reference, root delay,
//     and a root dispersion covering ε. Timestamps are TrueTime midpoints.
//   - Replies are never longer than requests (no amplification); malformed,
//     short, control (6) and private (7) packets are dropped and counted.
//
// Wire format: the client parses replies with facebook/time's ntp/protocol;
// the server decodes and encodes the 48-byte header itself so its hot path
// does not allocate.
//
// Not yet (see the issue notes): hardware timestamps (package hwts),
// recvmmsg/sendmmsg batching, interleaved mode, NTS.
package ntp
