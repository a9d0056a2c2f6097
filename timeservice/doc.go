// Package timeservice serves meridian.time.v1.TimeService over gRPC: TrueTime
// intervals (Now, After, Before, WaitUntilAfter), status and sources, a Watch
// stream, and the hybrid logical clock (HLCNow, HLCUpdate), plus
// grpc.health.v1 and server reflection.
//
// Listeners: unix sockets (mode 0660, the default transport; a stale socket
// file is replaced, a live one refused) and TCP, with TLS 1.3 when a
// certificate is configured and mTLS when a CA is.
//
// Invariants:
//   - Every interval returned was computed by truetime.Bound from one
//     estimate and one clock reading: the daemon never answers with a number
//     while unsynchronized (FAILED_PRECONDITION instead).
//   - WaitUntilAfter returns OK only after After(ts) held on the server's
//     clock; it sleeps on timers, honours the caller's deadline and
//     cancellation, and Shutdown ends it with UNAVAILABLE.
//   - Watch streams are capped (RESOURCE_EXHAUSTED beyond MaxWatchers);
//     each one holds one goroutine, released when the client goes away or
//     the server stops.
//   - Health: "" is SERVING while the server runs; "meridian.time.v1.TimeService"
//     is NOT_SERVING while the clock is unsynchronized, so a load balancer
//     can steer away from a node that cannot promise an interval.
//   - Server.Serve returns only after every goroutine it started stopped.
package timeservice
