package hlc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"pgregory.net/rapid"

	"github.com/meridiantime/meridian/truetime"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// phys is a settable TrueTime: true time + offset, ± epsNS.
type phys struct {
	nowNS  atomic.Int64
	epsNS  int64
	unsync atomic.Bool
}

func (p *phys) Now() (truetime.Interval, error) {
	if p.unsync.Load() {
		return truetime.Interval{}, truetime.ErrUnsynchronized
	}
	n := p.nowNS.Load()
	return truetime.Interval{EarliestNS: n - p.epsNS, LatestNS: n + p.epsNS, Status: truetime.Synchronized}, nil
}

const base = int64(1_795_000_000_000_000_000)

func newPhys(ns, eps int64) *phys {
	p := &phys{epsNS: eps}
	p.nowNS.Store(ns)
	return p
}

func TestAlgorithmTable(t *testing.T) {
	p := newPhys(base, 0) // pt = base/1000 µs
	c, _ := New(p, Options{MaxOffsetFloor: 10 * time.Millisecond})
	pt := base / 1000
	steps := []struct {
		name   string
		do     func() (Timestamp, error)
		expect Timestamp
	}{
		{"now at pt", c.Now, Timestamp{pt, 0}},
		{"now again, pt unchanged", c.Now, Timestamp{pt, 1}},
		{"remote behind", func() (Timestamp, error) { return c.Update(Timestamp{pt - 5, 9}) }, Timestamp{pt, 2}},
		{"remote same l, bigger c", func() (Timestamp, error) { return c.Update(Timestamp{pt, 7}) }, Timestamp{pt, 8}},
		{"remote ahead (within max offset)", func() (Timestamp, error) { return c.Update(Timestamp{pt + 3000, 4}) }, Timestamp{pt + 3000, 5}},
		{"now: l ahead of pt", c.Now, Timestamp{pt + 3000, 6}},
		{"pt passes l", func() (Timestamp, error) { p.nowNS.Add(5_000_000); return c.Now() }, Timestamp{pt + 5000, 0}},
	}
	for _, s := range steps {
		got, err := s.do()
		if err != nil || got != s.expect {
			t.Fatalf("%s: got %v %v, want %v", s.name, got, err, s.expect)
		}
	}
}

