package client_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	timev1 "github.com/meridiantime/meridian/api/meridian/time/v1"
	"github.com/meridiantime/meridian/client"
	"github.com/meridiantime/meridian/clock"
	"github.com/meridiantime/meridian/clock/hostclock"
	"github.com/meridiantime/meridian/timeservice"
	"github.com/meridiantime/meridian/truetime"
	"github.com/meridiantime/meridian/truetime/shm"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixture publishes one estimate of a model clock both in process (gRPC
// server over a truetime.Clock) and in a shm segment, so the three
// implementations answer about the same clock.
type fixture struct {
	tt      *truetime.Clock
	shmPath string
	addr    string
	w       *shm.Writer
	model   clock.Linear
}

type modelReader struct{ m clock.Linear }

func (r modelReader) NowNS() int64 { return r.m.At(hostclock.MonoRawNS()) }

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{shmPath: filepath.Join(t.TempDir(), "tt.shm")}
	f.model = clock.Linear{BaseNS: time.Now().UnixNano(), BaseRawNS: hostclock.MonoRawNS()}
	f.tt = truetime.NewClock(modelReader{f.model}, hostclock.RealTimers())
	var err error
	if f.w, err = shm.Create(f.shmPath); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.w.Close() })
	svc, err := timeservice.NewService(timeservice.Options{TT: f.tt})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := timeservice.NewServer(svc, timeservice.ServerConfig{Listen: []string{"unix://" + filepath.Join(t.TempDir(), "g.sock")}})
	if err != nil {
		t.Fatal(err)
	}
	f.addr = srv.Addrs()[0]
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

func (f *fixture) publish(e truetime.Estimate) {
	f.tt.SetEstimate(e)
	f.w.Publish(f.model, e)
}

func (f *fixture) sources(t *testing.T) map[string]client.TimeSource {
	t.Helper()
	shm, err := client.Open(client.Config{Kind: "shm", ShmPath: f.shmPath})
	if err != nil {
		t.Fatal(err)
	}
	g, err := client.Open(client.Config{Kind: "grpc", Address: f.addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shm.Close(); g.Close() })
	return map[string]client.TimeSource{"local": client.Local{C: f.tt}, "shm": shm, "grpc": g}
}

// Plumbing: every implementation gives an interval containing the model
// clock's time — the served clock itself, not an independent truth — the
// same error on an unsynchronized clock, and a WaitUntilAfter that returns
// only after the target has passed on that clock. The exact comparison
// rule is TestAfterBeforeBoundaryAllTransports.
func TestImplementationsAgreePlumbing(t *testing.T) {
	f := newFixture(t)
	srcs := f.sources(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for name, s := range srcs {
		if _, err := s.Now(ctx); !errors.Is(err, truetime.ErrUnsynchronized) {
			t.Fatalf("%s unsynchronized: %v", name, err)
		}
		if _, err := s.After(ctx, time.Now().UnixNano()); !errors.Is(err, truetime.ErrUnsynchronized) { // a valid ns time: gRPC refuses one before 2000 first
			t.Fatalf("%s After unsynchronized: %v", name, err)
		}
	}
	now := f.model.At(hostclock.MonoRawNS())
	f.publish(truetime.Estimate{Status: truetime.Synchronized, LocalNS: now, LastSampleNS: now, Eps0NS: int64(time.Millisecond),
		DriftBoundPPB: 15000, MaxErrorNS: int64(time.Second)})
	truth := func() int64 { return f.model.At(hostclock.MonoRawNS()) }
	for name, s := range srcs {
		for i := 0; i < 50; i++ {
			lo := truth()
			iv, err := s.Now(ctx)
			hi := truth()
			if err != nil || iv.EarliestNS > hi || iv.LatestNS < lo {
				t.Fatalf("%s: %+v %v misses [%d, %d]", name, iv, err, lo, hi)
			}
		}
		past, future := truth()-int64(5*time.Second), truth()+int64(5*time.Second) // margins far beyond ε and any scheduling delay
		if ok, err := s.After(ctx, past); err != nil || !ok {
			t.Fatalf("%s After(past) %v %v", name, ok, err)
		}
		if ok, err := s.Before(ctx, future); err != nil || !ok {
			t.Fatalf("%s Before(future) %v %v", name, ok, err)
		}
		if ok, err := s.After(ctx, future); err != nil || ok {
			t.Fatalf("%s After(future) %v %v", name, ok, err)
		}
		target := truth() + int64(5*time.Millisecond)
		if err := s.WaitUntilAfter(ctx, target); err != nil {
			t.Fatalf("%s wait: %v", name, err)
		}
		// True time must be past target + ε (1 ms) − the drift slack.
		if got := truth(); got < target+int64(time.Millisecond)-int64(50*time.Microsecond) {
			t.Fatalf("%s: returned %v early", name, time.Duration(target+int64(time.Millisecond)-got))
		}
		short, c2 := context.WithTimeout(ctx, 20*time.Millisecond)
		err := s.WaitUntilAfter(short, truth()+int64(time.Minute))
		c2()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s deadline: %v", name, err)
		}
	}
	if _, err := client.Open(client.Config{Kind: "carrier-pigeon"}); err == nil {
		t.Fatal("unknown kind accepted")
	}
}

