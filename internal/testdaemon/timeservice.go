package testdaemon

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/meridiantime/meridian/clock/hostclock"
	"github.com/meridiantime/meridian/timeservice"
	"github.com/meridiantime/meridian/truetime"
)

// Wall reads the host's realtime clock: the ground truth of the estimates
// that WallEstimate makes.
type Wall struct{}

// NowNS implements clock.Reader.
func (Wall) NowNS() int64 { return time.Now().UnixNano() }

// WallEstimate is a synchronized estimate of the wall clock (offset 0) with
// half-width eps, widening at 15 ppm, max error 1 s.
func WallEstimate(eps time.Duration) truetime.Estimate {
	now := time.Now().UnixNano()
	return truetime.Estimate{Status: truetime.Synchronized, LocalNS: now, LastSampleNS: now, Eps0NS: int64(eps),
		DriftBoundPPB: 15000, MaxErrorNS: int64(time.Second), Stratum: 2, RefID: 0x7f000001}
}

// ServeWall serves a TimeService over a wall-clock TrueTime (unsynchronized
// until the caller sets an estimate) on a unix socket until the test ends.
// options (nil: defaults) gets the clock and returns the service options;
// TT is set regardless.
func ServeWall(t testing.TB, options func(*truetime.Clock) timeservice.Options) (addr string, tt *truetime.Clock) {
	t.Helper()
	tt = truetime.NewClock(Wall{}, hostclock.RealTimers())
	var opt timeservice.Options
	if options != nil {
		opt = options(tt)
	}
	opt.TT = tt
	return Serve(t, opt), tt
}

// Serve serves a TimeService with opt on a unix socket until the test ends
// and returns its address.
func Serve(t testing.TB, opt timeservice.Options) string {
	t.Helper()
	svc, err := timeservice.NewService(opt)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := timeservice.NewServer(svc, timeservice.ServerConfig{Listen: []string{"unix://" + filepath.Join(t.TempDir(), "g.sock")}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("TimeService: %v", err)
		}
	})
	return srv.Addrs()[0]
}
