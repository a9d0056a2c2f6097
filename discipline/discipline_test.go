package discipline

import (
	"math"
	"strings"
	"testing"

	"github.com/meridiantime/meridian/truetime"
)

const t0 = int64(1_780_000_000) * 1e9

// exchange builds a sample for a local clock that reads true time plus
// offsetNS, against an honest source, with the given one-way delays.
func exchange(trueSend, offsetNS, fwdNS, backNS int64) Sample {
	return Sample{
		T1NS:    trueSend + offsetNS,
		T2NS:    trueSend + fwdNS,
		T3NS:    trueSend + fwdNS + 10_000,
		T4NS:    trueSend + fwdNS + 10_000 + backNS + offsetNS,
		Stratum: 1, RootDispersionNS: 1000,
	}
}

func TestUnsynchronizedWithoutSamples(t *testing.T) {
	d, err := New(DefaultConfig(), t0)
	if err != nil {
		t.Fatal(err)
	}
	u := d.Update(t0 + 1e9)
	if u.Estimate.Status != truetime.Unsynchronized || u.Correction != (Correction{}) {
		t.Fatalf("no samples: %+v", u)
	}
}

func TestOneSampleBoundsTruth(t *testing.T) {
	const off = 5_000_000 // clock 5 ms ahead
	d, _ := New(DefaultConfig(), t0+off)
	// 300 µs out, 100 µs back: asymmetric, the bound must still hold.
	if err := d.AddSample("a", exchange(t0+1e9, off, 300_000, 100_000)); err != nil {
		t.Fatal(err)
	}
	trueNow := t0 + 1e9 + 500_000
	u := d.Update(trueNow + off)
	if u.Estimate.Status != truetime.Synchronized || u.Correction.StepNS != 0 {
		t.Fatalf("want synchronized without a step: %+v", u)
	}
	iv := truetime.Bound(trueNow+off, u.Estimate)
	if iv.EarliestNS > trueNow || iv.LatestNS < trueNow {
		t.Fatalf("interval %+v misses true time %d", iv, trueNow)
	}
	if eps := iv.LatestNS - iv.EarliestNS; eps > 2*(200_000+2_000) {
		t.Fatalf("interval width %d ns, want about δ = 400 µs", eps)
	}
	if !u.Correction.SetFreq || u.Correction.FreqPPB >= 0 {
		t.Fatalf("clock is ahead: the servo must slow it, got %+v", u.Correction)
	}
	if len(u.Sources) != 1 || u.Sources[0].State != SourceSelected || math.Abs(u.Sources[0].OffsetNS-(off-100_000)) > 1 {
		t.Fatalf("source report %+v", u.Sources)
	}
}

func TestLargeOffsetSteps(t *testing.T) {
	const off = -2_000_000_000
	d, _ := New(DefaultConfig(), t0+off)
	_ = d.AddSample("a", exchange(t0+1e9, off, 100_000, 100_000))
	u := d.Update(t0 + 1e9 + 300_000 + off)
	if math.Abs(float64(u.Correction.StepNS+off)) > 1000 {
		t.Fatalf("step %d, want about %d", u.Correction.StepNS, -off)
	}
	// After the step the reading is true time: the estimate says so.
	trueNow := t0 + 1e9 + 300_000
	iv := truetime.Bound(trueNow, u.Estimate)
	if iv.EarliestNS > trueNow || iv.LatestNS < trueNow {
		t.Fatalf("post-step interval %+v misses %d", iv, trueNow)
	}
}

func TestStepLimitAndThreshold(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StepThresholdNS = 0 // never step
	d, _ := New(cfg, t0+1e9)
	_ = d.AddSample("a", exchange(t0+1e9, 1e9, 100_000, 100_000))
	if u := d.Update(t0 + 2e9 + 1e9); u.Correction.StepNS != 0 {
		t.Fatalf("step threshold 0 must never step, got %d", u.Correction.StepNS)
	}
}

func TestFalsetickerRejected(t *testing.T) {
	d, _ := New(DefaultConfig(), t0)
	_ = d.AddSample("a", exchange(t0+1e9, 0, 100_000, 100_000))
	_ = d.AddSample("b", exchange(t0+1e9, 0, 150_000, 150_000))
	liar := exchange(t0+1e9, 0, 100_000, 100_000)
	liar.T2NS += 100e6
	liar.T3NS += 100e6
	_ = d.AddSample("liar", liar)
	u := d.Update(t0 + 1e9 + 400_000)
	states := map[string]SourceState{}
	for _, s := range u.Sources {
		states[s.Name] = s.State
	}
	if states["a"] != SourceSelected || states["b"] != SourceSelected || states["liar"] != SourceFalseticker {
		t.Fatalf("states %v", states)
	}
	iv := truetime.Bound(t0+1e9+400_000, u.Estimate)
	if iv.EarliestNS > t0+1e9+400_000 || iv.LatestNS < t0+1e9+400_000 {
		t.Fatalf("interval %+v follows the liar", iv)
	}
}

