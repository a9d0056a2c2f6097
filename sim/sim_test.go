package sim

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/meridiantime/meridian/discipline"
)

func loadMatrix(t *testing.T) []Scenario {
	t.Helper()
	scs, err := LoadDir("scenarios")
	if err != nil {
		t.Fatal(err)
	}
	if len(scs) < 12 {
		t.Fatalf("matrix has %d scenarios, want ≥ 12", len(scs))
	}
	return scs
}

// The promise: zero containment violations on every read of every scenario,
// and every scenario's own expectations met.
func TestMatrixContainment(t *testing.T) {
	scs := loadMatrix(t)
	rs, err := RunAll(scs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", FormatTable(rs))
	total := 0
	for _, r := range rs {
		total += r.Reads
		if r.Violations > 0 {
			t.Errorf("%s: %d containment violations", r.Name, r.Violations)
		}
		for _, f := range r.Failures {
			t.Errorf("%s: %s", r.Name, f)
		}
	}
	if total < 1_000_000 {
		t.Errorf("only %d checked reads, want ≥ 10⁶", total)
	}
}

// Negative controls: the same matrix with a bound term removed must be
// caught by the containment check, or the check proves nothing.
func TestNegativeControlPathDelay(t *testing.T) {
	rs, err := RunAll(loadMatrix(t), Options{Ablation: discipline.Ablation{OmitPathDelay: true}})
	if err != nil {
		t.Fatal(err)
	}
	if v := violations(rs, "asymmetry-1ms"); v == 0 {
		t.Fatalf("without δ/2 the 1 ms asymmetry must violate containment\n%s", FormatTable(rs))
	}
}

func TestNegativeControlDrift(t *testing.T) {
	rs, err := RunAll(loadMatrix(t), Options{Ablation: discipline.Ablation{OmitDrift: true}})
	if err != nil {
		t.Fatal(err)
	}
	if v := violations(rs, "outage-holdover"); v == 0 {
		t.Fatalf("without the drift term holdover must violate containment\n%s", FormatTable(rs))
	}
}

// Without the floor a lone reference stepping back takes TrueTime
// backwards; with it, never (TestMatrixContainment).
func TestNegativeControlFloor(t *testing.T) {
	sc := scenarioNamed(t, "lone-reference-back-3s")
	sc.DurationS = 900
	r, err := Run(sc, Options{Ablation: discipline.Ablation{OmitFloor: true}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Backwards == 0 {
		t.Fatalf("without the floor a reference stepping back must take TrueTime backwards\n%s", FormatTable([]Result{r}))
	}
	r, err = Run(sc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Backwards != 0 || r.FloorRaises == 0 {
		t.Fatalf("with the floor: %d backwards reads, %d floor raises\n%s", r.Backwards, r.FloorRaises, FormatTable([]Result{r}))
	}
}

// A bug on the wire or in the server shows up in the simulator: replies
// whose timestamps a buggy server writes 2 ms late are caught as
// containment violations.
func TestWireBugIsCaught(t *testing.T) {
	sc := scenarioNamed(t, "one-liar")
	sc.DurationS = 300
	sc.Expect = Expect{}
	late := func(_ int, b []byte) {
		// receive and transmit timestamps (bytes 32..47) 2 ms late
		for _, off := range []int{32, 40} {
			v := binary.BigEndian.Uint64(b[off:])
			binary.BigEndian.PutUint64(b[off:], v+8_589_935) // 2 ms in 2⁻³² s units
		}
	}
	r, err := Run(sc, Options{MutateReply: late})
	if err != nil {
		t.Fatal(err)
	}
	if r.Violations == 0 {
		t.Fatalf("a server that stamps its transmit 2 ms late must be caught\n%s", FormatTable([]Result{r}))
	}
	r, err = Run(sc, Options{})
	if err != nil || r.Violations != 0 {
		t.Fatalf("unmutated control: %v\n%s", err, FormatTable([]Result{r}))
	}
}

// Suspends: with the checks every read after a resume is refused until a
// new sample (0 violations, TestMatrixContainment); without them the reads
// right after the resume miss true time by the sleep.
func TestNegativeControlSuspend(t *testing.T) {
	for _, name := range []string{"suspend-3s", "suspend-10s-and-1h"} {
		sc := scenarioNamed(t, name)
		r, err := Run(sc, Options{NoDisruptionCheck: true})
		if err != nil {
			t.Fatal(err)
		}
		if r.Violations == 0 {
			t.Errorf("%s: without the suspend checks, reads after the resume must miss true time\n%s", name, FormatTable([]Result{r}))
		}
	}
}

// scenarioNamed is the matrix scenario called name.
func scenarioNamed(t *testing.T, name string) Scenario {
	t.Helper()
	for _, s := range loadMatrix(t) {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no scenario %q in sim/scenarios", name)
	return Scenario{}
}

func violations(rs []Result, name string) int {
	for _, r := range rs {
		if r.Name == name {
			return r.Violations
		}
	}
	return 0
}

func TestSameSeedSameReport(t *testing.T) {
	scs := loadMatrix(t)[:3]
	for i := range scs {
		scs[i].DurationS = 600
	}
	a, err := RunAll(scs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := RunAll(scs, Options{})
	if FormatTable(a) != FormatTable(b) {
		t.Fatalf("reports differ:\n%s\n%s", FormatTable(a), FormatTable(b))
	}
	scs[0].Seed++
	scs[0].Host.WanderPPBPerSqrtS = 5
	scs[0].Sources[0].JitterUS = 300
	c, _ := RunAll(scs, Options{})
	if FormatTable(a) == FormatTable(c) {
		t.Fatal("a different seed and link gave the same report")
	}
}

func TestParseScenarioErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"name: x\nbogus: 1\n", "bogus"},
		{"name: x\nsources: [{name: a, bogus: 1}]\n", "bogus"},
		{"duration_s: 10\n", "name: must be set"},
		{"name: x\nduration_s: -1\n", "duration_s"},
		{"name: x\nsources: [{name: a, loss_pct: 100}]\n", "sources[0].loss_pct"},
		{"name: x\nsources: [{name: a, delay_us: 100, asymmetry_us: 500}]\n", "sources[0].asymmetry_us"},
		{"name: x\nsources: [{name: a}, {name: a}]\n", "duplicate"},
		{"name: x\ndiscipline: {servo: fancy}\n", "discipline.servo"},
		{"name: x\nsources: [{name: a, stratum: 16}]\n", "stratum"},
		{"name: x\nsources: [{name: a, return_jitter_us: -1}]\n", "sources[0].return_jitter_us"},
		{"name: x\nsources: [{name: a, return_jitter_us: .nan}]\n", "sources[0].return_jitter_us"},
		{"name: x\nsources: [{name: a, jitter_shape: -1}]\n", "sources[0].jitter_shape"},
		{"name: x\nsources: [{name: a, jitter_shape: 17}]\n", "sources[0].jitter_shape"},
	} {
		_, err := ParseScenario([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want mention of %q", tc.yaml, err, tc.want)
		}
	}
}

func TestScenarioDefaultsApply(t *testing.T) {
	sc, err := ParseScenario([]byte("name: x\nsources: [{name: a, jitter_us: 5}, {delay_us: 900}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	d := DefaultSource()
	if sc.Sources[0].PollS != d.PollS || sc.Sources[0].DelayUS != d.DelayUS || sc.Sources[0].JitterUS != 5 {
		t.Fatalf("source 0 %+v", sc.Sources[0])
	}
	if sc.Sources[1].Name != "src1" || sc.Sources[1].DelayUS != 900 || sc.Sources[1].Stratum != 1 {
		t.Fatalf("source 1 %+v", sc.Sources[1])
	}
	if sc.DurationS != Defaults().DurationS {
		t.Fatalf("duration %v", sc.DurationS)
	}
}

func TestParseScenarioRefusesNonFinite(t *testing.T) {
	for _, in := range []string{
		"name: x\nduration_s: .nan\n",
		"name: x\nhost: {offset_ms: .inf}\n",
		"name: x\nsources: [{delay_us: .nan}]\n",
		"name: x\nsources: [{errors: [{from_s: 1, offset_ms: -.inf}]}]\n",
	} {
		if _, err := ParseScenario([]byte(in)); err == nil || !strings.Contains(err.Error(), "finite") {
			t.Errorf("%q: want a finite-number error, got %v", in, err)
		}
	}
}

// TestReturnJitterIsOneSided checks the link's draws: with return_jitter_us
// set, forward trips queue with jitter_us and return trips with
// return_jitter_us (means within 10 % over 20,000 draws), and every trip is
// at least its base delay.
func TestReturnJitterIsOneSided(t *testing.T) {
	ret := 400.0
	sc := Scenario{Seed: 1, Sources: []Source{{Name: "a", DelayUS: 2000, AsymmetryUS: 200, JitterUS: 20, ReturnJitterUS: &ret}}}
	r := &runner{sc: sc, now: startTrueNS, rngs: []*rand.Rand{rand.New(rand.NewPCG(1, 1))}}
	const n = 20000
	for _, tc := range []struct {
		forward        bool
		baseUS, meanUS float64
	}{{true, 1100, 20}, {false, 900, 400}} {
		var sum float64
		for range n {
			d, ok := r.link(0, tc.forward)
			if !ok {
				t.Fatal("a lossless link lost a packet")
			}
			us := float64(d) / 1e3
			if us < tc.baseUS-0.001 {
				t.Fatalf("forward=%v: a trip of %v µs is shorter than the base %v µs", tc.forward, us, tc.baseUS)
			}
			sum += us - tc.baseUS
		}
		if got := sum / n; math.Abs(got-tc.meanUS) > 0.1*tc.meanUS {
			t.Errorf("forward=%v: mean queueing %.1f µs, want %v µs", tc.forward, got, tc.meanUS)
		}
	}
}

// With jitter_shape k the queueing is Erlang-k of the same mean: the mean
// holds (within 10 % over 20,000 draws) and the floor is sparse — the
// share of trips queued less than a quarter of the mean is ~2 % for k = 4
// (1 − e^−1·(1 + 1 + 1/2 + 1/6)), against ~22 % for the exponential.
func TestJitterShapeSparseFloor(t *testing.T) {
	for _, tc := range []struct {
		shape  int
		lo, hi float64 // share below mean/4
	}{{0, 0.19, 0.25}, {1, 0.19, 0.25}, {4, 0.01, 0.03}} {
		sc := Scenario{Seed: 1, Sources: []Source{{Name: "a", DelayUS: 2000, JitterUS: 100, JitterShape: tc.shape}}}
		r := &runner{sc: sc, now: startTrueNS, rngs: []*rand.Rand{rand.New(rand.NewPCG(1, 1))}, trace: []int{-1}}
		const n = 20000
		var sum float64
		below := 0
		for range n {
			d, ok := r.link(0, true)
			if !ok {
				t.Fatal("a lossless link lost a packet")
			}
			q := float64(d)/1e3 - 1000
			if q < -0.001 {
				t.Fatalf("shape %d: a trip %v µs below its base", tc.shape, q)
			}
			sum += q
			if q < 25 {
				below++
			}
		}
		if m := sum / n; math.Abs(m-100) > 10 {
			t.Errorf("shape %d: mean queueing %.1f µs, want 100", tc.shape, m)
		}
		if f := float64(below) / n; f < tc.lo || f > tc.hi {
			t.Errorf("shape %d: %.3f of trips queued < 25 µs, want %v..%v", tc.shape, f, tc.lo, tc.hi)
		}
	}
}

// A trace replaces the path's delays: each exchange takes the next pair in
// turn (request on the way out, reply on the way back), from the top again
// at the end; a lost request takes no pair.
func TestTraceReplaysDelays(t *testing.T) {
	rows, err := ParseTrace([]byte("# request_us reply_us\n1000 900\n\n1100.5 950 # comment\n"))
	if err != nil {
		t.Fatal(err)
	}
	sc := Scenario{Seed: 1, Sources: []Source{{Name: "a", DelayUS: 5000, JitterUS: 300, TraceRows: rows}}}
	r := &runner{sc: sc, now: startTrueNS, rngs: []*rand.Rand{rand.New(rand.NewPCG(1, 1))}, trace: []int{-1}}
	want := [][2]int64{{1000e3, 900e3}, {1100.5e3, 950e3}, {1000e3, 900e3}}
	for i, w := range want {
		f, ok1 := r.link(0, true)
		b, ok2 := r.link(0, false)
		if !ok1 || !ok2 || f != w[0] || b != w[1] {
			t.Fatalf("exchange %d: %d/%d ns (%v %v), want %d/%d", i, f, b, ok1, ok2, w[0], w[1])
		}
	}
	lossy := Scenario{Seed: 1, Sources: []Source{{Name: "a", LossPct: 50, TraceRows: rows}}}
	r = &runner{sc: lossy, now: startTrueNS, rngs: []*rand.Rand{rand.New(rand.NewPCG(1, 1))}, trace: []int{-1}}
	next := 0
	for range 200 {
		if f, ok := r.link(0, true); ok {
			if f != int64(rows[next][0]*1e3) {
				t.Fatalf("a request after a loss took %d ns, want row %d (%v µs)", f, next, rows[next][0])
			}
			next = (next + 1) % len(rows)
		}
	}
}

// A scenario whose trace was never loaded (parsed alone, not through
// LoadDir) is refused rather than run on its delay_us.
func TestUnloadedTraceRefused(t *testing.T) {
	sc, err := ParseScenario([]byte("name: x\nduration_s: 10\nsources: [{name: a, trace: t.trace}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Run(sc, Options{}); err == nil || !strings.Contains(err.Error(), "sources[0].trace") {
		t.Fatalf("an unloaded trace ran: %v", err)
	}
}

func TestParseTraceErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "no delays"},
		{"# only a comment\n", "no delays"},
		{"1000\n", "line 1: want two delays"},
		{"1000 900\n1000 900 5\n", "line 2: want two delays"},
		{"1000 -1\n", "line 1: delay \"-1\""},
		{"1000 NaN\n", "line 1: delay \"NaN\""},
		{"1000 +Inf\n", "line 1: delay \"+Inf\""},
		{"1000 9x\n", "line 1: delay \"9x\""},
	} {
		if _, err := ParseTrace([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want mention of %q", tc.in, err, tc.want)
		}
	}
}
