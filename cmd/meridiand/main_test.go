package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meridiantime/meridian/config"
)

func TestBadConfigExits2(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(p, []byte("drift_bound_ppm: -3\n"), 0o644)
	if code := run([]string{"--config", p}); code != 2 {
		t.Fatalf("exit %d", code)
	}
	if code := run([]string{"--clock-offset", "soon"}); code != 2 {
		t.Fatalf("bad --clock-offset: exit %d", code)
	}
	if code := run([]string{"--no-such-flag"}); code != 2 {
		t.Fatalf("bad flag: exit %d", code)
	}
}

func TestVersionExits0(t *testing.T) {
	if code := run([]string{"--version"}); code != 0 {
		t.Fatalf("--version: exit %d", code)
	}
}

// SIGHUP reloads the configuration file (a source added shows up in the
// metrics) instead of killing the daemon; SIGTERM stops it with exit 0
// and the drift file written.
func TestSIGHUPReloadsAndSIGTERMSavesDrift(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := ln.Addr().String()
	ln.Close()
	cfgPath := filepath.Join(dir, "m.yaml")
	base := fmt.Sprintf("local_stratum: 1\nmetrics: {listen: %q}\ngrpc: {listen: []}\nshm: {path: %s}\nstate_dir: %s\n",
		metricsAddr, filepath.Join(dir, "tt.shm"), filepath.Join(dir, "state"))
	if err := os.WriteFile(cfgPath, []byte(base), 0o644); err != nil {
		t.Fatal(err)
	}
	code := make(chan int, 1)
	go func() { code <- run([]string{"--config", cfgPath}) }()
	metrics := func() string {
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	wait := func(what string, ok func(string) bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(metrics()); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: metrics\n%s", what, metrics())
			}
		}
	}
	wait("daemon up", func(m string) bool { return strings.Contains(m, "meridian_status") })
	if err := os.WriteFile(cfgPath, []byte(base+"sources: [{type: ntp, address: \"127.0.0.1:9\", poll: 125ms}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	wait("source added by SIGHUP", func(m string) bool { return strings.Contains(m, `meridian_source_reach{source="ntp:127.0.0.1:9"}`) })
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("exit %d after SIGTERM", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit 10 s after SIGTERM")
	}
	if _, err := os.Stat(filepath.Join(dir, "state", "drift")); err != nil {
		entries, _ := os.ReadDir(filepath.Join(dir, "state"))
		t.Fatalf("drift file after SIGTERM: %v (state dir: %v)", err, entries)
	}
}

// The embedded default has no sources: unsynchronized, with one log line
// saying what to configure; --local-stratum 10 (make run) serves this
// host's clock, labelled as a local reference in the log and status.
func TestDefaultIsUnsynchronized(t *testing.T) {
	cfg := config.Default()
	if cfg.LocalStratum != 0 || len(cfg.Sources) != 0 {
		t.Fatalf("default local_stratum %d, %d sources", cfg.LocalStratum, len(cfg.Sources))
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "no sources configured: the clock stays unsynchronized; add sources"},
		{[]string{"--local-stratum", "10"}, "LOCAL REFERENCE"},
	} {
		dir := t.TempDir()
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		stderr := os.Stderr
		os.Stderr = w
		var mu sync.Mutex
		var logs strings.Builder
		copied := make(chan struct{})
		go func() {
			defer close(copied)
			buf := make([]byte, 4096)
			for {
				n, err := r.Read(buf)
				mu.Lock()
				logs.Write(buf[:n])
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
		text := func() string {
			mu.Lock()
			defer mu.Unlock()
			return logs.String()
		}
		code := make(chan int, 1)
		args := append([]string{"--shm", filepath.Join(dir, "tt.shm"), "--state-dir", filepath.Join(dir, "state"), "--metrics-listen", "", "--grpc-listen", ""}, c.args...)
		go func() { code <- run(args) }()
		// Stop it once the line is there (run catches SIGTERM from its
		// first line, so an early one would also be clean).
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(text(), c.want) && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond) // a repeat would show by now
		_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
		<-code
		os.Stderr = stderr
		w.Close()
		<-copied
		r.Close()
		if out := text(); strings.Count(out, c.want) != 1 {
			t.Errorf("%v: want one %q in\n%s", c.args, c.want, out)
		}
	}
	if code := run([]string{"--local-stratum", "16"}); code != 2 {
		t.Fatalf("--local-stratum 16: exit %d", code)
	}
}
