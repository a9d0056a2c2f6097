package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/meridiantime/meridian/bench"
	"github.com/meridiantime/meridian/client"
)

func grpcMain(args []string) {
	fs := flag.NewFlagSet("grpc", flag.ExitOnError)
	dur := fs.Duration("duration", 5*time.Second, "load per method (≤ 2m)")
	conns := fs.Int("conns", 4, "client connections")
	conc := fs.Int("concurrency", 32, "calls in flight per connection")
	pin := fs.Bool("pin", false, "pin meridiand to CPU 1 and the generator to CPU 0 (default: both share the 2 cores)")
	md := fs.String("meridiand", "bin/meridiand", "meridiand binary")
	_ = fs.Parse(args)
	if *dur <= 0 || *dur > 2*time.Minute {
		fmt.Fprintln(os.Stderr, "meridian-bench: --duration in (0, 2m]")
		os.Exit(2)
	}
	if err := runGRPC(*md, *dur, *conns, *conc, *pin); err != nil {
		fmt.Fprintln(os.Stderr, "meridian-bench:", err)
		os.Exit(1)
	}
}

func runGRPC(meridiand string, dur time.Duration, conns, conc int, pin bool) error {
	dir, err := os.MkdirTemp("", "meridian-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sock, shm := filepath.Join(dir, "grpc.sock"), filepath.Join(dir, "tt.shm")
	cfg := filepath.Join(dir, "m.yaml")
	_ = os.WriteFile(cfg, []byte(fmt.Sprintf("local_stratum: 1\nmetrics: {listen: \"\"}\ngrpc: {listen: [\"unix://%s\"]}\nshm: {path: %s}\nstate_dir: %s\nlog_level: warn\n",
		sock, shm, filepath.Join(dir, "state"))), 0o644)
	cmd := diesWithUs(exec.Command(meridiand, "--config", cfg))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if pin {
		_ = exec.Command("taskset", "-a", "-p", "-c", "0", fmt.Sprint(os.Getpid())).Run()
		_ = exec.Command("taskset", "-a", "-p", "-c", "1", fmt.Sprint(cmd.Process.Pid)).Run()
	}
	addr := "unix://" + sock
	g, err := client.DialGRPC(addr, client.TLS{})
	if err != nil {
		return err
	}
	defer g.Close()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := g.Now(cctx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("meridiand never served Now on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	type row struct {
		name string
		r    bench.GRPCLoadResult
		cpu  time.Duration
	}
	var rows []row
	for _, m := range []struct{ name, method string }{{"health.Check", "health"}, {"TimeService.Now", "now"}} {
		cpu0, err := bench.ProcessCPU(cmd.Process.Pid)
		if err != nil {
			return err
		}
		r, err := bench.RunGRPCLoad(ctx, bench.GRPCLoad{Address: addr, Conns: conns, Concurrency: conc, Duration: dur, Method: m.method})
		if err != nil {
			return err
		}
		cpu1, _ := bench.ProcessCPU(cmd.Process.Pid)
		if r.Errors > 0 || r.BadReplies > 0 {
			return fmt.Errorf("%s: %d errors (first: %v), %d bad replies", m.name, r.Errors, r.FirstError, r.BadReplies)
		}
		rows = append(rows, row{m.name, r, cpu1 - cpu0})
	}
	fmt.Printf("gRPC on a unix socket, %d conns × %d in flight, %v each, pinned=%v\n", conns, conc, dur, pin)
	fmt.Printf("%-16s %10s %10s %9s %9s %9s %9s %14s\n", "method", "calls", "calls/s", "p50", "p99", "p99.9", "srv cpu", "calls/srv-cpu-s")
	for _, x := range rows {
		per := 0.0
		if x.cpu > 0 {
			per = float64(x.r.Requests) / x.cpu.Seconds()
		}
		fmt.Printf("%-16s %10d %10.0f %9v %9v %9v %9v %14.0f\n", x.name, x.r.Requests, x.r.RPS,
			x.r.P50.Round(time.Microsecond), x.r.P99.Round(time.Microsecond), x.r.P999.Round(time.Microsecond), x.cpu.Round(10*time.Millisecond), per)
	}
	fmt.Printf("Now / health.Check throughput: %.2f×\n", rows[1].r.RPS/rows[0].r.RPS)

	// One caller: a gRPC round trip against a shared-memory read.
	one, err := bench.RunGRPCLoad(ctx, bench.GRPCLoad{Address: addr, Conns: 1, Concurrency: 1, Duration: min(dur, 2*time.Second), Method: "now"})
	if err != nil {
		return err
	}
	s, err := client.OpenShm(shm)
	if err != nil {
		return err
	}
	defer s.Close()
	const n = 2_000_000
	t0 := time.Now()
	for i := 0; i < n; i++ {
		if _, err := s.Now(ctx); err != nil {
			return err
		}
	}
	shmNS := float64(time.Since(t0).Nanoseconds()) / n
	fmt.Printf("one caller: gRPC Now p50 %v, shm Now %.0f ns/read: shm is %.0f× faster\n",
		one.P50.Round(time.Microsecond), shmNS, float64(one.P50.Nanoseconds())/shmNS)
	return nil
}
