package impair

import (
	"math"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// drive admits n frames, one every gapNS on a fake clock starting at 0,
// and returns each admitted frame's (seq, due) plus the delivery order
// obtained by popping at every due instant.
func drive(l *link, n int, gapNS int64) (admitted []*frame, order []uint64) {
	var out []*frame
	pop := func(nowNS int64) {
		out = l.popDue(nowNS, out[:0])
		for _, f := range out {
			if f.dueNS > nowNS {
				panic("popDue returned a frame not yet due")
			}
			order = append(order, f.seq)
		}
	}
	for i := 0; i < n; i++ {
		now := int64(i) * gapNS
		pop(now)
		f := &frame{}
		if l.admit(now, f) {
			admitted = append(admitted, f)
		}
	}
	for {
		nx, ok := l.next()
		if !ok {
			return admitted, order
		}
		pop(nx)
	}
}

func delays(fs []*frame) []float64 {
	d := make([]float64, len(fs))
	for i, f := range fs {
		d[i] = float64(f.dueNS - f.readNS)
	}
	return d
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func TestLinkBaseDelay(t *testing.T) {
	l := newLink(Path{Delay: 3 * time.Millisecond}, 1, 0, Config{}, 0)
	fs, order := drive(l, 100, int64(100*time.Microsecond))
	for _, f := range fs {
		if f.dueNS-f.readNS != int64(3*time.Millisecond) {
			t.Fatalf("frame %d: delay %v, want 3ms", f.seq, time.Duration(f.dueNS-f.readNS))
		}
	}
	if len(order) != 100 || l.stats.Reordered != 0 {
		t.Fatalf("delivered %d, reordered %d", len(order), l.stats.Reordered)
	}
	// Nothing comes out before it is due.
	l2 := newLink(Path{Delay: time.Millisecond}, 1, 0, Config{}, 0)
	l2.admit(0, &frame{})
	if got := l2.popDue(int64(time.Millisecond)-1, nil); len(got) != 0 {
		t.Fatal("a frame came out 1 ns early")
	}
	if got := l2.popDue(int64(time.Millisecond), nil); len(got) != 1 {
		t.Fatal("a due frame did not come out")
	}
	// SubtractNS takes the overhead off, never below zero.
	l3 := newLink(Path{Delay: time.Millisecond}, 1, 0, Config{SubtractNS: 200e3}, 0)
	f := &frame{}
	l3.admit(0, f)
	if f.dueNS != 800e3 {
		t.Fatalf("due %d with 200 µs subtracted from 1 ms, want 800000", f.dueNS)
	}
	l4 := newLink(Path{}, 1, 0, Config{SubtractNS: 200e3}, 0)
	l4.admit(5, f)
	if f.dueNS != 5 {
		t.Fatalf("due %d with a zero delay less overhead, want 5 (now)", f.dueNS)
	}
	// A direction's own SubtractNS adds to the common one.
	l5 := newLink(Path{Delay: time.Millisecond, SubtractNS: 50e3}, 1, 0, Config{SubtractNS: 200e3}, 0)
	l5.admit(0, f)
	if f.dueNS != 750e3 {
		t.Fatalf("due %d with 200 + 50 µs subtracted from 1 ms, want 750000", f.dueNS)
	}
}

// Jitter: each distribution's mean and range, over 20,000 frames.
func TestLinkJitterDistributions(t *testing.T) {
	const n = 20000
	base := int64(time.Millisecond)
	for _, c := range []struct {
		j            Jitter
		wantMean     float64 // of the jitter alone, ns
		minNS, maxNS int64
	}{
		{Jitter{Dist: Uniform, Max: 2 * time.Millisecond}, 1e6, 0, 2e6 - 1},
		{Jitter{Dist: Exponential, Mean: time.Millisecond}, 1e6, 0, math.MaxInt64},
		{Jitter{Dist: Exponential, Mean: 100 * time.Microsecond}, 100e3, 0, math.MaxInt64},
		{Jitter{Dist: None}, 0, 0, 0},
	} {
		l := newLink(Path{Delay: time.Millisecond, Jitter: c.j}, 7, 0, Config{}, 0)
		fs, _ := drive(l, n, 1000)
		d := delays(fs)
		for i := range d {
			d[i] -= float64(base)
			if d[i] < float64(c.minNS) || d[i] > float64(c.maxNS) {
				t.Fatalf("%v: jitter %v outside [%d, %d]", c.j.Dist, d[i], c.minNS, c.maxNS)
			}
		}
		m := mean(d)
		// The standard error of the mean is ≤ mean/√n ≈ 0.7 % for these;
		// 3 % is four standard errors.
		if math.Abs(m-c.wantMean) > 0.03*c.wantMean {
			t.Fatalf("%v: mean jitter %.0f ns, want %.0f ± 3 %%", c.j.Dist, m, c.wantMean)
		}
		t.Logf("%v: mean jitter %.0f ns (want %.0f)", c.j.Dist, m, c.wantMean)
	}
	// The exponential cap holds.
	l := newLink(Path{Jitter: Jitter{Dist: Exponential, Mean: time.Millisecond, Max: 1500 * time.Microsecond}}, 7, 0, Config{}, 0)
	fs, _ := drive(l, n, 1000)
	for _, v := range delays(fs) {
		if v > 1.5e6 {
			t.Fatalf("capped exponential jitter %v > 1.5 ms", v)
		}
	}
}

func TestLinkLossFraction(t *testing.T) {
	const n = 20000
	for _, pct := range []float64{0, 5, 20, 30, 100} {
		l := newLink(Path{Delay: time.Millisecond, LossPct: pct}, 3, 0, Config{}, 0)
		fs, order := drive(l, n, 1000)
		got := 100 * float64(l.stats.Dropped) / n
		// Binomial standard deviation ≤ 0.36 percentage points at n=20000.
		if math.Abs(got-pct) > 1.5 {
			t.Fatalf("loss %.2f %%, want %v ± 1.5", got, pct)
		}
		if len(fs)+int(l.stats.Dropped) != n || len(order) != len(fs) {
			t.Fatalf("loss %v: %d admitted + %d dropped != %d, %d delivered", pct, len(fs), l.stats.Dropped, n, len(order))
		}
	}
}

func inOrder(seqs []uint64) bool {
	for i := 1; i < len(seqs); i++ {
		if seqs[i] < seqs[i-1] {
			return false
		}
	}
	return true
}

// Jitter larger than the gap between frames reorders them (and counts it);
// NoReorder keeps FIFO, delaying a frame rather than letting it overtake.
func TestLinkReordering(t *testing.T) {
	p := Path{Delay: time.Millisecond, Jitter: Jitter{Dist: Exponential, Mean: time.Millisecond}}
	l := newLink(p, 5, 0, Config{}, 0)
	_, order := drive(l, 2000, int64(200*time.Microsecond))
	if inOrder(order) || l.stats.Reordered == 0 {
		t.Fatalf("frames 200 µs apart with 1 ms jitter came out in order (reordered %d)", l.stats.Reordered)
	}
	p.NoReorder = true
	l = newLink(p, 5, 0, Config{}, 0)
	fs, order := drive(l, 2000, int64(200*time.Microsecond))
	if !inOrder(order) || l.stats.Reordered != 0 || len(order) != 2000 {
		t.Fatalf("NoReorder: out of order or reordered %d", l.stats.Reordered)
	}
	for _, f := range fs {
		if f.dueNS-f.readNS < int64(time.Millisecond) {
			t.Fatalf("NoReorder shortened a delay below the base: %v", time.Duration(f.dueNS-f.readNS))
		}
	}
}

// Equal seeds give equal decisions; another seed or direction others.
func TestLinkSeedReproducible(t *testing.T) {
	p := Path{Delay: time.Millisecond, Jitter: Jitter{Dist: Uniform, Max: time.Millisecond}, LossPct: 20}
	run := func(seed, dir uint64) string {
		l := newLink(p, seed, dir, Config{}, 0)
		var b strings.Builder
		for i := 0; i < 500; i++ {
			f := &frame{}
			if l.admit(int64(i)*1000, f) {
				b.WriteString(time.Duration(f.dueNS).String())
			} else {
				b.WriteString("x")
			}
			b.WriteByte(' ')
		}
		return b.String()
	}
	a, a2 := run(42, 0), run(42, 0)
	if a != a2 {
		t.Fatal("same seed, different decisions")
	}
	if a == run(43, 0) || a == run(42, 1) {
		t.Fatal("another seed or direction repeated the same decisions")
	}
}

// A route change switches the base delay at its instant after the start.
func TestLinkRouteChange(t *testing.T) {
	start := int64(10 * time.Second)
	l := newLink(Path{Delay: 3 * time.Millisecond, Changes: []Change{
		{At: time.Second, Delay: time.Millisecond},
		{At: 2 * time.Second, Delay: 5 * time.Millisecond},
	}}, 1, 0, Config{}, start)
	for _, c := range []struct {
		at   time.Duration
		want time.Duration
	}{{0, 3 * time.Millisecond}, {time.Second - 1, 3 * time.Millisecond}, {time.Second, time.Millisecond},
		{2*time.Second - 1, time.Millisecond}, {2 * time.Second, 5 * time.Millisecond}, {time.Hour, 5 * time.Millisecond}} {
		f := &frame{}
		now := start + int64(c.at)
		l.admit(now, f)
		if got := time.Duration(f.dueNS - now); got != c.want {
			t.Fatalf("at %v: delay %v, want %v", c.at, got, c.want)
		}
	}
}

func TestLinkOverflow(t *testing.T) {
	l := newLink(Path{Delay: time.Second}, 1, 0, Config{MaxQueue: 10}, 0)
	for i := 0; i < 15; i++ {
		l.admit(int64(i), &frame{})
	}
	if len(l.q) != 10 || l.stats.Overflow != 5 {
		t.Fatalf("queued %d overflow %d, want 10 and 5", len(l.q), l.stats.Overflow)
	}
}

func TestConfigValidateNamesKey(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{AtoB: Path{LossPct: 120}}, "a_to_b.loss_pct: must be in [0, 100], got 120"},
		{Config{BtoA: Path{Delay: -1}}, "b_to_a.delay: must be ≥ 0"},
		{Config{AtoB: Path{Jitter: Jitter{Dist: Exponential}}}, "a_to_b.jitter.mean: must be > 0"},
		{Config{AtoB: Path{Jitter: Jitter{Dist: Uniform}}}, "a_to_b.jitter.max: must be > 0"},
		{Config{BtoA: Path{Changes: []Change{{At: 2}, {At: 1}}}}, "b_to_a.changes[1].at"},
		{Config{SubtractNS: -5}, "subtract_ns: must be ≥ 0, got -5"},
	} {
		err := c.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%+v: error %v, want it to contain %q", c.cfg, err, c.want)
		}
	}
	if err := (Config{AtoB: Path{Delay: 1, LossPct: 100}}).Validate(); err != nil {
		t.Fatal(err)
	}
}

