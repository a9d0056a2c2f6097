package system_test

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/clock/hostclock"
	"github.com/meridiantime/meridian/clock/system"
	"github.com/meridiantime/meridian/clock/system/systest"
)

// The published model reproduces the (simulated) CLOCK_REALTIME within
// its stated error after frequency changes, tick changes and steps; an
// external step shows up as the deviation of the next measurement.
func TestRealtimeModelTracksTheClock(t *testing.T) {
	k := systest.New(hostclock.MonoRawNS, 250_000_000, 37_000)
	r, err := system.NewRealtime(k, hostclock.MonoRawNS, 100)
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string) {
		t.Helper()
		raw := hostclock.MonoRawNS()
		got, want := r.Model().At(raw), k.At(raw)
		if d := got - want; d > r.ModelErrorNS()+2 || d < -r.ModelErrorNS()-2 { // + rounding
			t.Fatalf("%s: model − clock = %d ns, stated error %d ns", what, d, r.ModelErrorNS())
		}
	}
	check("start")
	if err := r.AdjFreqPPB(-120_000); err != nil {
		t.Fatal(err)
	}
	check("frequency")
	if err := r.Step(-1_500_000_000); err != nil {
		t.Fatal(err)
	}
	check("step")
	if f, _ := r.FreqPPB(); f < -120_001 || f > -119_999 {
		t.Fatalf("frequency read back %v", f)
	}
	if dev, _ := r.Remeasure(); dev > 1000 {
		t.Fatalf("our own step counted as a deviation of %d ns", dev)
	}
	k.StepExternally(3_000_000)
	// An adjustment measures the model too: the deviation is kept for the
	// next Remeasure, not absorbed.
	if err := r.AdjFreqPPB(-100_000); err != nil {
		t.Fatal(err)
	}
	dev, err := r.Remeasure()
	if err != nil {
		t.Fatal(err)
	}
	if dev < 2_900_000 || dev > 3_100_000 {
		t.Fatalf("external 3 ms step seen as a %d ns deviation", dev)
	}
	check("after the external step")
	if dev, _ := r.Remeasure(); dev > 50_000 {
		t.Fatalf("steady clock: deviation %d ns", dev)
	}
}

// A test binary can never change the host's clock: the real kernel
// boundary refuses every clock_adjtime with modes ≠ 0 under `go test`
// (read-only queries still work).
func TestKernelRefusesWritesFromTests(t *testing.T) {
	k := system.Kernel()
	var ro unix.Timex
	if _, err := k.ClockAdjtime(unix.CLOCK_REALTIME, &ro); err != nil {
		t.Fatalf("read-only adjtimex: %v", err)
	}
	// Each write would rewrite the current value (a no-op even if the
	// guard failed); no step is tried at all.
	for _, modes := range []uint32{unix.ADJ_FREQUENCY, unix.ADJ_STATUS, unix.ADJ_MAXERROR} {
		tx := unix.Timex{Modes: modes, Freq: ro.Freq, Status: ro.Status, Maxerror: ro.Maxerror}
		if _, err := k.ClockAdjtime(unix.CLOCK_REALTIME, &tx); !errors.Is(err, unix.EPERM) {
			t.Fatalf("modes %#x from a test binary: %v, want EPERM", modes, err)
		}
	}
}
