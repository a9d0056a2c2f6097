package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/meridiantime/meridian/clock/hostclock"
	"github.com/meridiantime/meridian/config"
	"github.com/meridiantime/meridian/truetime"
	"github.com/meridiantime/meridian/truetime/shm"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func startDaemon(t *testing.T, yaml string) (*Daemon, context.CancelFunc, chan error) {
	t.Helper()
	return startDaemonOpt(t, yaml, Options{Tick: 20 * time.Millisecond})
}

// startDaemonOpt runs a daemon on yaml with its files in a temporary
// directory and its metrics on an ephemeral port (other packages' tests run
// in parallel).
func startDaemonOpt(t *testing.T, yaml string, opt Options) (*Daemon, context.CancelFunc, chan error) {
	t.Helper()
	return runDaemonOpt(t, tempConfig(t, yaml), opt)
}

// tempConfig parses yaml and puts the daemon's files in a temporary
// directory, its metrics on an ephemeral port and (unless yaml sets grpc)
// its gRPC socket in that directory.
func tempConfig(t *testing.T, yaml string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Shm.Path = filepath.Join(dir, "tt.shm")
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.Metrics.Listen = "127.0.0.1:0"
	if !strings.Contains(yaml, "grpc:") {
		cfg.GRPC.Listen = config.ListenList{"unix://" + filepath.Join(dir, "grpc.sock")}
	}
	return cfg
}

// eventually polls cond every 20 ms until it holds, failing the test with
// what after timeout.
func eventually(t *testing.T, timeout time.Duration, what func() string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(what())
		}
	}
}

// waitSynced waits until d's TrueTime answers.
func waitSynced(t *testing.T, d *Daemon) {
	t.Helper()
	eventually(t, 10*time.Second, func() string { return "not synchronized in 10 s" }, func() bool {
		_, err := d.Clock().Now()
		return err == nil
	})
}

// freeUDPAddr is a loopback UDP address that was free a moment ago (for a
// reference daemon that must restart on the same address).
func freeUDPAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.LocalAddr().String()
}

// runDaemon starts and runs a daemon on cfg; cancel stops it, done reports
// Run's error.
func runDaemon(t *testing.T, cfg *config.Config) (*Daemon, context.CancelFunc, chan error) {
	t.Helper()
	return runDaemonOpt(t, cfg, Options{Tick: 20 * time.Millisecond})
}

