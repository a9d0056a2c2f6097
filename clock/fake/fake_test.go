package fake

import (
	"testing"
	"time"
)

func TestTimersFireInOrderOnAdvance(t *testing.T) {
	var ts Timers
	a := ts.NewTimer(2 * time.Second)
	b := ts.NewTimer(time.Second)
	ts.Advance(500 * time.Millisecond)
	select {
	case <-a.C():
		t.Fatal("fired early")
	case <-b.C():
		t.Fatal("fired early")
	default:
	}
	ts.Advance(time.Second)
	select {
	case <-b.C():
	default:
		t.Fatal("b did not fire")
	}
	if !a.Stop() || a.Stop() {
		t.Fatal("Stop reports wrong state")
	}
	ts.Advance(time.Hour)
	select {
	case <-a.C():
		t.Fatal("stopped timer fired")
	default:
	}
	if ts.Pending() != 0 {
		t.Fatal("timers left")
	}
}

func TestPanicReader(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	PanicReader{}.NowNS()
}

func TestClockRecords(t *testing.T) {
	c := NewClock(100)
	_ = c.Step(5)
	_ = c.AdjFreqPPB(7)
	if c.NowNS() != 105 || len(c.Steps) != 1 || c.Freqs[0] != 7 {
		t.Fatalf("%+v", c)
	}
	if c.AdjFreqPPB(1e9) == nil {
		t.Fatal("accepted a frequency beyond the limit")
	}
}
