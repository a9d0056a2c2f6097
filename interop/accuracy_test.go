package interop

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meridiantime/meridian/impair"
	"github.com/meridiantime/meridian/truetime"
	"github.com/meridiantime/meridian/truetime/shm"
)

// The accuracy side by side (issue 15): our NTP client (meridiand, virtual
// clock started on time) and `chronyd -x`, both in namespace A, poll the same
// chronyd server (namespace B, `local stratum 1`, serving the host clock)
// every second through the impairment wire. Truth is the host clock:
//   - ours: the shm segment read in this process every 100 ms; error =
//     interval midpoint − CLOCK_REALTIME read right after; containment =
//     earliest ≤ host time ≤ latest with the host read before and after;
//   - chrony's: `chronyc -c tracking` field 5 (index 4) every second. chronyd
//     -x never adjusts the clock, so that field (NTP time − system time,
//     negative when the host looks fast) is chrony's own error, with the
//     same sign as ours.
//
// Assertions: no containment violation on any path, ever (also during the
// warm-up); the negative control — the same check on the same reads with ε
// shrunk 100× — must find violations on every path. Every |error| figure
// is measured from half the path's asymmetry, the offset physics forces on
// any NTP client (0 on the symmetric paths): |error − asymmetry/2|. Ours ≤
// chrony's median |error| per path is asserted only with
// MERIDIAN_ACCURACY_STRICT=1 (the lead switches it on); otherwise a miss
// is logged as "NOT YET". MERIDIAN_ACCURACY_OUT=file writes the table as
// JSON; MERIDIAN_ACCURACY_SECONDS sets the measured span (default 120,
// after a 30 s warm-up).

// accuracyPath is one impairment; A is the clients' side, so AtoB is the
// request direction. Loss is per direction.
type accuracyPath struct {
	name string
	cfg  impair.Config
}

func accuracyPaths() []accuracyPath {
	const ms, us = time.Millisecond, time.Microsecond
	sym := func(p impair.Path, seed uint64) impair.Config { return impair.Config{AtoB: p, BtoA: p, Seed: seed} }
	return []accuracyPath{
		{"clean", sym(impair.Path{Delay: ms}, 1)},
		{"jittery", sym(impair.Path{Delay: ms, Jitter: impair.Jitter{Dist: impair.Exponential, Mean: ms}, LossPct: 20}, 2)},
		{"lossy", sym(impair.Path{Delay: ms, Jitter: impair.Jitter{Dist: impair.Uniform, Max: 200 * us}, LossPct: 30}, 3)},
		{"asymmetric", impair.Config{
			AtoB: impair.Path{Delay: 2 * ms, Jitter: impair.Jitter{Dist: impair.Exponential, Mean: 100 * us}, LossPct: 5},
			BtoA: impair.Path{Delay: 500 * us, Jitter: impair.Jitter{Dist: impair.Exponential, Mean: 100 * us}, LossPct: 5},
			Seed: 4}},
	}
}

func describePath(c impair.Config) string {
	d := func(p impair.Path) string {
		s := p.Delay.String()
		switch p.Jitter.Dist {
		case impair.Exponential:
			s += fmt.Sprintf("+exp(%v)", p.Jitter.Mean)
		case impair.Uniform:
			s += fmt.Sprintf("+U[0,%v)", p.Jitter.Max)
		}
		if p.LossPct > 0 {
			s += fmt.Sprintf(" %g%%loss", p.LossPct)
		}
		return s
	}
	return "req " + d(c.AtoB) + " / resp " + d(c.BtoA)
}