func runDaemonOpt(t *testing.T, cfg *config.Config, opt Options) (*Daemon, context.CancelFunc, chan error) {
	t.Helper()
	return runDaemonLog(t, cfg, opt, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// runDaemonLog is runDaemonOpt with the daemon logging to log.
func runDaemonLog(t *testing.T, cfg *config.Config, opt Options, log *slog.Logger) (*Daemon, context.CancelFunc, chan error) {
	t.Helper()
	d, err := New(cfg, log, opt)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	return d, cancel, done
}

// Plumbing: a local-reference daemon publishes to shm an interval that
// contains its own virtual clock (its reference is itself, so this checks
// the publishing path, not a bound against true time) — computed here from
// CLOCK_MONOTONIC_RAW and the published model — and, against independent
// truth (the host clock), the injected clock_offset shows up.
func TestLocalReferenceShmPlumbing(t *testing.T) {
	d, cancel, done := startDaemon(t, "local_stratum: 1\nclock_offset: +2.5ms\n")
	r, err := shm.Open(d.ShmPath)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := 0; i < 200; i++ {
		rt0 := time.Now().UnixNano()
		raw0 := hostclock.MonoRawNS()
		iv, err := r.Now()
		rt1 := time.Now().UnixNano()
		m, _, _ := r.Snapshot()
		raw1 := hostclock.MonoRawNS()
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if iv.Status != truetime.Synchronized {
			t.Fatalf("status %v", iv.Status)
		}
		if lo, hi := m.At(raw0), m.At(raw1); iv.LatestNS < lo || iv.EarliestNS > hi {
			t.Fatalf("interval [%d, %d] misses the clock [%d, %d]", iv.EarliestNS, iv.LatestNS, lo, hi)
		}
		// Offset from the host clock, bracketed by host reads before and
		// after (a descheduled test goroutine widens the bracket).
		lo, hi := time.Duration(iv.MidNS()-rt1), time.Duration(iv.MidNS()-rt0)
		if hi < 2400*time.Microsecond || lo > 2600*time.Microsecond {
			t.Fatalf("offset from the host clock in [%v, %v], want +2.5ms", lo, hi)
		}
		time.Sleep(time.Millisecond)
	}
	if iv, err := d.Clock().Now(); err != nil || iv.Status != truetime.Synchronized {
		t.Fatalf("in-process clock: %+v %v", iv, err)
	}
	resp, err := http.Get("http://" + d.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"meridian_offset_seconds", "meridian_frequency_ppb", "meridian_error_bound_seconds",
		"meridian_status 1", "meridian_synchronized 1", "meridian_updates_total", "meridian_clock_steps_total"} {
		if !strings.Contains(string(body), name) {
			t.Errorf("metrics lack %q", name)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d.StateDir, "drift")); err != nil {
		t.Fatalf("no drift file on shutdown: %v", err)
	}
	// A clean stop marks the segment at once: a reader of a stopped daemon
	// gets unsynchronized, not holdover.
	if iv, err := r.Now(); !errors.Is(err, truetime.ErrUnsynchronized) || iv.Status != truetime.Unsynchronized {
		t.Fatalf("after the daemon stopped: %v %v", iv.Status, err)
	}
}

func TestNoSourcesStaysUnsynchronized(t *testing.T) {
	d, cancel, done := startDaemon(t, "local_stratum: 0\n")
	time.Sleep(60 * time.Millisecond)
	if _, err := d.Clock().Now(); err != truetime.ErrUnsynchronized {
		t.Fatalf("want unsynchronized, got %v", err)
	}
	cancel()
	<-done
}

func TestDriftFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "drift")
	if v, err := ReadDriftFile(p); v != 0 || err != nil {
		t.Fatalf("missing: %v %v", v, err)
	}
	if err := WriteDriftFile(p, -12345.678); err != nil {
		t.Fatal(err)
	}
	if v, err := ReadDriftFile(p); v != -12345.678 || err != nil {
		t.Fatalf("round trip: %v %v", v, err)
	}
	for _, bad := range []string{"garbage\n", "1e9\n", "NaN\n", ""} {
		_ = os.WriteFile(p, []byte(bad), 0o644)
		if _, err := ReadDriftFile(p); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// A corrupt drift file is ignored with a warning; the daemon still starts.
func TestCorruptDriftFileIgnored(t *testing.T) {
	dir := t.TempDir()
	_ = os.MkdirAll(filepath.Join(dir, "state"), 0o755)
	_ = os.WriteFile(filepath.Join(dir, "state", "drift"), []byte("junk"), 0o644)
	cfg := config.Default()
	cfg.Shm.Path, cfg.StateDir, cfg.Metrics.Listen = filepath.Join(dir, "tt.shm"), filepath.Join(dir, "state"), ""
	cfg.GRPC.Listen = nil
	var logs strings.Builder
	d, err := New(cfg, slog.New(slog.NewTextHandler(&logs, nil)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "ignoring drift file") {
		t.Fatalf("no warning in %q", logs.String())
	}
}

func TestUnsupportedConfig(t *testing.T) {
	for _, y := range []string{
		// ptp sources and ptp_server are supported (ptp_test.go), not both at once:
		"sources: [{type: ptp, address: \"10.0.0.1\"}]\nptp_server: {listen: [\"10.0.0.2\"]}\n",
	} {
		cfg, err := config.Parse([]byte(y))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{}); err == nil {
			t.Errorf("%q accepted", y)
		}
	}
}

// Unprivileged fallback: a directory that cannot be created (even by root:
// its parent is a file) is skipped for the next candidate.
func TestFirstUsableFallsBack(t *testing.T) {
	tmp := t.TempDir()
	blocker := filepath.Join(tmp, "file")
	_ = os.WriteFile(blocker, nil, 0o644)
	want := filepath.Join(tmp, "user", "meridian")
	if got := firstUsable([]dirCandidate{{filepath.Join(blocker, "meridian"), false}, {want, false}, {"/last", true}}); got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if got := firstUsable([]dirCandidate{{filepath.Join(blocker, "x"), true}, {"/last", true}}); got != "/last" {
		t.Fatalf("got %s", got)
	}
}