func TestEncodingOrderAndString(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := Timestamp{rapid.Int64Range(0, maxWallUS).Draw(t, "a"), uint16(rapid.IntRange(0, maxLogical).Draw(t, "ac"))}
		b := Timestamp{rapid.Int64Range(0, maxWallUS).Draw(t, "b"), uint16(rapid.IntRange(0, maxLogical).Draw(t, "bc"))}
		lexLess := a.WallUS < b.WallUS || (a.WallUS == b.WallUS && a.Logical < b.Logical)
		if (a.Encode() < b.Encode()) != lexLess || Decode(a.Encode()) != a {
			t.Fatalf("encoding breaks order or round trip: %v %v", a, b)
		}
		if p, err := Parse(a.String()); err != nil || p != a {
			t.Fatalf("string round trip %v → %q → %v %v", a, a.String(), p, err)
		}
	})
	for _, bad := range []string{"", "x+1", "2026-11-25T03:00:00.123456Z", "2026-11-25T03:00:00.123456Z+99999", "2026-11-25T03:00:00.123456Z+-1"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestRejectsRemoteTooFarAhead(t *testing.T) {
	p := newPhys(base, 200_000) // ε = 200 µs → max offset max(1 ms, 2·200 µs) = 1 ms
	c, _ := New(p, Options{})
	pt := (base + 200_000) / 1000
	if _, err := c.Update(Timestamp{pt + 1000, 0}); err != nil {
		t.Fatalf("just inside the max offset: %v", err)
	}
	_, err := c.Update(Timestamp{pt + 1001, 0})
	var tf *RemoteTooFarAheadError
	if !errors.Is(err, ErrRemoteTooFarAhead) || !errors.As(err, &tf) || tf.MaxOffsetUS != 1000 || c.Rejected() != 1 {
		t.Fatalf("just outside: %v (rejected %d)", err, c.Rejected())
	}
	// The max offset follows ε: with ε = 2 ms it is 4 ms.
	p2 := newPhys(base, 2_000_000)
	c2, _ := New(p2, Options{})
	if _, err := c2.Update(Timestamp{(base+2_000_000)/1000 + 3999, 0}); err != nil {
		t.Fatalf("inside 2ε: %v", err)
	}
}

func TestUnsynchronizedFails(t *testing.T) {
	p := newPhys(base, 0)
	p.unsync.Store(true)
	c, _ := New(p, Options{})
	if _, err := c.Now(); !errors.Is(err, truetime.ErrUnsynchronized) {
		t.Fatalf("%v", err)
	}
}

func TestLogicalOverflowAdvancesWall(t *testing.T) {
	c, _ := New(newPhys(base, 0), Options{})
	var prev Timestamp
	for i := 0; i < 3*maxLogical; i++ {
		ts, err := c.Now()
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 && !prev.Less(ts) {
			t.Fatalf("not increasing at %d: %v then %v", i, prev, ts)
		}
		prev = ts
	}
	if prev.WallUS-base/1000 != 2 {
		t.Fatalf("after 3·4095 events in one µs, l leads pt by %d µs, want 2", prev.WallUS-base/1000)
	}
}

// node is one simulated process for the property tests.
type node struct {
	name string
	p    *phys
	c    *Clock
	vc   VectorClock
}

type event struct {
	ts Timestamp
	vc VectorClock
	pt int64
}

// Monotonic under any interleaving; happened-before (vector clocks as
// ground truth) implies HLC order; l − pt stays within the skew bound.
func TestPropertiesAgainstVectorClocks(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		const skewNS = 300_000 // physical clocks within ±300 µs of true time
		n := rapid.IntRange(2, 4).Draw(t, "nodes")
		trueNS := base
		var nodes []*node
		for i := 0; i < n; i++ {
			off := rapid.Int64Range(-skewNS, skewNS).Draw(t, "offset")
			p := newPhys(trueNS+off, 0)
			c, err := New(p, Options{MaxOffsetFloor: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			nodes = append(nodes, &node{name: fmt.Sprint(i), p: p, c: c, vc: VectorClock{}})
		}
		type msg struct {
			ts Timestamp
			vc VectorClock
		}
		var inflight []msg
		var events []event
		last := make([]Timestamp, n)
		steps := rapid.IntRange(1, 60).Draw(t, "steps")
		for s := 0; s < steps; s++ {
			adv := rapid.Int64Range(0, 400_000).Draw(t, "advance")
			trueNS += adv
			for _, nd := range nodes {
				nd.p.nowNS.Add(adv)
			}
			i := rapid.IntRange(0, n-1).Draw(t, "node")
			nd := nodes[i]
			var ts Timestamp
			var err error
			if len(inflight) > 0 && rapid.Bool().Draw(t, "receive") {
				k := rapid.IntRange(0, len(inflight)-1).Draw(t, "msg")
				m := inflight[k]
				inflight = append(inflight[:k], inflight[k+1:]...)
				ts, err = nd.c.Update(m.ts)
				nd.vc.Merge(m.vc)
			} else {
				ts, err = nd.c.Now()
			}
			if err != nil {
				t.Fatal(err)
			}
			nd.vc.Tick(nd.name)
			if !last[i].Less(ts) {
				t.Fatalf("node %d not monotonic: %v then %v", i, last[i], ts)
			}
			last[i] = ts
			pt := (nd.p.nowNS.Load() + 999) / 1000
			// Paper's bound: l − pt ≤ ε, ε = the largest difference between
			// two nodes' physical clocks (here 2·300 µs).
			if ts.WallUS-pt > 2*skewNS/1000+1 {
				t.Fatalf("l − pt = %d µs exceeds the skew bound", ts.WallUS-pt)
			}
			events = append(events, event{ts, nd.vc.Clone(), pt})
			if rapid.Bool().Draw(t, "send") {
				inflight = append(inflight, msg{ts, nd.vc.Clone()})
			}
		}
		for a := range events {
			for b := range events {
				if events[a].vc.Compare(events[b].vc) == Before && !events[a].ts.Less(events[b].ts) {
					t.Fatalf("e%d → e%d by vector clocks but HLC %v ≥ %v", a, b, events[a].ts, events[b].ts)
				}
			}
		}
	})
}

// crashPersister models a disk: Store is durable only after its "fsync";
// a crash between write and fsync loses it.
type crashPersister struct {
	durable     int64
	has         bool
	crashBefore bool // the next Store crashes before it is durable
	stores      int
}

var errCrash = errors.New("crash")

func (p *crashPersister) Load() (int64, bool, error) { return p.durable, p.has, nil }
func (p *crashPersister) Store(u int64) error {
	p.stores++
	if p.crashBefore {
		return errCrash
	}
	p.durable, p.has = u, true
	return nil
}

func restartScenario(t *testing.T, persist bool) (before, after Timestamp) {
	t.Helper()
	p := newPhys(base, 0)
	var cp *crashPersister
	opt := Options{PersistAhead: 50 * time.Millisecond}
	if persist {
		cp = &crashPersister{}
		opt.Persist = cp
	}
	c, err := New(p, opt)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		p.nowNS.Add(1_000_000)
		if before, err = c.Now(); err != nil {
			t.Fatal(err)
		}
	}
	if persist {
		// Crash in the middle of persisting the next bound: the clock must
		// not issue the timestamp that needed it.
		cp.crashBefore = true
		p.nowNS.Add(60_000_000)
		if ts, err := c.Now(); !errors.Is(err, errCrash) {
			t.Fatalf("issued %v without a durable bound", ts)
		}
		cp.crashBefore = false
	}
	// Restart with the host clock stepped back by 10 s.
	p.nowNS.Add(-10_000_000_000)
	c2, err := New(p, opt)
	if err != nil {
		t.Fatal(err)
	}
	if after, err = c2.Now(); err != nil {
		t.Fatal(err)
	}
	if persist && cp.stores > 5 {
		t.Fatalf("%d fsyncs for 100 ms of timestamps: persisting is not cheap", cp.stores)
	}
	return before, after
}