// accuracyResult is one path's row (nanoseconds unless named otherwise).
type accuracyResult struct {
	Path                 string       `json:"path"`
	Impairment           string       `json:"impairment"`
	OursMedianAbsErrNS   int64        `json:"ours_median_abs_err_ns"` // |error − asymmetry/2|, as all "abs" figures
	OursP99AbsErrNS      int64        `json:"ours_p99_abs_err_ns"`
	OursMedianErrNS      int64        `json:"ours_median_err_ns"` // signed: mid − host
	OursMedianEpsNS      int64        `json:"ours_median_eps_ns"`
	ChronyMedianAbsErrNS int64        `json:"chrony_median_abs_err_ns"`
	ChronyP99AbsErrNS    int64        `json:"chrony_p99_abs_err_ns"`
	ChronyMedianErrNS    int64        `json:"chrony_median_err_ns"` // signed, same convention
	OursMinDelayNS       int64        `json:"ours_min_delay_ns"`    // meridian_source_delay_seconds, smallest seen
	ChronyMinDelayNS     int64        `json:"chrony_min_delay_ns"`  // chronyc ntpdata peer delay, smallest seen
	ProvableMinNS        int64        `json:"provable_min_ns"`      // half the smaller of the two
	EpsOverProvable      float64      `json:"eps_over_provable"`    // median over reads of ε / (smallest δ/2 + 15 ppm × its age) by then
	Reads                int          `json:"reads"`                // ours, after the warm-up
	ChronySamples        int          `json:"chrony_samples"`       // after the warm-up
	Unsynchronized       int          `json:"unsynchronized"`       // our reads refused, after the warm-up
	Violations           int          `json:"violations"`           // containment, whole run
	CheckedReads         int          `json:"checked_reads"`        // containment checks, whole run
	ControlViolations    int          `json:"control_violations"`   // the negative control: containment with ε/100
	LooseReads           int          `json:"loose_reads"`          // host reads > 20 µs apart around ours even after retries
	WireOverheadNS       int64        `json:"wire_overhead_ns"`     // calibrated one-way, subtracted
	Wire                 impair.Stats `json:"wire"`
	WarmupSeconds        float64      `json:"warmup_s"`
	MeasuredSeconds      float64      `json:"measured_s"`
}

func TestAccuracyVsChrony(t *testing.T) {
	need(t, "chronyd")
	need(t, "chronyc")
	need(t, "setpriv")
	needNetns(t)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("the impairment wire needs /dev/net/tun under CI")
		}
		t.Skip("no /dev/net/tun")
	}
	warm, measure := 30*time.Second, 120*time.Second
	if v := os.Getenv("MERIDIAN_ACCURACY_SECONDS"); v != "" {
		s, err := strconv.Atoi(v)
		if err != nil || s < 10 {
			t.Fatalf("MERIDIAN_ACCURACY_SECONDS: want whole seconds ≥ 10, got %q", v)
		}
		measure = time.Duration(s) * time.Second
	}
	bin := buildMeridiand(t)
	start := time.Now()
	// Setup in this goroutine (it may fail the test), then all paths sample
	// at once: t.Parallel would run only GOMAXPROCS (2 here) of them at a
	// time, for no CPU reason (they mostly sleep).
	var runs []*accuracyRun
	for _, p := range accuracyPaths() {
		runs = append(runs, setupAccuracyPath(t, bin, p))
	}
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Add(1)
		go func() { defer wg.Done(); r.sample(warm, measure) }()
	}
	wg.Wait()
	var results []*accuracyResult
	for _, r := range runs {
		t.Run(r.path.name, func(t *testing.T) {
			if res := r.evaluate(t, measure); res != nil {
				results = append(results, res)
			}
		})
	}
	wall := time.Since(start)
	var rows []accuracyResult
	var b strings.Builder
	fmt.Fprintf(&b, "accuracy vs chronyd -x, %v warm-up + %v measured, %v wall:\n", warm, measure, wall.Round(time.Second))
	fmt.Fprintf(&b, "%-10s %10s %10s %10s %10s %10s %10s %7s %5s  %s\n",
		"path", "ours p50", "ours p99", "chrony p50", "ours ε p50", "min δ/2", "ε/min", "overhd", "viol", "impairment")
	us := func(ns int64) string { return fmt.Sprintf("%.1fµs", float64(ns)/1e3) }
	for _, r := range results {
		if r == nil {
			continue
		}
		rows = append(rows, *r)
		fmt.Fprintf(&b, "%-10s %10s %10s %10s %10s %10s %10.2f %7s %5d  %s\n", r.Path,
			us(r.OursMedianAbsErrNS), us(r.OursP99AbsErrNS), us(r.ChronyMedianAbsErrNS), us(r.OursMedianEpsNS),
			us(r.ProvableMinNS), r.EpsOverProvable, us(r.WireOverheadNS), r.Violations, r.Impairment)
	}
	t.Log(b.String())
	if out := os.Getenv("MERIDIAN_ACCURACY_OUT"); out != "" && len(rows) > 0 {
		j, _ := json.MarshalIndent(struct {
			WarmupSeconds, MeasuredSeconds, WallSeconds float64
			Paths                                       []accuracyResult
		}{warm.Seconds(), measure.Seconds(), wall.Seconds(), rows}, "", "  ")
		if err := os.WriteFile(out, append(j, '\n'), 0o644); err != nil {
			t.Errorf("MERIDIAN_ACCURACY_OUT: %v", err)
		} else {
			t.Logf("wrote %s", out)
		}
	}
}

