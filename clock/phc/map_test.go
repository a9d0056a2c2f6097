package phc_test

import (
	"math/rand/v2"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/clock"
	"github.com/meridiantime/meridian/clock/phc"
	"github.com/meridiantime/meridian/clock/phc/phctest"
)

// fakeRaw is a raw counter the test moves.
type fakeRaw struct{ ns int64 }

func (f *fakeRaw) now() int64 { return f.ns }

func openMap(t *testing.T, dev *phctest.PHC, raw *fakeRaw, atRaw func(int64) int64) *phc.Map {
	t.Helper()
	m, err := phc.OpenMap("/dev/ptp3", phc.MapOptions{Dev: dev, Adj: dev, Raw: raw.now, AtRaw: atRaw})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestMapChoosesBestMethod(t *testing.T) {
	raw := &fakeRaw{ns: 1e12}
	id := func(r int64) int64 { return r }
	for _, c := range []struct {
		cross, old bool
		want       phc.Method
	}{{true, false, phc.Precise}, {false, false, phc.Extended}, {false, true, phc.User}, {true, true, phc.Precise}} {
		dev := phctest.New(raw.now, 5e6, 20_000, 1)
		dev.Cross, dev.OldKernel = c.cross, c.old
		if m := openMap(t, dev, raw, id); m.Method() != c.want {
			t.Errorf("cross=%v old kernel=%v: method %v, want %v", c.cross, c.old, m.Method(), c.want)
		}
	}
}

// TestMapSpanContainsTruth: for stamps of every age up to a second, from
// PHCs with crystal errors and corrections up to the limits, the raw span
// a stamp converts to contains the raw instant it was taken at — what
// makes a converted receive stamp late and a transmit stamp early. The
// negative control converts the same stamps as if the PHC ran at the
// host's rate (no rate bound): it misses.
func TestMapSpanContainsTruth(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	misses := 0
	for w := range 300 {
		raw := &fakeRaw{ns: 5e12 + rng.Int64N(1e12)}
		dev := phctest.New(raw.now, rng.Int64N(2e9)-1e9, rng.Float64()*200_000-100_000, uint64(w))
		dev.Cross, dev.OldKernel = w%3 == 0, w%3 == 2
		m := openMap(t, dev, raw, func(r int64) int64 { return r })
		if w%2 == 1 { // a corrected PHC: the correction must enter the bound
			var tx unix.Timex
			tx.Modes, tx.Freq = unix.ADJ_FREQUENCY, int64((rng.Float64()*400_000-200_000)*65.536)
			_, _ = dev.ClockAdjtime(0, &tx)
		}
		taken := raw.ns
		stamp := dev.At(taken)
		raw.ns += rng.Int64N(1e9) // the stamp is read later
		lo, hi, ok := m.RawSpan(stamp)
		if !ok || lo > taken || hi < taken {
			t.Fatalf("world %d (%v): stamp taken at raw %d, span [%d, %d] ok=%v", w, m.Method(), taken, lo, hi, ok)
		}
		if width := hi - lo; width > 1_000_000 { // 1 s × (300 + 2·100) ppm + bracket
			t.Fatalf("world %d: span %d ns wide", w, width)
		}
		r, err := m.Read()
		if err != nil {
			t.Fatal(err)
		}
		if nlo, nhi, _ := phc.Span(r, stamp, 0); nlo > taken || nhi < taken {
			misses++
		}
	}
	if misses == 0 {
		t.Fatal("negative control: without the rate bound no span missed; the test cannot see a missing bound")
	}
	t.Logf("negative control (no rate bound): %d of 300 spans missed the instant", misses)
}

func TestMapRefusesStaleAndFutureStamps(t *testing.T) {
	raw := &fakeRaw{ns: 1e12}
	dev := phctest.New(raw.now, 0, 0, 2)
	m := openMap(t, dev, raw, func(r int64) int64 { return r })
	now := dev.At(raw.ns)
	for _, s := range []int64{now - 2e9, now + 2e9} {
		if _, ok := m.RxToClock(s); ok {
			t.Errorf("stamp %d ns from the PHC's reading converted", s-now)
		}
	}
	// A converted stamp lands on the caller's clock, late for RX and early for TX.
	at := func(r int64) int64 { return r + 7e9 }
	m2 := openMap(t, dev, raw, at)
	taken := raw.ns
	st := dev.At(taken)
	raw.ns += 40_000
	rx, ok1 := m2.RxToClock(st)
	tx, ok2 := m2.TxToClock(st)
	if !ok1 || !ok2 || rx < at(taken) || tx > at(taken) || rx-tx > 2_000 {
		t.Fatalf("rx %d tx %d, truth %d", rx-at(taken), tx-at(taken), 0)
	}
}

// TestFollowerKeepsPHCOnClock: phc2sys's job. A PHC 3 ms off and 40 ppm
// fast follows a disciplined clock (itself 25 ppm off raw) to within the
// measurement noise, steered only through clock_adjtime; the truth is the
// fake device's own model.
func TestFollowerKeepsPHCOnClock(t *testing.T) {
	for _, cross := range []bool{false, true} {
		raw := &fakeRaw{ns: 1e12}
		target := clock.Linear{BaseNS: 1_700_000_000e9, BaseRawNS: raw.ns, FreqPPB: 25_000}
		dev := phctest.New(raw.now, 0, 40_000, 3)
		dev.Cross = cross
		// Start 3 ms ahead of the target.
		var tx unix.Timex
		tx.Modes = unix.ADJ_SETOFFSET | unix.ADJ_NANO
		tx.Time = unix.Timeval{Sec: (target.At(raw.ns) + 3e6 - dev.At(raw.ns)) / 1e9, Usec: (target.At(raw.ns) + 3e6 - dev.At(raw.ns)) % 1e9}
		if tx.Time.Usec < 0 {
			tx.Time.Sec--
			tx.Time.Usec += 1e9
		}
		_, _ = dev.ClockAdjtime(0, &tx)
		m := openMap(t, dev, raw, target.At)
		clk, err := phc.Open("/dev/ptp3", dev, dev)
		if err != nil {
			t.Fatal(err)
		}
		f := &phc.Follower{Map: m, PHC: clk, Raw: raw.now, AtRaw: target.At}
		var off int64
		for i := range 60 {
			if err := f.Update(); err != nil {
				t.Fatal(err)
			}
			raw.ns += 1e9
			off = dev.At(raw.ns) - target.At(raw.ns)
			if i == 0 && (off > 100_000 || off < -100_000) {
				t.Fatalf("first update left %d ns: no step", off)
			}
		}
		if off > 500 || off < -500 {
			t.Fatalf("cross=%v: PHC − clock = %d ns after 60 s", cross, off)
		}
		if dev.Steps != 2 || dev.FreqWrites < 50 { // the start offset, and the servo
			t.Fatalf("steps %d freq writes %d", dev.Steps, dev.FreqWrites)
		}
		clk.Close()
	}
}

// A stamp taken before the PHC was stepped converts by the wrong offset:
// after a step noted by the follower, conversions are refused for the
// longest stamp age; without the note (negative control) the stale stamp
// converts and misses its instant by the step.
func TestMapRefusesStampsAcrossAStep(t *testing.T) {
	for _, noted := range []bool{true, false} {
		raw := &fakeRaw{ns: 1e12}
		dev := phctest.New(raw.now, 0, 0, 4)
		m := openMap(t, dev, raw, func(r int64) int64 { return r })
		taken := raw.ns
		stamp := dev.At(taken)
		raw.ns += 1000
		var tx unix.Timex
		tx.Modes, tx.Time = unix.ADJ_SETOFFSET|unix.ADJ_NANO, unix.Timeval{Sec: 0, Usec: 5_000_000}
		_, _ = dev.ClockAdjtime(0, &tx) // +5 ms
		if noted {
			m.NoteStep()
		}
		raw.ns += 1000
		lo, hi, ok := m.RawSpan(stamp)
		switch {
		case noted && ok:
			t.Fatalf("stamp from before the step converted to [%d, %d]", lo-taken, hi-taken)
		case !noted && (!ok || (lo <= taken && taken <= hi)):
			t.Fatalf("negative control: unnoted step still converted right (ok=%v)", ok)
		}
	}
	// After the longest stamp age, stamps taken after the step convert again.
	raw := &fakeRaw{ns: 1e12}
	dev := phctest.New(raw.now, 0, 0, 4)
	m := openMap(t, dev, raw, func(r int64) int64 { return r })
	m.NoteStep()
	raw.ns += 1_100_000_000
	taken := raw.ns
	st := dev.At(taken)
	raw.ns += 1000
	if lo, hi, ok := m.RawSpan(st); !ok || lo > taken || hi < taken {
		t.Fatalf("a later stamp: ok=%v", ok)
	}
}

// A frequency change the follower made is kept in the rate bound for the
// longest stamp age: a stamp taken at the old rate still converts safely.
func TestMapRateBoundCoversRecentCorrection(t *testing.T) {
	raw := &fakeRaw{ns: 1e12}
	dev := phctest.New(raw.now, 0, 0, 5)
	m := openMap(t, dev, raw, func(r int64) int64 { return r })
	set := func(ppb float64) {
		var tx unix.Timex
		tx.Modes, tx.Freq = unix.ADJ_FREQUENCY, int64(ppb*65.536)
		_, _ = dev.ClockAdjtime(0, &tx)
	}
	set(400_000) // +400 ppm
	taken := raw.ns
	stamp := dev.At(taken)
	raw.ns += 900_000_000
	m.NoteFreq(400_000)
	set(0)
	raw.ns += 1000
	if lo, hi, ok := m.RawSpan(stamp); !ok || lo > taken || hi < taken {
		t.Fatalf("stamp at the old rate: span [%d, %d] around %d, ok=%v", lo-taken, hi-taken, 0, ok)
	}
}

// After the start, the follower steps only beyond StepNS (1 ms): a 0.5 ms
// disturbance is slewed out through the frequency, a 2 ms one stepped.
func TestFollowerStepThreshold(t *testing.T) {
	raw := &fakeRaw{ns: 1e12}
	target := clock.Linear{BaseNS: 1_700_000_000e9, BaseRawNS: raw.ns}
	dev := phctest.New(raw.now, 1_700_000_000e9-raw.ns, 0, 6)
	m := openMap(t, dev, raw, target.At)
	clk, err := phc.Open("/dev/ptp3", dev, dev)
	if err != nil {
		t.Fatal(err)
	}
	defer clk.Close()
	f := &phc.Follower{Map: m, PHC: clk, Raw: raw.now, AtRaw: target.At}
	run := func(n int) {
		for range n {
			if err := f.Update(); err != nil {
				t.Fatal(err)
			}
			raw.ns += 1e9
		}
	}
	run(5)
	kick := func(ns int64) {
		var tx unix.Timex
		tx.Modes, tx.Time = unix.ADJ_SETOFFSET|unix.ADJ_NANO, unix.Timeval{Usec: ns}
		_, _ = dev.ClockAdjtime(0, &tx)
	}
	steps := dev.Steps
	kick(500_000)
	run(1)
	if dev.Steps != steps+1 { // the kick itself
		t.Fatalf("0.5 ms stepped by the follower (%d steps)", dev.Steps-steps)
	}
	run(40)
	if off := dev.At(raw.ns) - target.At(raw.ns); off > 1000 || off < -1000 {
		t.Fatalf("0.5 ms not slewed out: %d ns left", off)
	}
	kick(2_000_000)
	run(1)
	if dev.Steps != steps+3 {
		t.Fatalf("2 ms not stepped (%d steps)", dev.Steps-steps)
	}
}