func TestRestartMonotonic(t *testing.T) {
	before, after := restartScenario(t, true)
	if !before.Less(after) {
		t.Fatalf("after restart %v is not after %v", after, before)
	}
}

// Negative control: without persistence the same crash and clock step make
// timestamps go backwards, and the check above sees it.
func TestRestartWithoutPersistenceRegresses(t *testing.T) {
	before, after := restartScenario(t, false)
	if before.Less(after) {
		t.Fatalf("without persistence the restart should regress, got %v then %v", before, after)
	}
}

func TestFilePersister(t *testing.T) {
	dir := t.TempDir()
	p := FilePersister{Dir: dir}
	if _, ok, err := p.Load(); ok || err != nil {
		t.Fatalf("fresh: %v %v", ok, err)
	}
	if err := p.Store(1_795_000_000_123_456); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := p.Load(); v != 1_795_000_000_123_456 || !ok || err != nil {
		t.Fatalf("%v %v %v", v, ok, err)
	}
	c, err := New(newPhys(base, 0), Options{Persist: p})
	if err != nil {
		t.Fatal(err)
	}
	if ts, _ := c.Now(); ts.WallUS <= 1_795_000_000_123_456 {
		t.Fatalf("restarted clock issued %v, not above the stored bound", ts)
	}
	_ = os.WriteFile(filepath.Join(dir, "hlc.upper"), []byte("12abc\n"), 0o644)
	if _, err := New(newPhys(base, 0), Options{Persist: p}); err == nil {
		t.Fatal("corrupt bound accepted")
	}
}

