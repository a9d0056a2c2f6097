package hlc

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"pgregory.net/rapid"

	"github.com/meridiantime/meridian/truetime"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// phys is a settable TrueTime: the reading nowNS ± epsNS.
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
	return truetime.Interval{EarliestNS: max(n-p.epsNS, 0), LatestNS: n + min(p.epsNS, MaxWallNS-n), Status: truetime.Synchronized}, nil
}

const base = int64(1_795_000_000_000_000_000)

func newPhys(ns, eps int64) *phys {
	p := &phys{epsNS: eps}
	p.nowNS.Store(ns)
	return p
}

func TestAlgorithmTable(t *testing.T) {
	p := newPhys(base, 0) // pt = base
	c, _ := New(p, Options{MaxOffsetFloor: 10 * time.Millisecond})
	pt := base
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
		{"pt passes l", func() (Timestamp, error) { p.nowNS.Add(5_000_000); return c.Now() }, Timestamp{pt + 5_000_000, 0}},
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
		a := Timestamp{rapid.Int64Range(0, MaxWallNS).Draw(t, "a"), rapid.Uint32().Draw(t, "ac")}
		b := Timestamp{rapid.Int64Range(0, MaxWallNS).Draw(t, "b"), rapid.Uint32().Draw(t, "bc")}
		if rapid.Bool().Draw(t, "same wall") {
			b.WallNS = a.WallNS
		}
		lexLess := a.WallNS < b.WallNS || (a.WallNS == b.WallNS && a.Logical < b.Logical)
		ka, kb := a.Key(), b.Key()
		if a.Less(b) != lexLess || (bytes.Compare(ka[:], kb[:]) < 0) != lexLess || (a.Compare(b) == 0) != (a == b) {
			t.Fatalf("order: %v %v", a, b)
		}
		if back, err := FromKey(ka[:]); err != nil || back != a {
			t.Fatalf("key round trip %v → %x → %v %v", a, ka, back, err)
		}
		if p, err := Parse(a.String()); err != nil || p != a {
			t.Fatalf("string round trip %v → %q → %v %v", a, a.String(), p, err)
		}
	})
	for _, bad := range []string{"", "x+1", "2026-11-25T03:00:00.123456Z", "2026-11-25T03:00:00.123456Z+4294967296", "2026-11-25T03:00:00.123456Z+-1",
		"2026-11-25T03:00:00.123456Z+01", "1969-12-31T23:59:59.999999999Z+0", "2262-04-11T23:47:16.854775808Z+0", "2300-01-01T00:00:00Z+0"} {
		if ts, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted: %v", bad, ts)
		}
	}
	if _, err := FromKey(make([]byte, 11)); err == nil {
		t.Error("FromKey accepted 11 bytes")
	}
	if _, err := FromKey(bytes.Repeat([]byte{0xff}, KeySize)); err == nil {
		t.Error("FromKey accepted a wall time beyond int64")
	}
}

// The range reaches 2262-04-11T23:47:16.854775807Z: beyond 2041-05-10
// (where the old 51-bit µs encoding ended) and 2200, timestamps are
// issued, merged by a peer, keyed and printed; at the very end the counter
// still ticks and its overflow is an error, never a wrap to 1970.
func TestRangeEdges(t *testing.T) {
	for _, when := range []string{"2041-05-10T00:00:00Z", "2041-05-11T00:00:00Z", "2112-01-01T00:00:00Z", "2200-01-01T00:00:00Z", "2262-04-11T23:47:16.854Z"} {
		tm, err := time.Parse(time.RFC3339Nano, when)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := New(newPhys(tm.UnixNano(), 100_000), Options{})
		b, _ := New(newPhys(tm.UnixNano()+50_000, 100_000), Options{})
		ta, err := a.Now()
		if err != nil {
			t.Fatalf("%s: Now: %v", when, err)
		}
		tb, err := b.Update(ta)
		if err != nil || !ta.Less(tb) {
			t.Fatalf("%s: a peer refuses or misorders %v: %v %v", when, ta, tb, err)
		}
		if got := time.Unix(0, ta.WallNS).UTC().Year(); got != tm.Year() {
			t.Fatalf("%s: issued %v (year %d)", when, ta, got)
		}
		if p, err := Parse(ta.String()); err != nil || p != ta {
			t.Fatalf("%s: %q does not round-trip: %v %v", when, ta.String(), p, err)
		}
	}
	last := Timestamp{WallNS: MaxWallNS, Logical: MaxLogical}
	if s := last.String(); s != "2262-04-11T23:47:16.854775807Z+4294967295" {
		t.Fatalf("last timestamp prints %q", s)
	}
	if p, err := Parse(last.String()); err != nil || p != last {
		t.Fatalf("last timestamp: %v %v", p, err)
	}
	k0, k1 := Timestamp{}.Key(), last.Key()
	if bytes.Compare(k0[:], k1[:]) >= 0 {
		t.Fatal("key order at the range's ends")
	}
	// At the end: physical time at MaxWallNS, counter one below full.
	c, _ := New(newPhys(MaxWallNS, 0), Options{})
	c.last = Timestamp{WallNS: MaxWallNS, Logical: MaxLogical - 1}
	if ts, err := c.Now(); err != nil || ts != last {
		t.Fatalf("last tick: %v %v", ts, err)
	}
	if ts, err := c.Now(); !errors.Is(err, ErrExhausted) {
		t.Fatalf("past the end: %v %v, want ErrExhausted", ts, err)
	}
	if _, err := c.Update(Timestamp{WallNS: -1}); !errors.Is(err, ErrInvalidTimestamp) {
		t.Fatalf("negative remote: %v", err)
	}
}

