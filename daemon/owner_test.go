package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meridiantime/meridian/config"
	"github.com/meridiantime/meridian/internal/fsown"
	"github.com/meridiantime/meridian/internal/rundir"
	"github.com/meridiantime/meridian/truetime"
	"github.com/meridiantime/meridian/truetime/shm"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test chowns files and must run as root under CI")
		}
		t.Skip("needs root to chown a directory to another uid")
	}
}

// ownerConfig is a local-reference daemon on the given files.
func ownerConfig(t *testing.T, segPath, state, offset string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte("local_stratum: 1\nclock_offset: " + offset + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Shm.Path, cfg.StateDir = segPath, state
	cfg.Metrics.Listen = "127.0.0.1:0"
	cfg.GRPC.Listen = nil
	return cfg
}

func newDaemon(t *testing.T, cfg *config.Config, tick time.Duration) *Daemon {
	t.Helper()
	d, err := New(cfg, slog.New(slog.DiscardHandler), Options{Tick: tick})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// run runs a started daemon until the test ends.
func run(t *testing.T, d *Daemon) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// A second daemon pointed at a live daemon's segment, or at its state
// directory, refuses in Start before touching anything: the segment stays
// byte-identical (the first daemon publishes only at start here, tick 1 h),
// and the message names the holder. The second daemon would also have
// failed later (its metrics port is the first one's).
func TestSecondDaemonRefused(t *testing.T) {
	dir := t.TempDir()
	segPath, state := filepath.Join(dir, "tt.shm"), filepath.Join(dir, "state")
	a := newDaemon(t, ownerConfig(t, segPath, state, "0s"), time.Hour)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	run(t, a)
	before, _ := os.ReadFile(segPath)

	for _, tc := range []struct{ name, segPath, state, want string }{
		{"same segment", segPath, filepath.Join(dir, "state2"), "pid " + strconv.Itoa(os.Getpid())},
		{"same state dir", filepath.Join(dir, "other.shm"), state, "state_dir"},
	} {
		cfg := ownerConfig(t, tc.segPath, tc.state, "+10s")
		cfg.Metrics.Listen = a.MetricsAddr()
		b := newDaemon(t, cfg, 20*time.Millisecond)
		err := b.Start()
		if err == nil {
			t.Fatalf("%s: the second daemon started", tc.name)
		}
		if !strings.Contains(err.Error(), "in use") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a refusal mentioning %q", tc.name, err, tc.want)
		}
		if after, _ := os.ReadFile(segPath); !bytes.Equal(before, after) {
			t.Fatalf("%s: the refused daemon changed the live segment", tc.name)
		}
	}
	r, err := shm.Open(segPath)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Now(); err != nil {
		t.Fatalf("the live segment after the refusals: %v", err)
	}
	// The daemon's default void window is 5 s of boottime.
	if in, err := r.Inspect(); err != nil || in.Stamp.VoidAfterNS-in.Stamp.BootNS != int64(truetime.DefaultVoidAfter) || truetime.DefaultVoidAfter != 5*time.Second {
		t.Fatalf("void window: %+v %v", in.Stamp, err)
	}
}

// Negative controls for TestSecondDaemonRefused, with the locks disabled:
// (1) a second daemon whose start fails (metrics port taken) has blanked
// the live segment by then, and its cleanup marks it stopped; (2) two
// daemons 10 s apart co-write one segment and readers see time flip.
func TestSecondDaemonWithoutLocks(t *testing.T) {
	fsown.TestDisableLocks.Store(true)
	defer fsown.TestDisableLocks.Store(false)
	dir := t.TempDir()
	segPath := filepath.Join(dir, "tt.shm")
	a := newDaemon(t, ownerConfig(t, segPath, filepath.Join(dir, "a"), "0s"), time.Hour)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	run(t, a)
	before, _ := os.ReadFile(segPath)
	cfg := ownerConfig(t, segPath, filepath.Join(dir, "b"), "+10s")
	cfg.Metrics.Listen = a.MetricsAddr()
	if err := newDaemon(t, cfg, time.Hour).Start(); err == nil {
		t.Fatal("the failing daemon started")
	}
	if after, _ := os.ReadFile(segPath); bytes.Equal(before, after) {
		t.Fatal("negative control: without the lock the failed start should have changed the segment")
	}

	shm2 := filepath.Join(dir, "tt2.shm")
	for i, off := range []string{"0s", "+10s"} {
		d := newDaemon(t, ownerConfig(t, shm2, filepath.Join(dir, "s"+strconv.Itoa(i)), off), 10*time.Millisecond)
		if err := d.Start(); err != nil {
			t.Fatal(err)
		}
		run(t, d)
	}
	r, err := shm.Open(shm2)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var lo, hi time.Duration
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end) && hi-lo < 9*time.Second; {
		iv, err := r.Now()
		if err == nil {
			off := time.Duration(iv.MidNS() - time.Now().UnixNano())
			if lo == 0 && hi == 0 {
				lo, hi = off, off
			}
			lo, hi = min(lo, off), max(hi, off)
		}
		time.Sleep(time.Millisecond)
	}
	if hi-lo < 9*time.Second {
		t.Fatalf("negative control: co-writers should make readers see time flip by ~10 s, saw a spread of %v", hi-lo)
	}
}

