// Command meridian-bench measures Meridian against the tools people use
// today, in one run, and reports ratios (absolute numbers are noisy on
// shared machines).
//
//	meridian-bench ntp-server [--duration 10s] [--rounds 3] [--clients 2] [--inflight 64] [--meridiand bin/meridiand] [--bare PATH] [--json] [--smoke]
//	meridian-bench grpc [--duration 5s] [--conns 4] [--concurrency 32] [--pin] [--meridiand bin/meridiand]
//	meridian-bench ptp-server [--clients 1000,5000,20000] [--seconds 10] [--with-ptp4l] [--with-floor] [--smoke] [--json] [--out DIR]
//
// ntp-server serves NTP from three contestants on loopback in one run —
// meridiand, chronyd (-x, `local stratum 1`, never touching the clock) and
// ntpfloor (interop/testdata/ntpfloor: a bare recvmmsg/sendmmsg responder,
// the socket API's limit) — each pinned to CPU 1 with the load generator on
// CPU 0, loads each in turn for --rounds rounds, and reports replies/s,
// replies per server-CPU-second (the fair figure on 2 cores) and the
// ratios of meridiand to the other two per round and their medians.
// Replies are checked against the generator's clock (bench/ntpcheck.go);
// bad ones are counted. --smoke fails (exit 1) when a median ratio is below
// its floor (smoke.go). Every load is bounded.
//
// ptp-server loads a PTP grandmaster with unicast clients at 1 Hz
// (package bench/ptpload): meridiand's, ptp4l's and the kernel floor's,
// each alone in a network namespace pinned to CPU 1, and reports served
// fractions, client-seconds per server CPU-second, CPU and memory, and
// ratios to the floor (`meridian-bench ptp-server --help`).
//
// grpc loads meridiand's TimeService on its unix socket with closed-loop
// unary Now calls (each reply checked) and, as the baseline on the same
// server, grpc.health.v1 Check, and reports calls/s, p50/p99/p99.9 and
// calls per server-CPU-second; then one caller's gRPC Now latency against
// a shared-memory read of the same daemon's segment.
//
// accuracy runs the accuracy matrix of package bench/accuracy (its doc says
// how each contestant's true error is measured) and writes DIR/accuracy.json
// and the offsets, errors, eps-vs-error and coverage sections of
// DIR/results.json; stability computes ADEV/MDEV/TDEV/MTIE of those error
// series into the stability section.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// `meridian-bench … | head` must still stop its peers and remove its
	// files: a closed stdout becomes a write error, not a fatal SIGPIPE.
	signal.Ignore(syscall.SIGPIPE)
	if err := newRoot(os.Stdout, os.Stderr).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "meridian-bench:", err)
		if e, ok := err.(exitError); ok {
			os.Exit(e.code)
		}
		os.Exit(2) // usage: unknown subcommand, bad flag or argument
	}
}
