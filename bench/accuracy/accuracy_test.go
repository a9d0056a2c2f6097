package accuracy

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meridiantime/meridian/impair"
)

// The route-change path's physics moves from 0 to +750 µs at warm +
// measure/2 (the request direction 1 ms → 2.5 ms); the asymmetric path's
// is +750 µs throughout, the symmetric paths' 0.
func TestPathsPhysics(t *testing.T) {
	warm, measure := 30*time.Second, 120*time.Second
	ps, err := Paths(nil, warm, measure)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != len(PathNames) {
		t.Fatalf("%d paths, want %d", len(ps), len(PathNames))
	}
	for _, p := range ps {
		if err := p.Impair.Validate(); err != nil {
			t.Errorf("%s: %v", p.Name, err)
		}
		before, after := PhysicsNS(p.Impair, 0), PhysicsNS(p.Impair, warm+measure)
		want := map[string][2]int64{PathAsymmetric: {750_000, 750_000}, PathRouteChange: {0, 750_000}}[p.Name]
		if before != want[0] || after != want[1] {
			t.Errorf("%s: physics %d → %d ns, want %d → %d", p.Name, before, after, want[0], want[1])
		}
	}
	rc, _ := Paths([]string{PathRouteChange}, warm, measure)
	if at := warm + measure/2; PhysicsNS(rc[0].Impair, at-time.Nanosecond) != 0 || PhysicsNS(rc[0].Impair, at) != 750_000 {
		t.Errorf("the route changes at %v", at)
	}
	for _, bad := range [][]string{{"nope"}, {PathClean, PathClean}} {
		if _, err := Paths(bad, warm, measure); err == nil {
			t.Errorf("Paths(%v): no error", bad)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	ok := Options{Warmup: time.Second, Measure: 10 * time.Second}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]Options{
		"contestants": {Contestants: []string{"ntpd"}, Measure: 10 * time.Second},
		"offset":      {InjectedOffsetNS: 2e9, Measure: 10 * time.Second},
		"chrony ptp":  {Server: ServerChronyd, Measure: 10 * time.Second},
		"chrony offs": {Server: ServerChronyd, Contestants: []string{MeridianNTP}, InjectedOffsetNS: 1, Measure: 10 * time.Second},
		"server":      {Server: "ntpd", Measure: 10 * time.Second},
		"short":       {Measure: time.Second},
		"long":        {Measure: 2 * time.Hour},
	} {
		err := o.Validate()
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// The NTP clients share a pair; each PTP client gets its own (both bind
// ports 319/320).
func TestGroups(t *testing.T) {
	g := groups([]string{Ptp4lPTP, MeridianNTP, MeridianPTP, ChronydNTP})
	want := "[[meridian-ntp chronyd-ntp] [meridian-ptp] [ptp4l-ptp]]"
	if got := strings.ReplaceAll(strings.TrimSpace(sprint(g)), "  ", " "); got != want {
		t.Fatalf("%s, want %s", got, want)
	}
}

func sprint(g [][]string) string {
	var b strings.Builder
	b.WriteString("[")
	for i, x := range g {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString("[" + strings.Join(x, " ") + "]")
	}
	return b.String() + "]"
}

// Published output of chronyc 4.3 and ptp4l 3.1.1 (as seen on this
// machine) parses to the numbers in it.
func TestParsePeers(t *testing.T) {
	tr, err := ParseTracking("7F7F0101,127.127.1.1,2,1700000000.123,0.000012345,-0.000002,0.000030,-1.234,0.010,0.005,0.100,0.000500,0.000100,64.0,Normal")
	if err != nil || tr.Stratum != 2 || tr.OffsetNS != 12345 {
		t.Fatalf("tracking %+v %v", tr, err)
	}
	f := make([]string, 30)
	for i := range f {
		f[i] = "0"
	}
	f[19], f[26] = "0.002087", "No"
	if d, err := ParsePeerDelay(strings.Join(f, ",")); err != nil || d != 2_087_000 {
		t.Fatalf("ntpdata %d %v", d, err)
	}
	// A whole line as chronyc printed it here (a basic-mode exchange), and
	// the same with the exchange interleaved; a garbled field is refused.
	line := "10.203.1.2,0ACB0102,123,10.203.1.1,0ACB0101,Normal,4,Server,1,0,1,-26,0.000000015,0.000000,0.000000,7F7F0101,,1796555135.351114131,0.000071685,0.002175755,0.000000059,0.000196798,0.00,111,111,1111,No,No,Kernel,Kernel,68,68,68,61"
	if nd, err := ParseNTPData(line); err != nil || nd.DelayNS != 2_175_755 || nd.Interleaved {
		t.Fatalf("ntpdata %+v %v", nd, err)
	}
	if nd, err := ParseNTPData(strings.Replace(line, "1111,No,No,", "1111,Yes,No,", 1)); err != nil || !nd.Interleaved {
		t.Fatalf("interleaved ntpdata %+v %v", nd, err)
	}
	if _, err := ParseNTPData(strings.Replace(line, "1111,No,No,", "1111,Maybe,No,", 1)); err == nil || !strings.Contains(err.Error(), "field 27") {
		t.Fatalf("a garbled interleaved field: %v", err)
	}
	if v, ok, err := ParseSourceMetric(strings.NewReader("meridian_source_delay_seconds{source=\"a\"} 0.002\nmeridian_source_interleaved_samples{source=\"a\"} 42\n"), "meridian_source_interleaved_samples"); !ok || err != nil || v != "42" {
		t.Fatalf("interleaved samples %q %v %v", v, ok, err)
	}
	m, ok, err := ParseMasterOffset("ptp4l[1430.084]: master offset   -4183933 s0 freq +474086 path delay   1479368")
	if !ok || err != nil || m.OffsetNS != -4183933 || m.PathDelayNS != 1479368 || m.State != 0 {
		t.Fatalf("master offset %+v %v %v", m, ok, err)
	}
	if _, ok, _ := ParseMasterOffset("ptp4l[1424.049]: selected best master clock 0200ff.ff0a.cb0102"); ok {
		t.Fatal("a line without an offset parsed")
	}
	d, ok, err := ParseSourceDelay(strings.NewReader("# HELP x\nmeridian_source_delay_seconds{source=\"10.0.0.2:123\"} 0.0021\n"))
	if !ok || err != nil || d != 2_100_000 {
		t.Fatalf("metrics %d %v %v", d, ok, err)
	}
	for _, bad := range []string{"a,b,2,c,NaN", "a,b,2,c,1e300", "a,b,x,c,0.1", "a,b"} {
		if _, err := ParseTracking(bad); err == nil {
			t.Errorf("ParseTracking(%q): no error", bad)
		}
	}
}

// Fuzz: whatever chronyc prints, an accepted offset is the printed number
// of seconds in ns (within rounding), within ±maxReportedS, and the
// stratum within 0..16.
func FuzzParseTracking(f *testing.F) {
	f.Add("7F7F0101,127.127.1.1,2,1700000000.123,0.000012345,-0.000002")
	f.Add("0,0,16,0,-1e-9")
	f.Add("0,0,1,0,nan")
	f.Fuzz(func(t *testing.T, line string) {
		tr, err := ParseTracking(line)
		if err != nil {
			return
		}
		if tr.Stratum < 0 || tr.Stratum > 16 {
			t.Fatalf("stratum %d accepted", tr.Stratum)
		}
		if math.Abs(float64(tr.OffsetNS)) > maxReportedS*1e9 {
			t.Fatalf("offset %d ns accepted", tr.OffsetNS)
		}
		v, perr := strconv.ParseFloat(strings.TrimSpace(strings.Split(strings.TrimSpace(line), ",")[4]), 64)
		if perr != nil || math.Abs(v*1e9-float64(tr.OffsetNS)) > 1 {
			t.Fatalf("offset %d ns from %q", tr.OffsetNS, line)
		}
	})
}

// Fuzz: an accepted master offset line round-trips: printing its numbers
// the way ptp4l does parses to the same numbers, and they are in range.
func FuzzParseMasterOffset(f *testing.F) {
	f.Add("ptp4l[1430.084]: master offset   -4183933 s0 freq +474086 path delay   1479368")
	f.Add("master offset 99999999999999999999 s2 freq -1 path delay 0")
	f.Add("master offset -0 s9 freq +0 path delay -5")
	f.Fuzz(func(t *testing.T, line string) {
		m, ok, err := ParseMasterOffset(line)
		if !ok || err != nil {
			return
		}
		const maxNS = int64(maxReportedS * 1e9)
		if m.OffsetNS < -maxNS || m.OffsetNS > maxNS || m.PathDelayNS < -maxNS || m.PathDelayNS > maxNS || m.State < 0 || m.State > 9 {
			t.Fatalf("out of range accepted: %+v from %q", m, line)
		}
		again := "master offset " + strconv.FormatInt(m.OffsetNS, 10) + " s" + strconv.Itoa(m.State) + " freq +0 path delay " + strconv.FormatInt(m.PathDelayNS, 10)
		m2, ok, err := ParseMasterOffset(again)
		if !ok || err != nil || m2 != m {
			t.Fatalf("%+v printed as %q parses to %+v %v %v", m, again, m2, ok, err)
		}
	})
}

// Fuzz: a delay read from any exposition is finite, in range, and the
// value on the first matching line.
func FuzzParseSourceDelay(f *testing.F) {
	f.Add("meridian_source_delay_seconds{source=\"a\"} 0.002\n")
	f.Add("meridian_source_delay_seconds{} +Inf\nmeridian_source_delay_seconds{} 1\n")
	f.Fuzz(func(t *testing.T, text string) {
		ns, ok, err := ParseSourceDelay(strings.NewReader(text))
		if !ok || err != nil {
			return
		}
		if math.Abs(float64(ns)) > maxReportedS*1e9 {
			t.Fatalf("%d ns accepted", ns)
		}
		if !strings.Contains(text, "meridian_source_delay_seconds{") {
			t.Fatalf("a value without the metric: %q", text)
		}
	})
}

func TestMedianInterval(t *testing.T) {
	s := int64(time.Second)
	if got := medianInterval([]int64{0, 2 * s, 4*s + 30e6, 6 * s, 9 * s}, s); got != 2*s {
		t.Fatalf("%d, want 2 s", got)
	}
	if got := medianInterval([]int64{5}, s); got != s {
		t.Fatalf("%d, want the default", got)
	}
}

// Fuzz: an accepted ntpdata line has a positive delay in range, equal to
// its field 20 in ns (within rounding), and is interleaved exactly when
// its field 27 says Yes.
func FuzzParseNTPData(f *testing.F) {
	f.Add("10.203.1.2,0ACB0102,123,10.203.1.1,0ACB0101,Normal,4,Server,1,0,1,-26,0.000000015,0.000000,0.000000,7F7F0101,,1796555135.351114131,0.000071685,0.002175755,0.000000059,0.000196798,0.00,111,111,1111,Yes,No,Kernel,Kernel,68,68,68,61")
	f.Add("0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1e-300,0,0,0,0,0,0,No")
	f.Add("0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,nan,0,0,0,0,0,0,Yes")
	f.Fuzz(func(t *testing.T, line string) {
		nd, err := ParseNTPData(line)
		if err != nil {
			return
		}
		if nd.DelayNS <= 0 || float64(nd.DelayNS) > maxReportedS*1e9 {
			t.Fatalf("delay %d ns accepted from %q", nd.DelayNS, line)
		}
		fs := strings.Split(strings.TrimSpace(line), ",")
		v, perr := strconv.ParseFloat(strings.TrimSpace(fs[19]), 64)
		if perr != nil || math.Abs(v*1e9-float64(nd.DelayNS)) > 1 {
			t.Fatalf("delay %d ns from field %q", nd.DelayNS, fs[19])
		}
		if nd.Interleaved != (fs[26] == "Yes") {
			t.Fatalf("interleaved %v from field %q", nd.Interleaved, fs[26])
		}
	})
}

// The measured physics on the route-change path: each leg's excess is
// taken over the base delay configured when it was sent, so the change is
// not taken for an asymmetry of the wire. Legs are drawn from known
// overheads (a→b 30 µs, b→a 10 µs, so the floors' asymmetry forces +10 µs)
// plus jitter that is uneven above the floor (a→b U[0, 400 µs), b→a
// U[0, 100 µs)): the least-delayed exchanges must show the +10 µs, while
// the median over all of them is pulled up by the uneven jitter (~+85 µs).
// The negative control: with the excess taken over the changed delay
// throughout, the legs before the change make the a→b floor 1.5 ms
// negative.
func TestSummarizeProbe(t *testing.T) {
	warm, measure := 10*time.Second, 100*time.Second
	ps, err := Paths([]string{PathRouteChange}, warm, measure)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ps[0].Impair
	t0 := time.Unix(1_000_000, 0)
	rng := rand.New(rand.NewPCG(1, 2))
	var legs []impair.StampedLegs
	for i := 0; i < 440; i++ {
		at := t0.Add(time.Duration(i) * 250 * time.Millisecond)
		since := at.Sub(t0)
		l := impair.StampedLegs{At: at,
			AtoB: delayAt(cfg.AtoB, since) + 30*time.Microsecond + time.Duration(rng.Int64N(400_000)),
			BtoA: delayAt(cfg.BtoA, since) + 10*time.Microsecond + time.Duration(rng.Int64N(100_000))}
		if i%7 == 0 {
			l.BtoA = 0 // a reply lost
		}
		if i%11 == 0 {
			l.AtoB, l.BtoA = 0, 0 // a request lost
		}
		legs = append(legs, l)
	}
	pr := summarizeProbe(legs, cfg, t0, t0, t0.Add(time.Hour))
	t.Logf("%+v", pr)
	if !pr.Valid || pr.Exchanges != 440 || pr.Pairs < 300 {
		t.Fatalf("want valid, 440 exchanges, ≥ 300 pairs")
	}
	if pr.AtoBExcessMinNS < 30_000 || pr.AtoBExcessMinNS > 35_000 || pr.BtoAExcessMinNS < 10_000 || pr.BtoAExcessMinNS > 15_000 {
		t.Errorf("floor excesses %d / %d ns, want 30–35 µs / 10–15 µs", pr.AtoBExcessMinNS, pr.BtoAExcessMinNS)
	}
	if pr.BiasNS < 0 || pr.BiasNS > 20_000 {
		t.Errorf("bias of the least-delayed exchanges %d ns, want ~10 µs", pr.BiasNS)
	}
	if pr.BiasAllNS < 60_000 || pr.BiasAllNS > 110_000 {
		t.Errorf("bias over every exchange %d ns, want ~85 µs", pr.BiasAllNS)
	}
	// A window with too few exchanges has no bias.
	if short := summarizeProbe(legs, cfg, t0, t0, t0.Add(5*time.Second)); short.Valid || short.BiasNS != 0 {
		t.Errorf("20 exchanges: %+v, want invalid, bias 0", short)
	}
	// The control.
	flat := cfg
	flat.AtoB.Delay, flat.AtoB.Changes = cfg.AtoB.Changes[0].Delay, nil
	if c := summarizeProbe(legs, flat, t0, t0, t0.Add(time.Hour)); c.AtoBExcessMinNS > -1_000_000 {
		t.Errorf("negative control: over the changed delay throughout, the a→b floor excess is %d ns, want under −1 ms", c.AtoBExcessMinNS)
	}
}