// Properties of any path and any arrival sequence: every admitted frame
// comes out exactly once, never before it is due, never sooner than the
// base delay in force (less SubtractNS); NoReorder delivers in admission
// order; forwarded + dropped + overflow = offered.
func TestLinkProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		dist := Dist(rapid.IntRange(0, 2).Draw(t, "dist"))
		p := Path{
			Delay:     time.Duration(rapid.Int64Range(0, 5e6).Draw(t, "delay")),
			LossPct:   rapid.Float64Range(0, 100).Draw(t, "loss"),
			NoReorder: rapid.Bool().Draw(t, "noreorder"),
		}
		switch dist {
		case Uniform:
			p.Jitter = Jitter{Dist: Uniform, Max: time.Duration(rapid.Int64Range(1, 5e6).Draw(t, "max"))}
		case Exponential:
			p.Jitter = Jitter{Dist: Exponential, Mean: time.Duration(rapid.Int64Range(1, 2e6).Draw(t, "mean"))}
		}
		if rapid.Bool().Draw(t, "change") {
			p.Changes = []Change{{At: time.Duration(rapid.Int64Range(0, 1e8).Draw(t, "at")), Delay: time.Duration(rapid.Int64Range(0, 5e6).Draw(t, "delay2"))}}
		}
		cfg := Config{SubtractNS: rapid.Int64Range(0, 1e6).Draw(t, "subtract"), MaxQueue: rapid.IntRange(0, 64).Draw(t, "maxq")}
		l := newLink(p, rapid.Uint64().Draw(t, "seed"), 0, cfg, 0)
		gaps := rapid.SliceOfN(rapid.Int64Range(0, 2e6), 1, 300).Draw(t, "gaps")
		now := int64(0)
		offered, delivered := 0, map[uint64]bool{}
		var lastSeq int64 = -1
		var out []*frame
		pop := func(at int64) {
			out = l.popDue(at, out[:0])
			for _, f := range out {
				if f.dueNS > at {
					t.Fatalf("frame %d delivered at %d before due %d", f.seq, at, f.dueNS)
				}
				if delivered[f.seq] {
					t.Fatalf("frame %d delivered twice", f.seq)
				}
				delivered[f.seq] = true
				if p.NoReorder && int64(f.seq) < lastSeq {
					t.Fatalf("NoReorder: frame %d after %d", f.seq, lastSeq)
				}
				lastSeq = int64(f.seq)
			}
		}
		for _, g := range gaps {
			now += g
			pop(now)
			f := &frame{}
			offered++
			if l.admit(now, f) {
				if min := max(l.baseDelayNS(now)-cfg.SubtractNS, 0); f.dueNS-now < min {
					t.Fatalf("delay %d below the base %d", f.dueNS-now, min)
				}
			}
		}
		for {
			nx, ok := l.next()
			if !ok {
				break
			}
			pop(nx)
		}
		s := l.stats
		if int(s.Dropped+s.Overflow)+len(delivered) != offered || uint64(len(delivered)) != l.seq {
			t.Fatalf("offered %d: delivered %d, dropped %d, overflow %d, admitted %d", offered, len(delivered), s.Dropped, s.Overflow, l.seq)
		}
	})
}
