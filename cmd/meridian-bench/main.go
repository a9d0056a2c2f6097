// Command meridian-bench measures Meridian against the tools people use
// today, in one run, and reports ratios (absolute numbers are noisy on
// shared machines).
//
//	meridian-bench ntp-server [--duration 10s] [--clients 2] [--inflight 64] [--batched] [--meridiand bin/meridiand]
//	meridian-bench grpc [--duration 5s] [--conns 4] [--concurrency 32] [--pin] [--meridiand bin/meridiand]
//	meridian-bench ptp-server [--clients 1000,5000,20000] [--seconds 10] [--with-ptp4l] [--with-floor] [--smoke] [--json] [--out DIR]
//
// ntp-server serves NTP from meridiand and from chronyd (-x, `local stratum
// 1`, never touching the clock) on loopback, each pinned to CPU 1 with the
// load generator on CPU 0, and reports replies/s and replies per
// server-CPU-second (the fair figure on 2 cores). Every load is bounded.
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
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/meridiantime/meridian/bench"
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

func ntpServerMain(args []string) {
	fs := flag.NewFlagSet("ntp-server", flag.ExitOnError)
	dur := fs.Duration("duration", 10*time.Second, "load per server (≤ 2m)")
	clients := fs.Int("clients", 2, "client sockets")
	inflight := fs.Int("inflight", 64, "requests in flight per client (≤ 64 batched)")
	md := fs.String("meridiand", "bin/meridiand", "meridiand binary")
	batched := fs.Bool("batched", true, "batched generator (sendmmsg/recvmmsg), so the generator is not the bottleneck")
	_ = fs.Parse(args)
	if *dur > 2*time.Minute {
		fmt.Fprintln(os.Stderr, "meridian-bench: --duration at most 2m")
		os.Exit(2)
	}
	load = bench.RunNTPLoad
	if *batched {
		load = bench.RunNTPLoadBatched
	}
	if err := run(*md, *dur, *clients, *inflight); err != nil {
		fmt.Fprintln(os.Stderr, "meridian-bench:", err)
		os.Exit(1)
	}
}

var load func(context.Context, bench.NTPLoad) (bench.NTPLoadResult, error)

func freePort() int {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 12123
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

type measured struct {
	name   string
	res    bench.NTPLoadResult
	cpu    time.Duration
	perCPU float64
}

// diesWithUs makes the kernel kill a peer when meridian-bench dies, even by
// a signal that skips the deferred cleanup (SIGPIPE from `| head`, SIGKILL).
func diesWithUs(cmd *exec.Cmd) *exec.Cmd {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

func measure(name string, cmd *exec.Cmd, addr string, dur time.Duration, clients, inflight int) (measured, error) {
	diesWithUs(cmd)
	if err := cmd.Start(); err != nil {
		return measured{}, fmt.Errorf("%s: %w", name, err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	_ = exec.Command("taskset", "-a", "-p", "-c", "1", fmt.Sprint(cmd.Process.Pid)).Run()
	// Wait until it answers.
	ctx := context.Background()
	ok := false
	for i := 0; i < 50 && !ok; i++ {
		time.Sleep(100 * time.Millisecond)
		r, err := bench.RunNTPLoad(ctx, bench.NTPLoad{Addr: addr, Clients: 1, InFlight: 1, Duration: 200 * time.Millisecond, MaxRequests: 1})
		ok = err == nil && r.Received == 1
	}
	if !ok {
		return measured{}, fmt.Errorf("%s never answered on %s", name, addr)
	}
	cpu0, err := bench.ProcessCPU(cmd.Process.Pid)
	if err != nil {
		return measured{}, err
	}
	res, err := load(ctx, bench.NTPLoad{Addr: addr, Clients: clients, InFlight: inflight, Duration: dur})
	if err != nil {
		return measured{}, err
	}
	cpu1, _ := bench.ProcessCPU(cmd.Process.Pid)
	m := measured{name: name, res: res, cpu: cpu1 - cpu0}
	if m.cpu > 0 {
		m.perCPU = float64(res.Received) / m.cpu.Seconds()
	}
	return m, nil
}

func run(meridiand string, dur time.Duration, clients, inflight int) error {
	// Pin the generator (this process) to CPU 0.
	_ = exec.Command("taskset", "-a", "-p", "-c", "0", fmt.Sprint(os.Getpid())).Run()
	dir, err := os.MkdirTemp("", "meridian-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	mport := freePort()
	cfg := filepath.Join(dir, "m.yaml")
	_ = os.WriteFile(cfg, []byte(fmt.Sprintf("local_stratum: 1\nntp_server: {listen: [\"127.0.0.1:%d\"]}\nmetrics: {listen: \"\"}\ngrpc: {listen: []}\nshm: {path: %s}\nstate_dir: %s\nlog_level: warn\n",
		mport, filepath.Join(dir, "tt.shm"), filepath.Join(dir, "state"))), 0o644)
	m, err := measure("meridiand", exec.Command(meridiand, "--config", cfg), fmt.Sprintf("127.0.0.1:%d", mport), dur, clients, inflight)
	if err != nil {
		return err
	}

	cport := freePort()
	cdir := filepath.Join(dir, "chrony")
	_ = os.MkdirAll(cdir, 0o700)
	ccfg := filepath.Join(cdir, "chrony.conf")
	_ = os.WriteFile(ccfg, []byte(fmt.Sprintf("local stratum 1\nallow 127.0.0.1\nport %d\nbindaddress 127.0.0.1\ncmdport 0\nbindcmdaddress %s\npidfile %s\ndriftfile %s\n",
		cport, filepath.Join(cdir, "sock"), filepath.Join(cdir, "pid"), filepath.Join(cdir, "drift"))), 0o644)
	chronyd, err := exec.LookPath("chronyd")
	if err != nil {
		return fmt.Errorf("chronyd not installed: %w", err)
	}
	c, err := measure("chronyd", exec.Command("setpriv", "--bounding-set", "-sys_time", "--", chronyd, "-x", "-d", "-u", "root", "-f", ccfg),
		fmt.Sprintf("127.0.0.1:%d", cport), dur, clients, inflight)
	if err != nil {
		return err
	}
	fmt.Printf("%-10s %12s %12s %10s %14s %10s %10s\n", "server", "received", "replies/s", "cpu", "replies/cpu-s", "p50", "p99")
	for _, x := range []measured{m, c} {
		fmt.Printf("%-10s %12d %12.0f %10v %14.0f %10v %10v\n", x.name, x.res.Received, x.res.RepliesPerSecond, x.cpu.Round(10*time.Millisecond), x.perCPU, x.res.LatencyP50, x.res.LatP99)
	}
	if c.perCPU > 0 && c.res.RepliesPerSecond > 0 {
		fmt.Printf("ratio meridiand/chronyd: %.2f× replies per server-CPU-second, %.2f× replies/s\n", m.perCPU/c.perCPU, m.res.RepliesPerSecond/c.res.RepliesPerSecond)
	}
	return nil
}
