package truetime

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/meridiantime/meridian/clock/fake"
)

func syncedAt(now int64) Estimate {
	return Estimate{Status: Synchronized, LocalNS: now, Eps0NS: 1000, MaxErrorNS: 1e9}
}

func TestClockAfterBefore(t *testing.T) {
	fc := fake.NewClock(1_000_000)
	c := NewClock(fc, &fake.Timers{})
	if _, err := c.Now(); !errors.Is(err, ErrUnsynchronized) {
		t.Fatalf("before any estimate: %v", err)
	}
	if _, err := c.After(0); !errors.Is(err, ErrUnsynchronized) {
		t.Fatal("After must fail while unsynchronized")
	}
	c.SetEstimate(syncedAt(1_000_000))
	// interval [999000, 1001000]
	for _, tc := range []struct {
		t             int64
		after, before bool
	}{
		{998_999, true, false}, {999_000, false, false}, {1_000_000, false, false},
		{1_001_000, false, false}, {1_001_001, false, true},
	} {
		a, _ := c.After(tc.t)
		b, _ := c.Before(tc.t)
		if a != tc.after || b != tc.before {
			t.Errorf("t=%d: After %v Before %v, want %v %v", tc.t, a, b, tc.after, tc.before)
		}
	}
}

func TestWaitUntilAfter(t *testing.T) {
	fc := fake.NewClock(1_000_000)
	ts := &fake.Timers{}
	c := NewClock(fc, ts)
	c.SetEstimate(syncedAt(1_000_000))
	target := int64(1_005_000) // passes once earliest > target: reading > 1_006_000
	done := make(chan error, 1)
	go func() { done <- c.WaitUntilAfter(context.Background(), target) }()
	for i := 0; ; i++ {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			if ok, _ := c.After(target); !ok {
				t.Fatalf("returned at reading %d before After(%d) was true", fc.NowNS(), target)
			}
			if fc.NowNS() < 1_006_001 {
				t.Fatalf("returned too early at %d", fc.NowNS())
			}
			return
		default:
		}
		if i > 10000 {
			t.Fatal("never returned")
		}
		if ts.Pending() > 0 {
			fc.Advance(500 * time.Nanosecond)
			ts.Advance(500 * time.Nanosecond)
		} else {
			time.Sleep(50 * time.Microsecond)
		}
	}
}

func TestWaitUntilAfterCancelAndUnsync(t *testing.T) {
	c := NewClock(fake.NewClock(1_000_000), &fake.Timers{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.WaitUntilAfter(ctx, 0) }() // unsynchronized: keeps waiting
	select {
	case err := <-done:
		t.Fatalf("returned %v while unsynchronized", err)
	case <-time.After(20 * time.Millisecond):
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancel: %v", err)
	}
	// A new estimate wakes a waiter without any timer firing.
	done2 := make(chan error, 1)
	go func() { done2 <- c.WaitUntilAfter(context.Background(), 0) }()
	time.Sleep(5 * time.Millisecond)
	c.SetEstimate(syncedAt(1_000_000))
	select {
	case err := <-done2:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SetEstimate did not wake the waiter")
	}
}