// accuracyStrict reports whether ours ≤ chrony's median is asserted.
func accuracyStrict() bool { return os.Getenv("MERIDIAN_ACCURACY_STRICT") == "1" }

// accuracyRun is one path's setup and what its sampling found.
type accuracyRun struct {
	path                                  accuracyPath
	pair                                  *impair.Pair
	cal                                   impair.Calibration
	rd                                    *shm.Reader
	csock                                 string // the chronyd client's command socket
	metrics                               *http.Client
	metricsAddr                           netip.AddrPort
	res                                   accuracyResult
	ours, oursAbs, eps, chrony, chronyAbs []int64
	// delays are the round trips either client reported, with when; ratios
	// the per-read ε over the provable minimum at that read.
	delays     []seenDelay
	ratios     []float64
	violations []string // the first few, with their numbers
	logTail    func() string
	// physicsNS is the offset any NTP client must show on this path: half
	// its asymmetry (request minus response delay). The |error| figures
	// are measured from it, so that on the asymmetric path a client is not
	// called accurate for missing what physics demands.
	physicsNS int64
}

type seenDelay struct {
	at time.Time
	ns int64
}

// driftBoundPPM is meridiand's default drift_bound_ppm: the rate at which
// anything once proven loses precision.
const driftBoundPPM = 15

// provableMinNS is the narrowest half-width any bound under the daemon's
// assumptions could prove at now from the round trips seen so far: the
// smallest δ/2 + drift bound × age (0 before any).
func (r *accuracyRun) provableMinNS(now time.Time) int64 {
	best := int64(math.MaxInt64)
	for _, d := range r.delays {
		best = min(best, d.ns/2+int64(driftBoundPPM*1e-6*float64(now.Sub(d.at))))
	}
	if best == math.MaxInt64 {
		return 0
	}
	return best
}

