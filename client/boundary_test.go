package client_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/meridiantime/meridian/client"
	"github.com/meridiantime/meridian/clock"
	"github.com/meridiantime/meridian/clock/hostclock"
	"github.com/meridiantime/meridian/internal/testdaemon"
	"github.com/meridiantime/meridian/timeservice"
	"github.com/meridiantime/meridian/truetime"
	"github.com/meridiantime/meridian/truetime/shm"
)

// frozenReader is a clock that never moves: the interval, and so the
// After/Before boundary, is exact to the nanosecond.
type frozenReader int64

func (f frozenReader) NowNS() int64 { return int64(f) }

// frozenSources serves one frozen clock through all three transports: an
// in-process truetime.Clock, a shm segment whose clock model has frequency
// −10⁹ ppb (the reading stays at BaseNS whatever CLOCK_MONOTONIC_RAW does),
// and the gRPC service over that same truetime.Clock.
func frozenSources(t *testing.T, nowNS int64, e truetime.Estimate) map[string]client.TimeSource {
	t.Helper()
	tt := truetime.NewClock(frozenReader(nowNS), hostclock.RealTimers())
	tt.SetEstimate(e)
	shmPath := filepath.Join(t.TempDir(), "tt.shm")
	w, err := shm.Create(shmPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	w.Publish(clock.Linear{BaseNS: nowNS, BaseRawNS: hostclock.MonoRawNS(), FreqPPB: -1e9}, e)
	addr := testdaemon.Serve(t, timeservice.Options{TT: tt})
	shm, err := client.OpenShm(shmPath)
	if err != nil {
		t.Fatal(err)
	}
	g, err := client.DialGRPC(addr, client.TLS{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shm.Close(); g.Close() })
	return map[string]client.TimeSource{"local": client.Local{C: tt}, "shm": shm, "grpc": g}
}

// After is tNS < earliest and Before is tNS > latest, exactly, through every
// transport: checked at earliest−1, earliest, earliest+1, latest−1, latest
// and latest+1 on a frozen clock. WaitUntilAfter returns at once for
// earliest−1 and keeps waiting for earliest.
//
// Mutation check: comparing with LatestNS in Interval.After (or ≤ for <)
// fails here for every transport; a server that computed its own answer
// differently fails the gRPC row through the client's consistency check.
func TestAfterBeforeBoundaryAllTransports(t *testing.T) {
	const now = int64(1_795_000_000_000_000_000)
	// Offset 250 ns and ε 1000 ns: the interval is [now−1250, now+750],
	// asymmetric about the reading so earliest and latest cannot be mixed up.
	e := truetime.Estimate{Status: truetime.Synchronized, LocalNS: now, LastSampleNS: now, OffsetNS: 250, Eps0NS: 1000,
		DriftBoundPPB: 15000, MaxErrorNS: int64(time.Second)}
	lo, hi := now-1250, now+750
	if iv := truetime.Bound(now, e); iv.EarliestNS != lo || iv.LatestNS != hi {
		t.Fatalf("fixture: bound %+v, want [%d, %d]", iv, lo, hi)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cases := []struct {
		ts            int64
		after, before bool
	}{
		{lo - 1, true, false},
		{lo, false, false},
		{lo + 1, false, false},
		{hi - 1, false, false},
		{hi, false, false},
		{hi + 1, false, true},
	}
	for name, s := range frozenSources(t, now, e) {
		iv, err := s.Now(ctx)
		if err != nil || iv.EarliestNS != lo || iv.LatestNS != hi {
			t.Fatalf("%s: Now %+v %v, want [%d, %d]", name, iv, err, lo, hi)
		}
		for _, c := range cases {
			a, err := s.After(ctx, c.ts)
			if err != nil || a != c.after {
				t.Errorf("%s: After(earliest%+d) = %v %v, want %v", name, c.ts-lo, a, err, c.after)
			}
			b, err := s.Before(ctx, c.ts)
			if err != nil || b != c.before {
				t.Errorf("%s: Before(latest%+d) = %v %v, want %v", name, c.ts-hi, b, err, c.before)
			}
		}
		if err := s.WaitUntilAfter(ctx, lo-1); err != nil {
			t.Errorf("%s: WaitUntilAfter(earliest−1): %v", name, err)
		}
		short, c2 := context.WithTimeout(ctx, 30*time.Millisecond)
		err = s.WaitUntilAfter(short, lo)
		c2()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: WaitUntilAfter(earliest) on a frozen clock returned %v, want a deadline", name, err)
		}
	}
}

// The interval methods themselves, exhaustively around both edges.
func TestIntervalAfterBefore(t *testing.T) {
	iv := truetime.Interval{EarliestNS: 100, LatestNS: 200, Status: truetime.Synchronized}
	for ts := int64(90); ts <= 210; ts++ {
		if got, want := iv.After(ts), ts < 100; got != want {
			t.Fatalf("After(%d) = %v", ts, got)
		}
		if got, want := iv.Before(ts), ts > 200; got != want {
			t.Fatalf("Before(%d) = %v", ts, got)
		}
		if (iv.UntilAfterNS(ts) <= 0) != iv.After(ts) {
			t.Fatalf("UntilAfterNS(%d) = %d disagrees with After", ts, iv.UntilAfterNS(ts))
		}
	}
}

// A timestamp in the wrong unit (µs or ms where ns are expected, so before
// 2000) is refused the same way by every transport, and 2000-01-01 itself
// is not.
func TestTimestampUnitsAllTransports(t *testing.T) {
	const now = int64(1_795_000_000_000_000_000)
	e := truetime.Estimate{Status: truetime.Synchronized, LocalNS: now, LastSampleNS: now, Eps0NS: 1000,
		DriftBoundPPB: 15000, MaxErrorNS: int64(time.Second)}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for name, s := range frozenSources(t, now, e) {
		for _, ts := range []int64{now / 1000, now / 1_000_000, truetime.MinTimestampNS - 1} {
			if _, err := s.After(ctx, ts); !errors.Is(err, truetime.ErrTimestampUnits) {
				t.Errorf("%s: After(%d): %v, want ErrTimestampUnits", name, ts, err)
			}
			if _, err := s.Before(ctx, ts); !errors.Is(err, truetime.ErrTimestampUnits) {
				t.Errorf("%s: Before(%d): %v, want ErrTimestampUnits", name, ts, err)
			}
			if err := s.WaitUntilAfter(ctx, ts); !errors.Is(err, truetime.ErrTimestampUnits) {
				t.Errorf("%s: WaitUntilAfter(%d): %v, want ErrTimestampUnits", name, ts, err)
			}
		}
		if after, err := s.After(ctx, truetime.MinTimestampNS); err != nil || !after {
			t.Errorf("%s: After(2000-01-01) = %v, %v", name, after, err)
		}
	}
}
