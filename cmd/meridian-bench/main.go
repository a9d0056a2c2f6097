// Command meridian-bench measures Meridian against the tools people use
// today, in one run, and reports ratios (absolute numbers are noisy on
// shared machines).
//
//	meridian-bench ntp-server [--duration 10s] [--rounds 3] [--clients 2] [--inflight 64] [--meridiand bin/meridiand] [--bare PATH] [--json] [--smoke]
//	meridian-bench grpc [--duration 5s] [--conns 4] [--concurrency 32] [--pin] [--meridiand bin/meridiand]
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
// grpc loads meridiand's TimeService on its unix socket with closed-loop
// unary Now calls (each reply checked) and, as the baseline on the same
// server, grpc.health.v1 Check, and reports calls/s, p50/p99/p99.9 and
// calls per server-CPU-second; then one caller's gRPC Now latency against
// a shared-memory read of the same daemon's segment.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/meridiantime/meridian/internal/version"
)

func main() {
	// `meridian-bench … | head` must still stop its peers and remove its
	// files: a closed stdout becomes a write error, not a fatal SIGPIPE.
	signal.Ignore(syscall.SIGPIPE)
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "--version", "-version", "version":
		fmt.Println(version.String("meridian-bench"))
	case "ntp-server":
		ntpServerMain(os.Args[2:])
	case "grpc":
		grpcMain(os.Args[2:])
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage:
  meridian-bench --version
  meridian-bench ntp-server [--duration 10s] [--rounds 3] [--clients 2] [--inflight 64] [--meridiand PATH] [--bare PATH] [--json] [--smoke]
  meridian-bench grpc [--duration 5s] [--conns 4] [--concurrency 32] [--pin] [--meridiand PATH]`)
	os.Exit(2)
}