func TestRejectsRemoteTooFarAhead(t *testing.T) {
	p := newPhys(base, 200_000) // ε = 200 µs → max offset max(1 ms, 2·200 µs) = 1 ms
	c, _ := New(p, Options{})
	pt := base + 200_000
	if _, err := c.Update(Timestamp{pt + 1_000_000, 0}); err != nil {
		t.Fatalf("just inside the max offset: %v", err)
	}
	_, err := c.Update(Timestamp{pt + 1_000_001, 0})
	var tf *RemoteTooFarAheadError
	if !errors.Is(err, ErrRemoteTooFarAhead) || !errors.As(err, &tf) || tf.MaxOffsetNS != 1_000_000 || c.Rejected() != 1 {
		t.Fatalf("just outside: %v (rejected %d)", err, c.Rejected())
	}
	// The max offset follows ε: with ε = 2 ms it is 4 ms.
	p2 := newPhys(base, 2_000_000)
	c2, _ := New(p2, Options{})
	if _, err := c2.Update(Timestamp{base + 2_000_000 + 4_000_000, 0}); err != nil {
		t.Fatalf("inside 2ε: %v", err)
	}
	if _, err := c2.Update(Timestamp{base + 2_000_000 + 4_000_001, 0}); !errors.Is(err, ErrRemoteTooFarAhead) {
		t.Fatalf("just outside 2ε: %v", err)
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
	c.last = Timestamp{WallNS: base, Logical: MaxLogical - 2}
	var prev Timestamp
	for i := 0; i < 5; i++ {
		ts, err := c.Now()
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 && !prev.Less(ts) {
			t.Fatalf("not increasing at %d: %v then %v", i, prev, ts)
		}
		prev = ts
	}
	if want := (Timestamp{WallNS: base + 1, Logical: 2}); prev != want {
		t.Fatalf("after the counter filled: %v, want %v (l moves 1 ns on)", prev, want)
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
			pt := nd.p.nowNS.Load()
			// Paper's bound: l − pt ≤ ε, ε = the largest difference between
			// two nodes' physical clocks (here 2·300 µs).
			if ts.WallNS-pt > 2*skewNS {
				t.Fatalf("l − pt = %d ns exceeds the skew bound", ts.WallNS-pt)
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
	if persist {
		// Physical time is 10 s behind the bound: no timestamp yet, and the
		// error says how long to wait.
		_, err := c2.Now()
		var rw *RestartWaitError
		if !errors.As(err, &rw) || !errors.Is(err, ErrRestarting) || rw.BoundNS != cp.durable || rw.Remaining() != time.Duration(cp.durable-p.nowNS.Load()+1) {
			t.Fatalf("before physical time passes the bound: %v", err)
		}
		if _, err := c2.Update(Timestamp{WallNS: p.nowNS.Load() - 1}); !errors.Is(err, ErrRestarting) {
			t.Fatalf("Update before physical time passes the bound: %v", err)
		}
		p.nowNS.Add(int64(rw.Remaining()) - 1)
		if _, err := c2.Now(); !errors.Is(err, ErrRestarting) {
			t.Fatalf("1 ns before the bound: %v", err)
		}
		p.nowNS.Add(1)
	}
	if after, err = c2.Now(); err != nil {
		t.Fatal(err)
	}
	if persist && after != (Timestamp{WallNS: p.nowNS.Load()}) {
		t.Fatalf("first timestamp after the wait is %v, want physical time %d exactly", after, p.nowNS.Load())
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
					ts, err = c.Update(Timestamp{WallNS: p.nowNS.Load(), Logical: 3})
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
	r := Timestamp{WallNS: base, Logical: 1}
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
	r := Timestamp{WallNS: time.Now().UnixNano(), Logical: 2}
	b.ReportAllocs()
	for b.Loop() {
		_, _ = c.Update(r)
	}
}

// Parse takes text from other nodes and from the command line: it never
// panics, and what it accepts round-trips through String and Encode.
func FuzzParse(f *testing.F) {
	f.Add("2026-11-25T06:30:00.000000Z+3")
	f.Add(Timestamp{WallNS: 1, Logical: 4095}.String())
	f.Add(Timestamp{WallNS: MaxWallNS, Logical: MaxLogical}.String())
	f.Add("2026-11-25T06:30:00Z+")
	f.Add("+5")
	f.Add("9999-99-99T99:99:99.999999Z+99999")
	f.Fuzz(func(t *testing.T, s string) {
		ts, err := Parse(s)
		if err != nil {
			return
		}
		back, err := Parse(ts.String())
		k := ts.Key()
		fk, kerr := FromKey(k[:])
		if err != nil || back != ts || kerr != nil || fk != ts || !ts.Valid() {
			t.Fatalf("%q → %v → %q → %v %v", s, ts, ts.String(), back, err)
		}
	})
}
