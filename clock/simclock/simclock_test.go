package simclock

import (
	"testing"
)

const start = int64(1_780_000_000) * 1e9

func TestPerfectOscillator(t *testing.T) {
	o := NewOscillator(OscillatorConfig{}, start)
	if r := o.RawAt(start + 3600e9); r != 3600e9 {
		t.Fatalf("raw after an hour %d", r)
	}
}

func TestConstantError(t *testing.T) {
	o := NewOscillator(OscillatorConfig{FreqErrorPPB: 100_000}, start)
	for s := int64(1); s <= 3600; s += 7 {
		want := s*1e9 + s*100_000
		if r := o.RawAt(start + s*1e9); r < want-1 || r > want+1 {
			t.Fatalf("after %d s raw %d, want %d", s, r, want)
		}
	}
}

func TestTempStepChangesSlope(t *testing.T) {
	o := NewOscillator(OscillatorConfig{TempSteps: []TempStep{{AtNS: start + 10_500_000_000, DeltaPPB: 5000}}}, start)
	r10 := o.RawAt(start + 10e9)
	r20 := o.RawAt(start + 20e9)
	if r10 != 10e9 {
		t.Fatalf("before the step: %d", r10)
	}
	// 0.5 s at 0 ppb, then 9.5 s at +5 ppm.
	if want := int64(10e9 + 9.5*5000); r20-r10 != want {
		t.Fatalf("across the step: %d, want %d", r20-r10, want)
	}
}

func TestWanderDeterministic(t *testing.T) {
	run := func(seed int64) int64 {
		o := NewOscillator(OscillatorConfig{WanderPPBPerSqrtS: 10, Seed: seed}, start)
		return o.RawAt(start + 1000e9)
	}
	if a, b := run(1), run(1); a != b {
		t.Fatal("same seed, different paths")
	}
	if run(1) == run(2) {
		t.Fatal("different seeds, same path")
	}
	if run(1) == 1000e9 {
		t.Fatal("wander had no effect")
	}
}

func TestBackwardsQueryPanics(t *testing.T) {
	o := NewOscillator(OscillatorConfig{}, start)
	o.RawAt(start + 5e9)
	defer func() {
		if recover() == nil {
			t.Fatal("query back in time did not panic")
		}
	}()
	o.RawAt(start + 4e9)
}

func TestClockDiscipline(t *testing.T) {
	now := start
	o := NewOscillator(OscillatorConfig{FreqErrorPPB: 50_000}, start)
	c := NewClock(o, func() int64 { return now }, 2_000_000, 500_000)
	if c.NowNS() != start+2_000_000 {
		t.Fatalf("start reading %d", c.NowNS())
	}
	now += 10e9 // +500 µs of oscillator error
	if got := c.NowNS() - now; got != 2_500_000 {
		t.Fatalf("offset after 10 s %d", got)
	}
	if err := c.AdjFreqPPB(-50_000); err != nil {
		t.Fatal(err)
	}
	before := c.NowNS()
	now += 100e9
	// (1 + 50e-6)(1 − 50e-6) = 1 − 2.5e-9: 250 ns slow over 100 s.
	if d := c.NowNS() - before - 100e9; d < -251 || d > -249 {
		t.Fatalf("corrected rate off by %d ns over 100 s", d)
	}
	_ = c.Step(-2_500_000)
	if d := c.NowNS() - now; d < -300 || d > 0 {
		t.Fatalf("after step offset %d", d)
	}
	if err := c.AdjFreqPPB(600_000); err == nil {
		t.Fatal("accepted a correction beyond the limit")
	}
}

// A pause stops the raw counter for exactly its length and nothing else.
func TestPauseStopsRaw(t *testing.T) {
	const start = int64(1_000_000_000_000)
	cfg := OscillatorConfig{FreqErrorPPB: 100_000, Pauses: []Pause{{FromNS: start + 10e9, ToNS: start + 3610e9}}}
	paused, free := NewOscillator(cfg, start), NewOscillator(OscillatorConfig{FreqErrorPPB: 100_000}, start)
	if a, b := paused.RawAt(start+10e9), free.RawAt(start+10e9); a != b {
		t.Fatalf("before the pause: %d vs %d", a, b)
	}
	if a, b := paused.RawAt(start+3000e9), paused.RawAt(start+3610e9); a != b {
		t.Fatalf("raw moved during the pause: %d → %d", a, b)
	}
	got := paused.RawAt(start + 3620e9)
	want := free.RawAt(start + 20e9)
	if d := got - want; d < -1 || d > 1 {
		t.Fatalf("after the pause raw %d, want %d (the free oscillator 3600 s earlier)", got, want)
	}
}