// fallbackEnv points the candidate directories into a temporary tree: the
// system directories cannot be created (their parent is a file), there is
// no $XDG_RUNTIME_DIR, $XDG_STATE_HOME or usable $HOME, and $TMPDIR is a
// world-writable sticky directory like /tmp. It returns $TMPDIR.
func fallbackEnv(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	blocker := filepath.Join(base, "file")
	_ = os.WriteFile(blocker, nil, 0o644)
	oldRun, oldState := rundir.SystemRuntimeDir, systemStateDir
	rundir.SystemRuntimeDir, systemStateDir = filepath.Join(blocker, "run"), filepath.Join(blocker, "state")
	t.Cleanup(func() { rundir.SystemRuntimeDir, systemStateDir = oldRun, oldState })
	tmp := filepath.Join(base, "tmp")
	_ = os.Mkdir(tmp, 0o755)
	_ = os.Chmod(tmp, os.ModeSticky|0o777)
	t.Setenv("TMPDIR", tmp)
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("HOME", filepath.Join(blocker, "home"))
	return tmp
}

func startFallback(t *testing.T) (*Daemon, error) {
	t.Helper()
	cfg := ownerConfig(t, "", "", "0s")
	d := newDaemon(t, cfg, 10*time.Millisecond)
	err := d.Start()
	if err == nil {
		run(t, d)
	}
	return d, err
}

// With nothing planted, the unprivileged fallbacks are created 0700 and
// used; clients locate the segment there.
func TestFallbackDirsCreatedPrivate(t *testing.T) {
	tmp := fallbackEnv(t)
	d, err := startFallback(t)
	if err != nil {
		t.Fatal(err)
	}
	uid := strconv.Itoa(os.Getuid())
	if want := filepath.Join(tmp, "meridian-"+uid, "truetime.shm"); d.ShmPath != want {
		t.Fatalf("shm at %s, want %s", d.ShmPath, want)
	}
	for _, dir := range []string{filepath.Dir(d.ShmPath), d.StateDir} {
		fi, err := os.Lstat(dir)
		if err != nil || fi.Mode().Perm() != 0o700 || !fi.IsDir() {
			t.Fatalf("%s: %v %v", dir, fi.Mode(), err)
		}
	}
	if got := LocateRuntimeFile("truetime.shm"); got != d.ShmPath {
		t.Fatalf("LocateRuntimeFile: %s", got)
	}
}

// A fallback directory another user created first, a planted symlink, or
// one of ours with a loose mode: the daemon refuses with a message that
// says what to fix, and clients do not locate files in it.
func TestFallbackDirsRefused(t *testing.T) {
	uid := strconv.Itoa(os.Getuid())
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, dir string)
		want  string
		root  bool
	}{
		{"owned by another uid", func(t *testing.T, dir string) {
			_ = os.Mkdir(dir, 0o700)
			if err := os.Chown(dir, 4242, 4242); err != nil {
				t.Fatal(err)
			}
		}, "owned by uid 4242", true},
		{"symlink", func(t *testing.T, dir string) {
			target := t.TempDir()
			if err := os.Symlink(target, dir); err != nil {
				t.Fatal(err)
			}
		}, "symlink", false},
		{"mode 0755", func(t *testing.T, dir string) {
			_ = os.Mkdir(dir, 0o755)
			_ = os.Chmod(dir, 0o755)
		}, "chmod 700", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root {
				needRoot(t)
			}
			tmp := fallbackEnv(t)
			for _, name := range []string{"meridian-" + uid, "meridian-state-" + uid} {
				planted := filepath.Join(tmp, name)
				_ = os.RemoveAll(filepath.Join(tmp, "meridian-"+uid)) // left from the other name
				_ = os.RemoveAll(filepath.Join(tmp, "meridian-state-"+uid))
				tc.plant(t, planted)
				_, err := startFallback(t)
				if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), planted) {
					t.Fatalf("%s: %v, want a refusal naming %s and %q", name, err, planted, tc.want)
				}
				if name == "meridian-"+uid {
					_ = os.WriteFile(filepath.Join(planted, "grpc.sock"), nil, 0o600)
					if got := LocateRuntimeFile("grpc.sock"); strings.HasPrefix(got, planted) {
						t.Fatalf("LocateRuntimeFile returned a file in the planted directory: %s", got)
					}
				}
			}
		})
	}
}