func TestConcurrentUniqueAndIncreasing(t *testing.T) {
	p := newPhys(base, 0)
	c, _ := New(p, Options{Persist: &crashPersister{}, PersistAhead: time.Millisecond})
	const G, N = 4, 3000
	out := make([][]Timestamp, G)
	var wg sync.WaitGroup
	for g := 0; g < G; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < N; i++ {
				if i%100 == 0 {
					p.nowNS.Add(10_000)
				}
				var ts Timestamp
				var err error
				if i%3 == 0 {
					ts, err = c.Update(Timestamp{WallUS: p.nowNS.Load() / 1000, Logical: 3})
				} else {
					ts, err = c.Now()
				}
				if err != nil {
					t.Error(err)
					return
				}
				out[g] = append(out[g], ts)
			}
		}()
	}
	wg.Wait()
	seen := map[Timestamp]bool{}
	for g := range out {
		for i, ts := range out[g] {
			if seen[ts] {
				t.Fatalf("duplicate %v", ts)
			}
			seen[ts] = true
			if i > 0 && !out[g][i-1].Less(ts) {
				t.Fatalf("goroutine %d went back: %v then %v", g, out[g][i-1], ts)
			}
		}
	}
}

func TestLamportAndVector(t *testing.T) {
	var l Lamport
	if l.Tick() != 1 || l.Observe(10) != 11 || l.Observe(3) != 12 {
		t.Fatal("lamport")
	}
	a, b := VectorClock{}, VectorClock{}
	a.Tick("a")
	if a.Compare(b) != After || b.Compare(a) != Before || a.Compare(a.Clone()) != Equal {
		t.Fatal("vector order")
	}
	b.Tick("b")
	if a.Compare(b) != Concurrent {
		t.Fatal("concurrent")
	}
	b.Merge(a)
	b.Tick("b")
	if a.Compare(b) != Before {
		t.Fatal("after merge")
	}
}

func TestNoAllocs(t *testing.T) {
	c, _ := New(newPhys(base, 1000), Options{})
	r := Timestamp{WallUS: base / 1000, Logical: 1}
	if a := testing.AllocsPerRun(1000, func() { _, _ = c.Now(); _, _ = c.Update(r) }); a != 0 {
		t.Fatalf("%v allocations", a)
	}
}

type wallPhys struct{}

func (wallPhys) Now() (truetime.Interval, error) {
	n := time.Now().UnixNano()
	return truetime.Interval{EarliestNS: n - 1000, LatestNS: n + 1000, Status: truetime.Synchronized}, nil
}

func BenchmarkTimeNow(b *testing.B) {
	for b.Loop() {
		_ = time.Now()
	}
}

func BenchmarkHLCNow(b *testing.B) {
	c, _ := New(wallPhys{}, Options{})
	b.ReportAllocs()
	for b.Loop() {
		_, _ = c.Now()
	}
}

func BenchmarkHLCUpdate(b *testing.B) {
	c, _ := New(wallPhys{}, Options{})
	r := Timestamp{WallUS: time.Now().UnixMicro(), Logical: 2}
	b.ReportAllocs()
	for b.Loop() {
		_, _ = c.Update(r)
	}
}

// Parse takes text from other nodes and from the command line: it never
// panics, and what it accepts round-trips through String and Encode.
func FuzzParse(f *testing.F) {
	f.Add("2026-11-25T06:30:00.000000Z+3")
	f.Add(Timestamp{WallUS: 1, Logical: 4095}.String())
	f.Add("2026-11-25T06:30:00Z+")
	f.Add("+5")
	f.Add("9999-99-99T99:99:99.999999Z+99999")
	f.Fuzz(func(t *testing.T, s string) {
		ts, err := Parse(s)
		if err != nil {
			return
		}
		back, err := Parse(ts.String())
		if err != nil || back != ts || Decode(ts.Encode()) != ts {
			t.Fatalf("%q → %v → %q → %v %v", s, ts, ts.String(), back, err)
		}
	})
}