// setupAccuracyPath builds one path: a wire pair calibrated and impaired,
// the chronyd server in B, the chronyd -x client and meridiand in A.
func setupAccuracyPath(t *testing.T, bin string, path accuracyPath) *accuracyRun {
	t.Helper()
	r := &accuracyRun{path: path}
	pair, err := impair.NewPair(t.Context(), impair.Config{})
	if err != nil {
		t.Fatal(err)
	}
	r.pair = pair
	t.Cleanup(func() {
		if err := pair.Close(); err != nil {
			t.Error(err)
		}
	})
	r.cal, err = pair.Calibrate(t.Context(), 200)
	if err != nil {
		t.Fatal(err)
	}
	cfg := path.cfg
	// Each direction's own minimum overhead off its delays, so that each
	// configured delay is that direction's minimum (impair.Path.Delay), as
	// on a real path: an uneven overhead would be an asymmetry that biases
	// every client alike, and the minima are what a filter can find.
	cfg.AtoB.SubtractNS, cfg.BtoA.SubtractNS = int64(r.cal.AtoBMin), int64(r.cal.BtoAMin)
	r.physicsNS = int64(cfg.AtoB.Delay-cfg.BtoA.Delay) / 2
	if err := pair.Wire.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	addrA, addrB := pair.Addr[impair.A], pair.Addr[impair.B]
	chronydIn(t, pair, impair.B, fmt.Sprintf("local stratum 1\nallow %s\nbindaddress %s\nport 123",
		netip.PrefixFrom(addrB, 24).Masked(), addrB))
	r.csock = chronydIn(t, pair, impair.A, fmt.Sprintf("server %s iburst minpoll 0 maxpoll 0\nport 0", addrB))

	dir := t.TempDir()
	shmPath := filepath.Join(dir, "tt.shm")
	cfgFile := filepath.Join(dir, "m.yaml")
	r.metricsAddr = netip.AddrPortFrom(addrA, 9390)
	if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf(`clock: virtual
clock_offset: 0s
local_stratum: 0
sources: [{type: ntp, address: "%s:123", poll: 1s, min_poll: 1s, max_poll: 1s, iburst: true}]
ntp_server: {listen: []}
grpc: {listen: []}
metrics: {listen: "%s"}
shm: {path: %s}
state_dir: %s
`, addrB, r.metricsAddr, shmPath, filepath.Join(dir, "state"))), 0o644); err != nil {
		t.Fatal(err)
	}
	d := pair.Command(impair.A, bin, "--config", cfgFile)
	d.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // ip execs meridiand: this PID is the daemon
	logf, err := os.Create(filepath.Join(dir, "meridiand.log"))
	if err != nil {
		t.Fatal(err)
	}
	d.Stdout, d.Stderr = logf, logf
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	r.logTail = func() string {
		b, _ := os.ReadFile(logf.Name())
		return string(b[max(0, len(b)-4096):])
	}
	t.Cleanup(func() {
		_ = d.Process.Kill()
		_ = d.Wait()
		logf.Close()
	})
	r.rd = waitShm(t, shmPath, r.logTail)
	r.metrics = nsHTTPClient(pair, impair.A)
	t.Cleanup(r.metrics.CloseIdleConnections)
	r.res = accuracyResult{Path: path.name, Impairment: describePath(path.cfg), WireOverheadNS: r.cal.OverheadNS,
		OursMinDelayNS: math.MaxInt64, ChronyMinDelayNS: math.MaxInt64}
	return r
}

// sample reads our interval every 100 ms and chrony's tracking, chrony's
// last round trip and our source's delay every second. It runs beside the
// other paths' and never fails the test itself.
func (r *accuracyRun) sample(warm, measure time.Duration) {
	res := &r.res
	res.WarmupSeconds, res.MeasuredSeconds = warm.Seconds(), measure.Seconds()
	begin := time.Now()
	warmEnd, end := begin.Add(warm), begin.Add(warm+measure)
	nextSlow := begin
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for now := range tick.C {
		if now.After(end) {
			break
		}
		measuring := now.After(warmEnd)
		before, after, iv, err := r.read()
		switch {
		case err != nil:
			if measuring {
				res.Unsynchronized++
			}
		default:
			res.CheckedReads++
			if iv.EarliestNS > after || iv.LatestNS < before {
				res.Violations++
				if len(r.violations) < 5 {
					r.violations = append(r.violations, fmt.Sprintf("at +%v: [%d, %d] (mid−host %v, ε %v) misses the host clock [%d, %d]",
						now.Sub(begin).Round(time.Millisecond), iv.EarliestNS, iv.LatestNS,
						time.Duration(iv.MidNS()-after), time.Duration(iv.EpsNS()), before, after))
				}
			}
			// Negative control: the same check on the same read with ε
			// shrunk 100× must find violations, or the check cannot fail.
			if mid, e := iv.MidNS(), iv.EpsNS()/100; mid-e > after || mid+e < before {
				res.ControlViolations++
			}
			if measuring {
				e := iv.MidNS() - after
				r.ours, r.oursAbs, r.eps = append(r.ours, e), append(r.oursAbs, abs64(e-r.physicsNS)), append(r.eps, iv.EpsNS())
				if m := r.provableMinNS(now); m > 0 {
					r.ratios = append(r.ratios, float64(iv.EpsNS())/float64(m))
				}
			}
		}
		if now.Before(nextSlow) {
			continue
		}
		nextSlow = nextSlow.Add(time.Second)
		if e, ok := chronyError(r.csock); ok && measuring {
			r.chrony, r.chronyAbs = append(r.chrony, e), append(r.chronyAbs, abs64(e-r.physicsNS))
		}
		if d, ok := chronyPeerDelay(r.csock); ok {
			res.ChronyMinDelayNS = min(res.ChronyMinDelayNS, d)
			r.delays = append(r.delays, seenDelay{now, d})
		}
		if d, ok := scrapeSourceDelay(r.metrics, r.metricsAddr); ok && d > 0 {
			res.OursMinDelayNS = min(res.OursMinDelayNS, d)
			r.delays = append(r.delays, seenDelay{now, d})
		}
	}
	res.Wire = r.pair.Wire.Stats()
}