func BenchmarkNow(b *testing.B) {
	f := newFixture(b)
	now := f.model.At(hostclock.MonoRawNS())
	f.publish(truetime.Estimate{Status: truetime.Synchronized, LocalNS: now, LastSampleNS: now, Eps0NS: 1000, DriftBoundPPB: 15000, MaxErrorNS: int64(time.Hour)})
	shm, _ := client.OpenShm(f.shmPath)
	defer shm.Close()
	g, _ := client.DialGRPC(f.addr, client.TLS{})
	defer g.Close()
	ctx := context.Background()
	for name, s := range map[string]client.TimeSource{"shm": shm, "grpc": g, "local": client.Local{C: f.tt}} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Now(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A disrupted clock (suspend, VM pause, migration) is reported the same way
// by all three implementations: ErrDisrupted, which also matches
// ErrUnsynchronized, and the gRPC Status call shows DISRUPTED.
func TestImplementationsReportDisrupted(t *testing.T) {
	f := newFixture(t)
	srcs := f.sources(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	now := f.model.At(hostclock.MonoRawNS())
	f.publish(truetime.Estimate{Status: truetime.Disrupted, LocalNS: now, LastSampleNS: now, Eps0NS: int64(time.Millisecond),
		DriftBoundPPB: 15000, MaxErrorNS: int64(time.Second)})
	for name, s := range srcs {
		iv, err := s.Now(ctx)
		if !errors.Is(err, truetime.ErrDisrupted) || !errors.Is(err, truetime.ErrUnsynchronized) {
			t.Errorf("%s Now: %+v %v", name, iv, err)
		}
		if _, err := s.After(ctx, now); !errors.Is(err, truetime.ErrDisrupted) { // a valid ns time (gRPC refuses one before 2000)
			t.Errorf("%s After: %v", name, err)
		}
	}
	g, err := client.DialGRPC(f.addr, client.TLS{})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	st, err := g.Service().Status(ctx, &timev1.StatusRequest{})
	if err != nil || st.Status != timev1.ClockStatus_CLOCK_STATUS_DISRUPTED || st.Interval != nil {
		t.Fatalf("Status: %v %v", st, err)
	}

	// A synchronized estimate, but the clock's check (meridiand installs its
	// shm writer's) reports a disruption noticed before the next publish:
	// Now and Status agree.
	f.publish(truetime.Estimate{Status: truetime.Synchronized, LocalNS: now, LastSampleNS: now, Eps0NS: int64(time.Millisecond),
		DriftBoundPPB: 15000, MaxErrorNS: int64(time.Second)})
	if _, err := g.Now(ctx); err != nil {
		t.Fatalf("synchronized: %v", err)
	}
	f.tt.SetCheck(func() error { return truetime.ErrDisrupted })
	if _, err := g.Now(ctx); !errors.Is(err, truetime.ErrDisrupted) {
		t.Fatalf("Now with a failing check: %v", err)
	}
	if st, err := g.Service().Status(ctx, &timev1.StatusRequest{}); err != nil || st.Status != timev1.ClockStatus_CLOCK_STATUS_DISRUPTED {
		t.Fatalf("Status with a failing check: %v %v", st, err)
	}
}

// A unix socket reached through a symlink is refused before dialling: a
// planted link would hand the client another process's time.
func TestDialRefusesSymlinkedSocket(t *testing.T) {
	f := newFixture(t)
	sock := strings.TrimPrefix(f.addr, "unix://")
	link := filepath.Join(t.TempDir(), "g.sock")
	if err := os.Symlink(sock, link); err != nil {
		t.Fatal(err)
	}
	if g, err := client.DialGRPC("unix://"+link, client.TLS{}); err == nil || !strings.Contains(err.Error(), "symlink") {
		if g != nil {
			g.Close()
		}
		t.Fatalf("symlinked socket: %v", err)
	}
	g, err := client.DialGRPC(f.addr, client.TLS{})
	if err != nil {
		t.Fatalf("the real socket: %v", err)
	}
	g.Close()
}

// Status and Watch agree over the three transports: the same status,
// stratum and reference, each naming its transport; Watch sends the
// current status at once and the next change (synchronized →
// unsynchronized) as it happens, and closes when its context ends.
func TestStatusAndWatchOverEveryTransport(t *testing.T) {
	f := newFixture(t)
	now := f.tt.LocalNS()
	synced := truetime.Estimate{Status: truetime.Synchronized, LocalNS: now, Eps0NS: 20_000, MaxErrorNS: 1e9,
		Stratum: 2, RefID: 0x7f000001, LastSampleNS: now, RootDelayNS: 40_000}
	f.publish(synced)
	srcs := f.sources(t)
	for name, s := range srcs {
		st, err := s.Status(context.Background())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if st.Status != truetime.Synchronized || st.Stratum != 2 || st.Reference != "127.0.0.1" || st.RootDelay != 40*time.Microsecond ||
			st.Interval.EpsNS() < 20_000 || !strings.Contains(st.Transport, map[string]string{"shm": "shm:", "grpc": "grpc:", "local": "local"}[name]) {
			t.Fatalf("%s: %+v", name, st)
		}
	}
	for name, s := range srcs {
		ctx, cancel := context.WithCancel(context.Background())
		ch, err := s.Watch(ctx)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if first := <-ch; first.Status != truetime.Synchronized {
			t.Fatalf("%s: first %v", name, first.Status)
		}
		f.publish(truetime.Estimate{Status: truetime.Unsynchronized, LocalNS: f.tt.LocalNS(), MaxErrorNS: 1e9})
		select {
		case next := <-ch:
			if next.Status != truetime.Unsynchronized {
				t.Fatalf("%s: change %v", name, next.Status)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no change seen", name)
		}
		cancel()
		for range ch { // closes
		}
		f.publish(synced)
	}
}

// The zero Config is the local daemon's segment, found where meridianctl
// finds it; a missing segment or daemon is an error that names the
// transport and the path, and nothing is created on the way.
func TestOpenDefaultsAndErrorsNameTheTransport(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", filepath.Join(tmp, "xdg"))
	t.Setenv("TMPDIR", filepath.Join(tmp, "tmp"))
	_ = os.MkdirAll(filepath.Join(tmp, "tmp"), 0o700)
	_, err := client.Open(client.Config{})
	if err == nil || !strings.Contains(err.Error(), "client: shm ") || !strings.Contains(err.Error(), "truetime.shm") {
		t.Fatalf("no daemon, shm: %v", err)
	}
	// gRPC connects lazily: the first call fails, naming the transport.
	g, err := client.Open(client.Config{Kind: "grpc", Address: "unix://" + filepath.Join(tmp, "none.sock")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err = g.Now(ctx)
	cancel()
	g.Close()
	if err == nil || errors.Is(err, truetime.ErrUnsynchronized) || !strings.Contains(err.Error(), "client: grpc ") || !strings.Contains(err.Error(), "none.sock") {
		t.Fatalf("no daemon, grpc: %v", err)
	}
	if _, err := os.Stat(filepath.Join(tmp, "xdg")); !os.IsNotExist(err) {
		t.Fatalf("Open created %s: %v", filepath.Join(tmp, "xdg"), err)
	}
	// A segment in this user's private fallback directory is found.
	dir := filepath.Join(tmp, "xdg", "meridian")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	w, err := shm.Create(filepath.Join(dir, "truetime.shm"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ts, err := client.Open(client.Config{})
	if err != nil {
		t.Fatalf("default segment: %v", err)
	}
	defer ts.Close()
	st, err := ts.Status(context.Background())
	if err != nil || st.Transport != "shm:"+filepath.Join(dir, "truetime.shm") {
		t.Fatalf("status %+v %v", st, err)
	}
	early, late, err := client.NowTime(context.Background(), ts)
	if !errors.Is(err, truetime.ErrUnsynchronized) || !early.IsZero() || !late.IsZero() {
		t.Fatalf("NowTime of an unpublished segment: %v %v %v", early, late, err)
	}
}

// BenchmarkShmVsTimeNow is the client's shared-memory Now against
// time.Now in the same run: the best of 200 interleaved rounds of 5000
// calls each (the minimum is what other work on the machine did not
// inflate). Reports both in ns and their ratio.
func BenchmarkShmVsTimeNow(b *testing.B) {
	f := newFixture(b)
	now := f.model.At(hostclock.MonoRawNS())
	f.publish(truetime.Estimate{Status: truetime.Synchronized, LocalNS: now, LastSampleNS: now, Eps0NS: 1000, DriftBoundPPB: 15000, MaxErrorNS: int64(time.Hour)})
	shm, err := client.OpenShm(f.shmPath)
	if err != nil {
		b.Fatal(err)
	}
	defer shm.Close()
	var src client.TimeSource = shm
	ctx := context.Background()
	var bestShm, bestNow float64
	for b.Loop() {
		for r := 0; r < 200; r++ {
			const n = 5000
			t0 := time.Now()
			for i := 0; i < n; i++ {
				if _, err := src.Now(ctx); err != nil {
					b.Fatal(err)
				}
			}
			t1 := time.Now()
			for i := 0; i < n; i++ {
				_ = time.Now()
			}
			t2 := time.Now()
			s, w := float64(t1.Sub(t0))/n, float64(t2.Sub(t1))/n
			if bestShm == 0 || s < bestShm {
				bestShm = s
			}
			if bestNow == 0 || w < bestNow {
				bestNow = w
			}
		}
	}
	b.ReportMetric(bestShm, "shm-ns")
	b.ReportMetric(bestNow, "timenow-ns")
	b.ReportMetric(bestShm/bestNow, "shm/timenow")
	allocs := testing.AllocsPerRun(1000, func() { _, _ = src.Now(ctx) })
	b.ReportMetric(allocs, "allocs/read")
}