func TestMinSources(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MinSources = 2
	d, _ := New(cfg, t0)
	_ = d.AddSample("a", exchange(t0+1e9, 0, 100_000, 100_000))
	u := d.Update(t0 + 1e9 + 400_000)
	if u.Estimate.Status != truetime.Unsynchronized || u.Sources[0].State != SourceTooFew {
		t.Fatalf("one source with min_sources 2: %+v", u)
	}
}

func TestBadSamples(t *testing.T) {
	d, _ := New(DefaultConfig(), t0)
	good := exchange(t0+1e9, 0, 100_000, 100_000)
	for name, mut := range map[string]func(*Sample){
		"t4 before t1": func(s *Sample) { s.T4NS = s.T1NS - 1 },
		"t3 before t2": func(s *Sample) { s.T3NS = s.T2NS - 1 },
		// The response first, but a span longer than any exchange.
		"response first, 11 s": func(s *Sample) { s.T3NS, s.T4NS = s.T2NS-11e9, s.T1NS-11e9 },
		"negative delay":       func(s *Sample) { s.T3NS += 1e9 },
		"stratum 0":            func(s *Sample) { s.Stratum = 0 },
		"stratum 16":           func(s *Sample) { s.Stratum = 16 },
		"negative root":        func(s *Sample) { s.RootDispersionNS = -1 },
	} {
		s := good
		mut(&s)
		if err := d.AddSample("a", s); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := d.AddSample("a", good); err != nil {
		t.Fatal(err)
	}
	if err := d.AddSample("a", good); err == nil || !strings.Contains(err.Error(), "not newer") {
		t.Fatalf("replayed sample: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for name, mut := range map[string]func(*Config){
		"min sources":  func(c *Config) { c.MinSources = -1 },
		"drift":        func(c *Config) { c.DriftBoundPPB = -1 },
		"initial freq": func(c *Config) { c.InitialFreqPPB = 600_000 },
		"nan":          func(c *Config) { c.InitialFreqPPB = math.NaN() },
		"servo":        func(c *Config) { c.Servo = 7 },
		"regression":   func(c *Config) { c.RegressionLen = 1 },
	} {
		cfg := DefaultConfig()
		mut(&cfg)
		if _, err := New(cfg, t0); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// An unreachable source leaves selection (its last sample no longer
// speaks, however it has aged) and comes back when marked reachable; the
// others carry the estimate meanwhile. Marking a source the discipline
// has never heard of only names it.
func TestUnreachableSourceLeavesSelection(t *testing.T) {
	d, _ := New(DefaultConfig(), t0)
	for _, n := range []string{"a", "b", "c"} {
		_ = d.AddSample(n, exchange(t0+1e9, 0, 100_000, 100_000))
	}
	states := func(u Update) map[string]SourceState {
		m := map[string]SourceState{}
		for _, s := range u.Sources {
			m[s.Name] = s.State
		}
		return m
	}
	now := t0 + 1e9 + 400_000
	if st := states(d.Update(now)); st["b"] != SourceSelected {
		t.Fatalf("states %v", st)
	}
	d.SetUnreachable("b", true)
	d.SetUnreachable("never-heard", true)
	u := d.Update(now + 1e6)
	st := states(u)
	if st["b"] != SourceUnreachable || st["a"] != SourceSelected || st["c"] != SourceSelected || st["never-heard"] != SourceUnreachable {
		t.Fatalf("b unreachable: states %v", st)
	}
	if u.Estimate.Status != truetime.Synchronized {
		t.Fatalf("a and c should carry the estimate: %v", u.Estimate.Status)
	}
	if iv := truetime.Bound(now+1e6, u.Estimate); iv.EarliestNS > now+1e6 || iv.LatestNS < now+1e6 {
		t.Fatalf("interval %+v misses true time", iv)
	}
	d.SetUnreachable("b", false)
	if st := states(d.Update(now + 2e6)); st["b"] != SourceSelected {
		t.Fatalf("b reachable again: states %v", st)
	}
}

// Per-source options as chrony's: noselect is measured and reported but
// never selected; a source beyond its max_distance is not selectable;
// prefer makes the estimate follow the preferred source within the hull
// that all selected sources agree on.
func TestSourceOptions(t *testing.T) {
	run := func(opts map[string]SourceOptions) Update {
		d, _ := New(DefaultConfig(), t0)
		for n, o := range opts {
			d.SetSourceOptions(n, o)
		}
		// a: 200 µs delay, centred on truth; b: 2 ms delay, 300 µs off
		// (asymmetric path), both agree.
		_ = d.AddSample("a", exchange(t0+1e9, 0, 100_000, 100_000))
		_ = d.AddSample("b", exchange(t0+1e9, 0, 1_300_000, 700_000))
		return d.Update(t0 + 1e9 + 3e6)
	}
	state := func(u Update, n string) SourceState {
		for _, s := range u.Sources {
			if s.Name == n {
				return s.State
			}
		}
		return -1
	}
	u := run(nil)
	if state(u, "a") != SourceSelected || state(u, "b") != SourceSelected {
		t.Fatalf("both selected: %v", u.Sources)
	}
	base := u.Estimate.OffsetNS
	u = run(map[string]SourceOptions{"b": {NoSelect: true}})
	if state(u, "b") != SourceNoSelect || state(u, "a") != SourceSelected {
		t.Fatalf("noselect: %v", u.Sources)
	}
	u = run(map[string]SourceOptions{"b": {MaxDistanceNS: 500_000}})
	if state(u, "b") != SourceTooFar || state(u, "a") != SourceSelected {
		t.Fatalf("max_distance: %v", u.Sources)
	}
	u = run(map[string]SourceOptions{"b": {Prefer: true}})
	if state(u, "b") != SourceSelected || state(u, "a") != SourceSelected {
		t.Fatalf("prefer: %v", u.Sources)
	}
	if u.Estimate.OffsetNS == base {
		t.Fatalf("prefer b: estimate %v unchanged from %v", u.Estimate.OffsetNS, base)
	}
	iv := truetime.Bound(t0+1e9+3e6, u.Estimate)
	if iv.EarliestNS > t0+1e9+3e6 || iv.LatestNS < t0+1e9+3e6 {
		t.Fatalf("prefer: interval %+v misses true time", iv)
	}
}

// A PTP-style exchange pairs a Delay_Req with the next Sync: the server's
// span t3 − t2 is up to a Sync interval, and the local clock's rate error
// over that span shortens the measured δ (here a clock 400 ppm slow, within
// the oscillator tolerance, and 1 s between the Delay_Req's arrival and the
// Sync's departure: δ is measured 400 µs short of its true 1010 µs). With
// the asymmetry nearly all of δ (10 µs out, 1000 µs back), δ/2 alone misses
// the truth by ~200 µs: the bound must cover the rate over the server's span.
func TestLongServerSpanBoundsTruth(t *testing.T) {
	const f = -400e-6
	local := func(trueNS int64) int64 { return trueNS + int64(f*float64(trueNS-t0)) }
	d, err := New(DefaultConfig(), local(t0))
	if err != nil {
		t.Fatal(err)
	}
	tau1 := t0 + 2e9
	tau2 := tau1 + 10_000
	tau3 := tau2 + 1e9
	tau4 := tau3 + 1_000_000
	s := Sample{T1NS: local(tau1), T2NS: tau2, T3NS: tau3, T4NS: local(tau4), Stratum: 1}
	if got, want := s.DelayNS(), int64(1_010_000-400_000); math.Abs(float64(got-want)) > 1000 {
		t.Fatalf("measured δ %d ns, want about %d (the setup is wrong)", got, want)
	}
	if err := d.AddSample("gm", s); err != nil {
		t.Fatal(err)
	}
	trueNow := tau4 + 1_000_000
	u := d.Update(local(trueNow))
	if u.Estimate.Status != truetime.Synchronized {
		t.Fatalf("want synchronized: %+v", u.Estimate)
	}
	iv := truetime.Bound(local(trueNow), u.Estimate)
	if iv.EarliestNS > trueNow || iv.LatestNS < trueNow {
		t.Fatalf("interval [%d, %d] misses true time %d by %d ns", iv.EarliestNS, iv.LatestNS, trueNow,
			max(iv.EarliestNS-trueNow, trueNow-iv.LatestNS))
	}
}

// PTP's order: the response (Sync) comes first and the request is sent
// behind it, so t4 ≤ t1 and t3 ≤ t2. The sample is accepted and its θ and
// δ are the offset and the round trip, as in NTP's order.
func TestResponseFirstAccepted(t *testing.T) {
	const off, fwd, back, wait = 3_000_000, 40_000, 60_000, 5_000_000
	// True times: the Sync leaves the server at T, arrives at T + back; the
	// request leaves wait later and arrives fwd after that.
	T := t0 + 1e9
	s := Sample{
		T3NS: T, T4NS: T + back + off,
		T1NS: T + back + wait + off, T2NS: T + back + wait + fwd,
		Stratum: 1,
	}
	if s.OffsetNS() != -off+(fwd-back)/2 || s.DelayNS() != fwd+back {
		t.Fatalf("θ %.0f δ %d, want %d and %d", s.OffsetNS(), s.DelayNS(), -off+(fwd-back)/2, fwd+back)
	}
	d, _ := New(DefaultConfig(), t0)
	if err := d.AddSample("gm", s); err != nil {
		t.Fatal(err)
	}
}