// maxBracketNS bounds the host-clock reads around one interval read: a
// read preempted between them (ms on a loaded machine) would pass for our
// error, and would make the containment check lenient.
const maxBracketNS = 20_000

// read reads our interval between two host-clock reads, retrying while the
// thread was preempted in between (up to 20 tries; then the last read
// stands, and only counts as loosely bracketed).
func (r *accuracyRun) read() (beforeNS, afterNS int64, iv truetime.Interval, err error) {
	for try := 0; ; try++ {
		beforeNS = time.Now().UnixNano()
		iv, err = r.rd.Now()
		afterNS = time.Now().UnixNano()
		if afterNS-beforeNS <= maxBracketNS {
			return
		}
		if try == 20 {
			r.res.LooseReads++
			return
		}
		runtime.Gosched()
	}
}

// evaluate asserts containment (and, with MERIDIAN_ACCURACY_STRICT=1, ours
// ≤ chrony's median) and fills the row.
func (r *accuracyRun) evaluate(t *testing.T, measure time.Duration) *accuracyResult {
	res := &r.res
	for _, v := range r.violations {
		t.Errorf("containment violation %s", v)
	}
	if res.Violations > 0 {
		t.Errorf("%d of %d reads missed the host clock", res.Violations, res.CheckedReads)
	}
	if res.ControlViolations == 0 {
		t.Errorf("negative control: with ε shrunk 100× the containment check found no violation in %d reads: it cannot fail", res.CheckedReads)
	}
	res.Reads, res.ChronySamples = len(r.ours), len(r.chrony)
	if len(r.ours) < int(measure/(200*time.Millisecond)) {
		t.Errorf("only %d synchronized reads in %v (%d refused)", len(r.ours), measure, res.Unsynchronized)
	}
	if len(r.chrony) < int(measure/(2*time.Second)) {
		t.Errorf("chronyd reported tracking for only %d of %v s", len(r.chrony), measure.Seconds())
	}
	if t.Failed() {
		t.Logf("meridiand log (tail):\n%s", r.logTail())
	}
	if len(r.ours) == 0 || len(r.chrony) == 0 {
		return nil
	}
	res.OursMedianErrNS, res.OursMedianAbsErrNS, res.OursP99AbsErrNS = quantile(r.ours, .5), quantile(r.oursAbs, .5), quantile(r.oursAbs, .99)
	res.OursMedianEpsNS = quantile(r.eps, .5)
	res.ChronyMedianErrNS, res.ChronyMedianAbsErrNS, res.ChronyP99AbsErrNS = quantile(r.chrony, .5), quantile(r.chronyAbs, .5), quantile(r.chronyAbs, .99)
	minDelay := min(res.OursMinDelayNS, res.ChronyMinDelayNS)
	if minDelay == math.MaxInt64 {
		t.Error("neither client reported a round-trip delay")
		return nil
	}
	res.ProvableMinNS = minDelay / 2
	// Per read, against what the round trips seen by then prove under the
	// drift bound (the smallest δ/2 plus its age × 15 ppm): the figure the
	// simulator's ε/min reports too.
	slices.Sort(r.ratios)
	if len(r.ratios) > 0 {
		res.EpsOverProvable = r.ratios[len(r.ratios)/2]
	}
	for _, p := range []*int64{&res.OursMinDelayNS, &res.ChronyMinDelayNS} {
		if *p == math.MaxInt64 {
			*p = 0
		}
	}
	t.Logf("ours median |err| %v p99 %v (signed median %v), ε median %v; chrony median |err| %v p99 %v (signed %v); min δ ours %v chrony %v; %d reads, %d chrony samples, %d violations in %d checks (%d loosely bracketed; with ε/100, the negative control, %d); wire %+v",
		time.Duration(res.OursMedianAbsErrNS), time.Duration(res.OursP99AbsErrNS), time.Duration(res.OursMedianErrNS),
		time.Duration(res.OursMedianEpsNS), time.Duration(res.ChronyMedianAbsErrNS), time.Duration(res.ChronyP99AbsErrNS), time.Duration(res.ChronyMedianErrNS),
		time.Duration(res.OursMinDelayNS), time.Duration(res.ChronyMinDelayNS), res.Reads, res.ChronySamples, res.Violations, res.CheckedReads, res.LooseReads, res.ControlViolations, res.Wire)
	// The wire itself, witnessed by chrony: an asymmetric path shifts any
	// NTP client's offset by half the asymmetry (the jitter is symmetric
	// on every path here). 250 µs: chrony's p99 stays within ~50 µs of its
	// median on the asymmetric path; the rest is the wire's lateness under
	// load.
	if want := int64(r.path.cfg.AtoB.Delay-r.path.cfg.BtoA.Delay) / 2; want != 0 && abs64(res.ChronyMedianErrNS-want) > 250e3 {
		t.Errorf("chrony's median offset %v on a %v / %v path: the wire's asymmetry should make it %v ± 250µs",
			time.Duration(res.ChronyMedianErrNS), r.path.cfg.AtoB.Delay, r.path.cfg.BtoA.Delay, time.Duration(want))
	}
	if res.OursMedianAbsErrNS > res.ChronyMedianAbsErrNS {
		msg := fmt.Sprintf("%s: our median |error| %v exceeds chrony's %v", r.path.name,
			time.Duration(res.OursMedianAbsErrNS), time.Duration(res.ChronyMedianAbsErrNS))
		if accuracyStrict() {
			t.Error(msg)
		} else {
			t.Log("NOT YET (asserted with MERIDIAN_ACCURACY_STRICT=1): " + msg)
		}
	}
	return res
}

