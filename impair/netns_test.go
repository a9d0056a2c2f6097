package impair

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

// needNetns skips without root, /dev/net/tun or ip(8), and fails instead
// under CI=true.
func needNetns(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "network namespaces need root"
	} else if _, err := os.Stat("/dev/net/tun"); err != nil {
		why = "no /dev/net/tun"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "ip (iproute2) not installed"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(why + " (required under CI)")
	}
	t.Skip(why)
}

func newTestPair(t *testing.T, ctx context.Context) (*Pair, Calibration) {
	t.Helper()
	p, err := NewPair(ctx, Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	cal, err := p.Calibrate(ctx, 200)
	if err != nil {
		t.Fatal(err)
	}
	return p, cal
}

// checkDelays compares probe medians, less the calibrated overhead, with
// the configured one-way delays. tol holds on a loaded 2-core machine: the
// medians move by tens of µs there, the delays checked are milliseconds.
func checkDelays(r ProbeResult, cal Calibration, ab, ba, tol time.Duration) error {
	if len(r.AtoB) < r.Sent/2 {
		return fmt.Errorf("%d of %d probes answered", len(r.AtoB), r.Sent)
	}
	gotAB := Quantile(r.AtoB, 0.5) - cal.AtoBP50
	gotBA := Quantile(r.BtoA, 0.5) - cal.BtoAP50
	gotRTT := Quantile(r.RoundTrip, 0.5) - cal.AtoBP50 - cal.BtoAP50
	for _, c := range []struct {
		what      string
		got, want time.Duration
	}{{"a→b", gotAB, ab}, {"b→a", gotBA, ba}, {"round trip", gotRTT, ab + ba}} {
		if d := c.got - c.want; d > tol || d < -tol {
			return fmt.Errorf("%s: median %v less overhead, want %v ± %v", c.what, c.got, c.want, tol)
		}
	}
	return nil
}

// The wire's asymmetric 3 ms / 1 ms shows up in UDP between the namespaces:
// one-way medians less the calibrated overhead are 3 ms and 1 ms, the round
// trip 4 ms. Negative control: the same wire with its delay knob ignored
// fails the same check.
func TestWireAsymmetricDelayInNetns(t *testing.T) {
	needNetns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, cal := newTestPair(t, ctx)
	t.Logf("calibrated overhead: one-way medians a→b %v b→a %v (min %v / %v), %d/%d replies; OverheadNS %v",
		cal.AtoBP50, cal.BtoAP50, cal.AtoBMin, cal.BtoAMin, cal.Replies, cal.Sent, time.Duration(p.Wire.OverheadNS()))
	if p.Wire.OverheadNS() <= 0 || p.Wire.OverheadNS() > int64(2*time.Millisecond) {
		t.Fatalf("overhead %v: outside (0, 2 ms]", time.Duration(p.Wire.OverheadNS()))
	}
	const tol = 400 * time.Microsecond
	cfg := Config{AtoB: Path{Delay: 3 * time.Millisecond}, BtoA: Path{Delay: time.Millisecond}, Seed: 1}
	probe := func(cfg Config) ProbeResult {
		t.Helper()
		if err := p.Wire.Configure(cfg); err != nil {
			t.Fatal(err)
		}
		r, err := p.Probe(ctx, 150, 5*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := probe(cfg)
	t.Logf("3 ms / 1 ms: medians a→b %v b→a %v round trip %v; p99 %v / %v",
		Quantile(r.AtoB, .5), Quantile(r.BtoA, .5), Quantile(r.RoundTrip, .5), Quantile(r.AtoB, .99), Quantile(r.BtoA, .99))
	if err := checkDelays(r, cal, 3*time.Millisecond, time.Millisecond, tol); err != nil {
		t.Fatal(err)
	}
	// SubtractNS = overhead: the path then shows the configured delays
	// themselves.
	sub := cfg
	sub.SubtractNS = p.Wire.OverheadNS()
	r = probe(sub)
	if err := checkDelays(r, Calibration{}, 3*time.Millisecond, time.Millisecond, tol); err != nil {
		t.Fatalf("with SubtractNS %v: %v", time.Duration(sub.SubtractNS), err)
	}
	// A route change 400 ms after Configure: a→b goes from 1 ms to 3 ms.
	// Probes every 5 ms for 800 ms: the first 300 ms show 1 ms, the last
	// 300 ms 3 ms.
	if err := p.Wire.Configure(Config{AtoB: Path{Delay: time.Millisecond, Changes: []Change{{At: 400 * time.Millisecond, Delay: 3 * time.Millisecond}}}}); err != nil {
		t.Fatal(err)
	}
	rc, err := p.ProbeSeries(ctx, 160, 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var early, late []time.Duration
	for _, pr := range rc {
		switch {
		case pr.SentAfter < 300*time.Millisecond:
			early = append(early, pr.AtoB)
		case pr.SentAfter > 500*time.Millisecond:
			late = append(late, pr.AtoB)
		}
	}
	slices.Sort(early)
	slices.Sort(late)
	if len(early) < 30 || len(late) < 30 {
		t.Fatalf("route change: %d early and %d late probes", len(early), len(late))
	}
	e, l := Quantile(early, .5)-cal.AtoBP50, Quantile(late, .5)-cal.AtoBP50
	if e < time.Millisecond-tol || e > time.Millisecond+tol || l < 3*time.Millisecond-tol || l > 3*time.Millisecond+tol {
		t.Fatalf("route change 1 ms → 3 ms at 400 ms: medians less overhead %v before, %v after", e, l)
	}
	t.Logf("route change: a→b %v before, %v after (less overhead)", e, l)
	// Negative control.
	broken := cfg
	broken.ignoreDelay = true
	r = probe(broken)
	if err := checkDelays(r, cal, 3*time.Millisecond, time.Millisecond, tol); err == nil {
		t.Fatal("negative control: a wire ignoring its delay passed the delay check")
	} else {
		t.Logf("negative control fails as it must: %v", err)
	}
	st := p.Wire.Stats()
	if st.AtoB.Forwarded == 0 || st.BtoA.Forwarded == 0 || p.Wire.Err() != nil {
		t.Fatalf("stats %+v, err %v", st, p.Wire.Err())
	}
	t.Logf("stats: %+v", st)
}

// A veth pair, the kernel's own path, as a baseline for the wire's
// overhead; and Close deletes its namespaces.
func TestVethPairBaseline(t *testing.T) {
	needNetns(t)
	p, err := NewVethPair()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	r, err := p.Probe(context.Background(), 100, 2*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.AtoB) < 90 {
		t.Fatalf("%d of %d echoes over a veth", len(r.AtoB), r.Sent)
	}
	t.Logf("veth one-way medians a→b %v b→a %v", Quantile(r.AtoB, .5), Quantile(r.BtoA, .5))
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for _, ns := range p.NS {
		if _, err := os.Stat("/var/run/netns/" + ns); err == nil {
			t.Fatalf("namespace %s survived Close", ns)
		}
	}
}

// CalibrateStamped's overheads, taken off each direction, make each
// direction's kernel-stamped minimum its configured delay (1 ms each way
// here, within tol: the minima of 40 exchanges on a loaded 2-core machine,
// where a calibration moves by tens of µs from one run to the next).
// Negative control: the same check with 400 µs too much taken off one
// direction fails.
func TestStampedCalibrationLevelsFloors(t *testing.T) {
	needNetns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	p, _ := newTestPair(t, ctx)
	const tol = 150 * time.Microsecond
	path := Config{AtoB: Path{Delay: time.Millisecond}, BtoA: Path{Delay: time.Millisecond}, Seed: 1}
	sc, err := p.CalibrateStamped(ctx, path, 40, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("over 1 ms base: a→b min %v p50 %v, b→a min %v p50 %v (%d/%d); overheads %v / %v",
		sc.AtoBMin, sc.AtoBP50, sc.BtoAMin, sc.BtoAP50, sc.Exchanges, sc.Sent,
		time.Duration(sc.AtoBOverheadNS), time.Duration(sc.BtoAOverheadNS))
	if sc.AtoBMin < time.Millisecond || sc.BtoAMin < time.Millisecond {
		t.Fatalf("a leg came in under its 1 ms base delay: a→b %v, b→a %v", sc.AtoBMin, sc.BtoAMin)
	}
	check := func(extra int64) error {
		cfg := path
		cfg.AtoB.SubtractNS, cfg.BtoA.SubtractNS = sc.AtoBOverheadNS+extra, sc.BtoAOverheadNS
		if err := p.Wire.Configure(cfg); err != nil {
			t.Fatal(err)
		}
		f, err := p.StampFloors(ctx, 40, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("subtracting %v / %v: a→b min %v p50 %v, b→a min %v p50 %v", time.Duration(cfg.AtoB.SubtractNS),
			time.Duration(cfg.BtoA.SubtractNS), f.AtoBMin, f.AtoBP50, f.BtoAMin, f.BtoAP50)
		for _, m := range []time.Duration{f.AtoBMin, f.BtoAMin} {
			if d := m - time.Millisecond; d > tol || d < -tol {
				return fmt.Errorf("floors a→b %v, b→a %v: want 1 ms ± %v each", f.AtoBMin, f.BtoAMin, tol)
			}
		}
		return nil
	}
	if err := check(0); err != nil {
		t.Fatal(err)
	}
	if err := check(int64(400 * time.Microsecond)); err == nil {
		t.Fatal("negative control: 400 µs too much off a→b passed the check")
	}
}

// A StampProbe measures the wire while it runs: each direction's floor is
// its configured delay (plus the wire's overhead, under tol), and after the
// wire is reconfigured mid-run the legs that follow show the new delays —
// which a calibration made before could not see. Negative control: the
// legs before the change do not pass the check made for after it.
func TestStampProbeFollowsTheWire(t *testing.T) {
	needNetns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	p, _ := newTestPair(t, ctx)
	const tol = 300 * time.Microsecond
	ms := time.Millisecond
	before := Config{AtoB: Path{Delay: 2 * ms}, BtoA: Path{Delay: ms / 2}, Seed: 1}
	after := Config{AtoB: Path{Delay: ms / 2}, BtoA: Path{Delay: 3 * ms / 2}, Seed: 1}
	if err := p.Wire.Configure(before); err != nil {
		t.Fatal(err)
	}
	sp, err := p.StartStampProbe(ctx, 20*time.Millisecond, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	change := time.Now()
	if err := p.Wire.Configure(after); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	legs := sp.Legs()
	// An exchange sent before the change may arrive after it: leave out
	// the 100 ms around it.
	var pre, post []StampedLegs
	for _, l := range legs {
		switch {
		case l.At.Before(change.Add(-100 * time.Millisecond)):
			pre = append(pre, l)
		case l.At.After(change.Add(100 * time.Millisecond)):
			post = append(post, l)
		}
	}
	check := func(name string, legs []StampedLegs, cfg Config) error {
		var ab, ba []time.Duration
		for _, l := range legs {
			if l.AtoB > 0 {
				ab = append(ab, l.AtoB)
			}
			if l.BtoA > 0 {
				ba = append(ba, l.BtoA)
			}
		}
		if len(ab) < 10 || len(ba) < 10 {
			return fmt.Errorf("%s: %d a→b and %d b→a legs of %d exchanges, want ≥ 10 each", name, len(ab), len(ba), len(legs))
		}
		slices.Sort(ab)
		slices.Sort(ba)
		t.Logf("%s: %d exchanges; a→b min %v p50 %v, b→a min %v p50 %v", name, len(legs), ab[0], Quantile(ab, .5), ba[0], Quantile(ba, .5))
		for _, c := range []struct {
			got, want time.Duration
			dir       string
		}{{ab[0], cfg.AtoB.Delay, "a→b"}, {ba[0], cfg.BtoA.Delay, "b→a"}} {
			if c.got < c.want || c.got > c.want+tol {
				return fmt.Errorf("%s: %s floor %v, want %v + [0, %v]", name, c.dir, c.got, c.want, tol)
			}
		}
		return nil
	}
	if err := check("before", pre, before); err != nil {
		t.Error(err)
	}
	if err := check("after", post, after); err != nil {
		t.Error(err)
	}
	if err := check("control", pre, after); err == nil {
		t.Error("negative control: the legs before the change passed the check for after it")
	}
}
