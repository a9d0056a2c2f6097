package truetime

import "testing"

func TestBoundGrowsAndCentres(t *testing.T) {
	e := Estimate{
		Status: Synchronized, LocalNS: 1_000_000_000_000, OffsetNS: 2000, SkewPPB: -100,
		Eps0NS: 500, DriftBoundPPB: 15000, FreqUncPPB: 5000, MaxErrorNS: 1e9,
	}
	iv := Bound(e.LocalNS, e)
	if iv.EarliestNS != e.LocalNS-2000-500 || iv.LatestNS != e.LocalNS-2000+500 {
		t.Fatalf("at T0: %+v", iv)
	}
	// 10 s later: offset 2000 − 100e-9·1e10 = 1000; ε = 500 + 20e-6·1e10 = 200500.
	now := e.LocalNS + 10_000_000_000
	iv = Bound(now, e)
	if iv.EarliestNS != now-1000-200500 || iv.LatestNS != now-1000+200500 || iv.Status != Synchronized {
		t.Fatalf("after 10 s: %+v", iv)
	}
	// Reading before T0 (reader raced the publisher) also widens.
	if iv := Bound(e.LocalNS-1_000_000_000, e); iv.LatestNS-iv.EarliestNS < 2*(500+20000) {
		t.Fatalf("before T0 the interval must widen too: %+v", iv)
	}
}

func TestBoundUnsynchronizedAndMaxError(t *testing.T) {
	if iv := Bound(123, Estimate{}); iv.Status != Unsynchronized || iv.EarliestNS != 0 {
		t.Fatalf("zero estimate: %+v", iv)
	}
	e := Estimate{Status: Synchronized, LocalNS: 0, Eps0NS: 1000, DriftBoundPPB: 15000, MaxErrorNS: 1_000_000}
	if iv := Bound(60_000_000_000, e); iv.Status != Synchronized {
		t.Fatalf("ε = 901 µs < 1 ms must still be synchronized: %+v", iv)
	}
	if iv := Bound(70_000_000_000, e); iv.Status != Unsynchronized {
		t.Fatalf("ε = 1.05 ms > max error must be unsynchronized: %+v", iv)
	}
}

func TestBoundHoldover(t *testing.T) {
	e := Estimate{Status: Synchronized, LocalNS: 0, LastSampleNS: 0, Eps0NS: 10, HoldoverAfterNS: 64e9}
	if Bound(63e9, e).Status != Synchronized || Bound(65e9, e).Status != Holdover {
		t.Fatal("holdover must start HoldoverAfterNS after the last sample")
	}
}

func TestBoundLeapWidens(t *testing.T) {
	midnight := int64(1_780_272_000) * 1e9
	e := Estimate{Status: Synchronized, LocalNS: midnight - 500_000_000, Eps0NS: 1000, Leap: LeapInsert}
	iv := Bound(midnight-500_000_000, e)
	if iv.LatestNS-iv.EarliestNS < 2e9 {
		t.Fatalf("leap pending near midnight must widen by 1 s each side: %+v", iv)
	}
	e.LocalNS = midnight - 3*3600e9
	iv = Bound(e.LocalNS, e)
	if iv.LatestNS-iv.EarliestNS != 2000 {
		t.Fatalf("far from midnight the leap flag changes nothing: %+v", iv)
	}
}

func TestBoundAllocs(t *testing.T) {
	e := Estimate{Status: Synchronized, LocalNS: 5, Eps0NS: 10, DriftBoundPPB: 15000}
	var sink Interval
	if a := testing.AllocsPerRun(100, func() { sink = Bound(1e18, e) }); a != 0 {
		t.Fatalf("Bound allocates %v per call", a)
	}
	_ = sink
}