func abs64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// quantile is the nearest-rank q-quantile; it sorts a copy.
func quantile(v []int64, q float64) int64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1))]
}

// chronycCSV runs one chronyc command in CSV mode; unlike chronyc it does
// not fail the test (a busy machine may time one out).
func chronycCSV(sock string, args ...string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "chronyc", append([]string{"-h", sock, "-c"}, args...)...).Output()
	if err != nil {
		return nil, err
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return strings.Split(line, ","), nil
}

// chronyError is chrony's error from `tracking` while it is synchronized
// to the stratum-1 server (its stratum is then 2).
func chronyError(sock string) (int64, bool) {
	f, err := chronycCSV(sock, "tracking")
	if err != nil || len(f) < 5 || f[2] != "2" {
		return 0, false
	}
	v, err := strconv.ParseFloat(f[4], 64)
	return int64(math.Round(v * 1e9)), err == nil
}

// chronyPeerDelay is the round trip of chrony's last exchange (`ntpdata`,
// index 19 "Peer delay").
func chronyPeerDelay(sock string) (int64, bool) {
	f, err := chronycCSV(sock, "ntpdata")
	if err != nil || len(f) < 20 {
		return 0, false
	}
	v, err := strconv.ParseFloat(f[19], 64)
	return int64(math.Round(v * 1e9)), err == nil && v > 0
}

// nsHTTPClient dials from inside side's namespace.
func nsHTTPClient(p *impair.Pair, side impair.Side) *http.Client {
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			ierr := p.InNS(side, func() error {
				var d net.Dialer
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, ierr
		}}}
}

// scrapeSourceDelay reads meridian_source_delay_seconds (the filtered
// sample's round trip) from meridiand's metrics.
func scrapeSourceDelay(c *http.Client, addr netip.AddrPort) (int64, bool) {
	resp, err := c.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "meridian_source_delay_seconds{") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			return 0, false
		}
		return int64(math.Round(v * 1e9)), true
	}
	return 0, false
}
