// Package engine is the NTPv4 client protocol as a pure state machine, in
// the shape of etcd's raft: Step(now, input) with a timer tick, a received
// datagram and its receive stamp, or a transmit-stamp report; Ready() with
// the request to send, validated samples, rejected replies and the next
// deadline; Advance() once done. meridiand drives it from a socket
// (package ntp), the simulator from simulated links with known true time.
//
// Client validates replies: random origin timestamps against off-path
// spoofing, the reachability register, KoD RATE backs the poll off and
// DENY/RSTR stop the source, LI=3/stratum-16 sources give no sample, and
// replies are parsed with facebook/time's ntp/protocol. With
// ClientConfig.Interleaved it asks for interleaved replies (chrony's
// xleave; see client.go) and pairs the server's real transmit stamp with
// the previous exchange. wire.go holds the
// 48-byte header codec and the timestamp conversions (NTP eras, short
// format rounded up where it carries a bound) the server shares.
//
// Must never: read a clock, sleep, start goroutines or open sockets
// (internal/archtest checks it, through its imports too).
package engine
