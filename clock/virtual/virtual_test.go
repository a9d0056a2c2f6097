package virtual

import (
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meridiantime/meridian/clock/hostclock"
)

type fakeRaw struct{ ns atomic.Int64 }

func (f *fakeRaw) read() int64 { return f.ns.Load() }

func newFake(t *testing.T, off int64) (*Clock, *fakeRaw) {
	t.Helper()
	r := &fakeRaw{}
	r.ns.Store(1_000)
	c, err := New(Options{OffsetNS: off, Raw: r.read, Wall: func() int64 { return 1_700_000_000e9 }})
	if err != nil {
		t.Fatal(err)
	}
	return c, r
}

func TestStartOffsetAndRate(t *testing.T) {
	c, r := newFake(t, 2_500_000)
	if got := c.NowNS(); got != 1_700_000_000e9+2_500_000 {
		t.Fatalf("start reading %d", got)
	}
	r.ns.Add(1e9)
	if got := c.NowNS() - (1_700_000_000e9 + 2_500_000); got != 1e9 {
		t.Fatalf("1 s of raw advanced the clock by %d", got)
	}
}

func TestFrequencyRebaseIsContinuous(t *testing.T) {
	c, r := newFake(t, 0)
	r.ns.Add(5e9)
	before := c.NowNS()
	if err := c.AdjFreqPPB(100_000); err != nil {
		t.Fatal(err)
	}
	if c.NowNS() != before {
		t.Fatal("reading jumped at a frequency change")
	}
	r.ns.Add(10e9)
	if d := c.NowNS() - before; d != 10e9+1_000_000 {
		t.Fatalf("+100 ppm over 10 s gave %d", d)
	}
	if f, _ := c.FreqPPB(); f != 100_000 {
		t.Fatalf("FreqPPB %v", f)
	}
	_ = c.Step(-3_000_000)
	if d := c.NowNS() - before; d != 10e9+1_000_000-3_000_000 {
		t.Fatalf("after step %d", d)
	}
}

func TestBadFrequencies(t *testing.T) {
	c, _ := newFake(t, 0)
	for _, f := range []float64{math.NaN(), math.Inf(1), 500_001, -600_000} {
		if err := c.AdjFreqPPB(f); err == nil {
			t.Errorf("AdjFreqPPB(%v) accepted", f)
		}
	}
	if _, err := New(Options{InitialFreqPPB: 1e9}); err == nil {
		t.Error("initial frequency beyond the limit accepted")
	}
}

func TestRealRawIsMonotonic(t *testing.T) {
	c, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d := c.NowNS() - time.Now().UnixNano(); d > int64(time.Second) || d < -int64(time.Second) {
		t.Fatalf("virtual clock %d ns from the host clock at start", d)
	}
	prev := c.NowNS()
	for i := 0; i < 1000; i++ {
		n := c.NowNS()
		if n < prev {
			t.Fatalf("went back by %d", prev-n)
		}
		prev = n
	}
}

func TestConcurrentReadsAndAdjusts(t *testing.T) {
	c, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prev := c.NowNS()
			for i := 0; i < 5000; i++ {
				n := c.NowNS()
				if n < prev {
					t.Errorf("reading went back by %d without a step", prev-n)
					return
				}
				prev = n
			}
		}()
	}
	for i := 0; i < 500; i++ {
		_ = c.AdjFreqPPB(float64(i%7) * 10_000)
	}
	wg.Wait()
}

func BenchmarkMonoRaw(b *testing.B) {
	for b.Loop() {
		hostclock.MonoRawNS()
	}
}

func BenchmarkVirtualNow(b *testing.B) {
	c, _ := New(Options{})
	for b.Loop() {
		c.NowNS()
	}
}
