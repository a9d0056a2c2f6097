package accuracy

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/meridiantime/meridian/impair"
)

// Report is the raw result of a run of paths (meridian-bench writes it as
// accuracy.json). Nanoseconds unless named otherwise.
type Report struct {
	Server           string       `json:"server"`
	InjectedOffsetNS int64        `json:"injected_offset_ns"` // the server's clock − the host clock
	WarmupS          float64      `json:"warmup_s"`
	MeasureS         float64      `json:"measure_s"`
	XLeave           bool         `json:"xleave,omitempty"` // the NTP clients used interleaved mode
	Paths            []PathResult `json:"paths"`
}

// PathResult is one path.
type PathResult struct {
	Path        string             `json:"path"`
	Impairment  string             `json:"impairment"`
	Groups      []GroupResult      `json:"groups"`
	Contestants []ContestantResult `json:"contestants"`
}

// GroupResult is one pair of namespaces and its server.
type GroupResult struct {
	Contestants []string           `json:"contestants"`
	Calibration impair.Calibration `json:"calibration"` // the wire's own overhead in user space, back to back
	// Stamped is the overhead per direction as kernel stamps see it in a
	// client's rhythm; its overheads are what was subtracted.
	Stamped impair.StampedCalibration `json:"stamped_calibration"`
	// Probe is the wire as kernel stamps saw it during the run (the
	// measured physics).
	Probe ProbeResult  `json:"probe"`
	Wire  impair.Stats `json:"wire"`
	// MinDelayNS is the smallest round trip any client of the group
	// reported; ProvableMinNS half of it (0: none reported).
	MinDelayNS    int64 `json:"min_delay_ns"`
	ProvableMinNS int64 `json:"provable_min_ns"`
	// The witness: the server's own segment read against host + injected
	// once a second (meridiand server only). A server true to the truth
	// stays within a few µs.
	ServerReads      int   `json:"server_reads"`
	ServerDriftMaxNS int64 `json:"server_drift_max_ns"` // max |server midpoint − (host + injected)|
}

// ProbeResult is what the stamped probe (impair.StampProbe, one exchange
// every probeEvery from the group's start to the end of sampling) measured:
// each direction's one-way delay, kernel stamp to kernel stamp, less the
// base delay configured for it at the time (its "excess": the wire's
// overhead left after the calibrated subtraction, plus jitter).
//
// The physics of a path is what its asymmetry forces on any two-way
// client. PhysicsNS takes it from the configured delays, which holds when
// the calibration made before the run was exact; but the wire's overhead
// moves with the machine's load (its request-direction floor differed by
// 15–50 µs between runs). The probe is itself a two-way client with a
// perfect clock (both ends stamp on the one kernel's clock), so what it
// measures is the physics: BiasNS is the median offset, (a→b excess − b→a
// excess)/2, of its exchanges in the lowest tenth by round trip — what a
// client that trusts its least-delayed exchanges must show on top of
// PhysicsNS — and PhysicsNS + BiasNS, the measured physics, is the
// yardstick of the *Measured* error figures. BiasAllNS (the median over every
// exchange: what a client averaging all of them would show) and
// BiasFloorsNS (half the difference of the two directions' minima, taken
// from different exchanges) say how much the yardstick depends on which
// exchanges a client trusts.
type ProbeResult struct {
	Exchanges       int   `json:"exchanges"`
	AtoBLegs        int   `json:"a_to_b_legs"`
	BtoALegs        int   `json:"b_to_a_legs"`
	Pairs           int   `json:"pairs"` // exchanges with both legs
	AtoBExcessMinNS int64 `json:"a_to_b_excess_min_ns"`
	AtoBExcessP5NS  int64 `json:"a_to_b_excess_p5_ns"`
	AtoBExcessP50NS int64 `json:"a_to_b_excess_p50_ns"`
	BtoAExcessMinNS int64 `json:"b_to_a_excess_min_ns"`
	BtoAExcessP5NS  int64 `json:"b_to_a_excess_p5_ns"`
	BtoAExcessP50NS int64 `json:"b_to_a_excess_p50_ns"`
	BiasNS          int64 `json:"bias_ns"`
	BiasAllNS       int64 `json:"bias_all_ns"`
	BiasFloorsNS    int64 `json:"bias_floors_ns"`
	// Valid: at least minProbePairs exchanges with both legs; otherwise
	// BiasNS is 0 and the measured figures equal the configured ones.
	Valid bool `json:"valid"`
}

// minProbePairs is how many complete exchanges the bias needs (of which
// the lowest tenth by round trip, at least minProbeLow, are used).
const (
	minProbePairs = 40
	minProbeLow   = 10
)

// probeResult summarizes the legs of g's probe sent in [from, to].
func (g *group) probeResult(from, to time.Time) ProbeResult {
	if g.probe == nil {
		return ProbeResult{}
	}
	return summarizeProbe(g.probe.Legs(), g.cfg, g.configured, from, to)
}

// summarizeProbe summarizes the legs sent in [from, to] through a wire
// configured with cfg at configured.
func summarizeProbe(legs []impair.StampedLegs, cfg impair.Config, configured, from, to time.Time) ProbeResult {
	var pr ProbeResult
	var ab, ba []int64
	type pair struct{ rtt, off int64 }
	var pairs []pair
	for _, l := range legs {
		if l.At.Before(from) || l.At.After(to) {
			continue
		}
		pr.Exchanges++
		since := l.At.Sub(configured)
		xa, xb := int64(l.AtoB-delayAt(cfg.AtoB, since)), int64(l.BtoA-delayAt(cfg.BtoA, since))
		if l.AtoB > 0 {
			ab = append(ab, xa)
		}
		if l.BtoA > 0 {
			ba = append(ba, xb)
		}
		if l.AtoB > 0 && l.BtoA > 0 {
			pairs = append(pairs, pair{rtt: xa + xb, off: (xa - xb) / 2})
		}
	}
	pr.AtoBLegs, pr.BtoALegs, pr.Pairs = len(ab), len(ba), len(pairs)
	if len(pairs) < minProbePairs {
		return pr
	}
	pr.Valid = true
	pr.AtoBExcessMinNS, pr.AtoBExcessP5NS, pr.AtoBExcessP50NS = Quantile(ab, 0), Quantile(ab, .05), Quantile(ab, .5)
	pr.BtoAExcessMinNS, pr.BtoAExcessP5NS, pr.BtoAExcessP50NS = Quantile(ba, 0), Quantile(ba, .05), Quantile(ba, .5)
	pr.BiasFloorsNS = (pr.AtoBExcessMinNS - pr.BtoAExcessMinNS) / 2
	offs := make([]int64, len(pairs))
	for i, p := range pairs {
		offs[i] = p.off
	}
	pr.BiasAllNS = Quantile(offs, .5)
	slices.SortFunc(pairs, func(a, b pair) int { return cmp.Compare(a.rtt, b.rtt) })
	low := pairs[:max(minProbeLow, len(pairs)/10)]
	offs = offs[:0]
	for _, p := range low {
		offs = append(offs, p.off)
	}
	pr.BiasNS = Quantile(offs, .5)
	return pr
}

// ContestantResult is one contestant on one path. The series run from the
// start of sampling (t = 0) to its end; the statistics cover the measured
// span after the warm-up.
type ContestantResult struct {
	Name             string `json:"name"`
	Path             string `json:"path"`
	Measured         string `json:"measured"`           // how its error is read
	SampleIntervalNS int64  `json:"sample_interval_ns"` // Meridian: the read interval; peers: their median spacing, to 100 ms
	StartedNS        int64  `json:"started_ns"`         // its start, relative to t = 0 (≤ 0)
	FirstSyncNS      int64  `json:"first_sync_ns"`      // from its start to its first synchronized sample; −1: never

	// The series: at TNS[i] (since t = 0) the error ErrNS[i] = estimate −
	// truth; EpsNS[i] the interval's half-width (Meridian only).
	TNS   []int64 `json:"t_ns"`
	ErrNS []int64 `json:"err_ns"`
	EpsNS []int64 `json:"eps_ns,omitempty"`

	// Over the measured span. AbsErr figures are |error − physics|, the
	// offset the path's asymmetry forces on any two-way client.
	Samples        int   `json:"samples"`
	MedianErrNS    int64 `json:"median_err_ns"`    // signed
	MedianOffsetNS int64 `json:"median_offset_ns"` // error + injected: what it measured against the host clock
	P50AbsErrNS    int64 `json:"p50_abs_err_ns"`
	P99AbsErrNS    int64 `json:"p99_abs_err_ns"`
	// The same from the measured physics (PhysicsNS + the group's
	// ProbeResult.BiasNS): the yardstick the comparison uses.
	P50AbsErrMeasuredNS int64 `json:"p50_abs_err_measured_ns"`
	P99AbsErrMeasuredNS int64 `json:"p99_abs_err_measured_ns"`
	MinDelayNS          int64 `json:"min_delay_ns,omitempty"` // the smallest round trip it reported
	// Interleaved (NTP clients): meridian-ntp: its interleaved samples over
	// the run; chronyd-ntp: its once-a-second reports whose last exchange
	// was interleaved.
	Interleaved int64 `json:"interleaved,omitempty"`

	// Meridian only. Containment counts the whole run, warm-up included.
	Unsynchronized    int      `json:"unsynchronized,omitempty"` // reads refused in the measured span
	CheckedReads      int64    `json:"checked_reads,omitempty"`
	Violations        int64    `json:"violations"`
	ViolationExamples []string `json:"violation_examples,omitempty"`
	ControlViolations int64    `json:"control_violations,omitempty"` // the same reads with ε/100
	LooseReads        int64    `json:"loose_reads,omitempty"`        // host reads > 20 µs apart even after retries
	Coverage          *float64 `json:"coverage,omitempty"`           // (checked − violations) / checked
	EpsP50NS          int64    `json:"eps_p50_ns,omitempty"`
	// EpsOverProvable is the median over reads of ε / (the smallest δ/2 +
	// 15 ppm × its age, over every round trip the group saw by then).
	EpsOverProvable float64 `json:"eps_over_provable,omitempty"`
}

// IsMeridian reports whether name is one of our clients.
func IsMeridian(name string) bool { return name == MeridianNTP || name == MeridianPTP }

// Quantile is the nearest-rank q-quantile (index ⌊q·(n−1)⌋ of the sorted
// values); it sorts a copy. 0 for no values.
func Quantile(v []int64, q float64) int64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1))]
}

func abs64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// Result summarizes the run; call it after Sample.
func (r *Run) Result() PathResult {
	pr := PathResult{Path: r.path.Name, Impairment: Describe(r.path.Impair)}
	bias := map[*group]int64{}
	for _, g := range r.groups {
		gr := GroupResult{Contestants: g.names, Calibration: g.cal, Stamped: g.stamped, Wire: g.pair.Wire.Stats(),
			Probe: g.probeResult(r.begin, r.end)}
		bias[g] = gr.Probe.BiasNS
		g.mu.Lock()
		for _, d := range g.delays {
			if gr.MinDelayNS == 0 || d.ns < gr.MinDelayNS {
				gr.MinDelayNS = d.ns
			}
		}
		gr.ProvableMinNS = gr.MinDelayNS / 2
		gr.ServerReads = len(g.witness)
		for _, w := range g.witness {
			gr.ServerDriftMaxNS = max(gr.ServerDriftMaxNS, abs64(w))
		}
		g.mu.Unlock()
		pr.Groups = append(pr.Groups, gr)
	}
	warmEnd := r.begin.Add(r.opts.Warmup)
	for _, c := range r.cs {
		cr := ContestantResult{Name: c.name, Path: r.path.Name, SampleIntervalNS: int64(peerEvery),
			StartedNS: int64(c.proc.started.Sub(r.begin)), FirstSyncNS: -1}
		switch c.name {
		case MeridianNTP, MeridianPTP:
			cr.Measured = "shm segment read in-process against CLOCK_REALTIME + injected offset"
			cr.SampleIntervalNS = int64(meridianEvery)
		case ChronydNTP:
			cr.Measured = "chronyc tracking system time (chronyd -x) − injected offset"
		case Ptp4lPTP:
			cr.Measured = "ptp4l master offset lines (free_running 1: raw per-Sync measurements) − injected offset"
		}
		c.mu.Lock()
		var errs, abss, mabss, eps, offs []int64
		var ratios []float64
		for _, o := range c.obs {
			if o.synced && cr.FirstSyncNS < 0 {
				cr.FirstSyncNS = int64(o.at.Sub(c.proc.started))
			}
			if o.at.Before(r.begin) || o.at.After(r.end) {
				continue
			}
			measuring := !o.at.Before(warmEnd)
			if !o.synced {
				if measuring {
					cr.Unsynchronized++
				}
				continue
			}
			cr.TNS = append(cr.TNS, int64(o.at.Sub(r.begin)))
			cr.ErrNS = append(cr.ErrNS, o.errNS)
			if IsMeridian(c.name) {
				cr.EpsNS = append(cr.EpsNS, o.epsNS)
			}
			if !measuring {
				continue
			}
			phys := PhysicsNS(c.g.cfg, o.at.Sub(c.g.configured))
			errs = append(errs, o.errNS)
			offs = append(offs, o.errNS+r.opts.InjectedOffsetNS)
			abss = append(abss, abs64(o.errNS-phys))
			mabss = append(mabss, abs64(o.errNS-phys-bias[c.g]))
			if IsMeridian(c.name) {
				eps = append(eps, o.epsNS)
				if o.ratio > 0 {
					ratios = append(ratios, o.ratio)
				}
			}
		}
		if !IsMeridian(c.name) {
			cr.SampleIntervalNS = medianInterval(cr.TNS, int64(peerEvery))
		}
		cr.Samples = len(errs)
		cr.MedianErrNS, cr.MedianOffsetNS = Quantile(errs, .5), Quantile(offs, .5)
		cr.P50AbsErrNS, cr.P99AbsErrNS = Quantile(abss, .5), Quantile(abss, .99)
		cr.P50AbsErrMeasuredNS, cr.P99AbsErrMeasuredNS = Quantile(mabss, .5), Quantile(mabss, .99)
		cr.Interleaved = c.interleaved
		if c.minDelay != math.MaxInt64 {
			cr.MinDelayNS = c.minDelay
		}
		if IsMeridian(c.name) {
			cr.CheckedReads, cr.Violations, cr.ControlViolations, cr.LooseReads = c.checked, c.violations, c.control, c.loose
			cr.ViolationExamples = slices.Clone(c.examples)
			if c.checked > 0 {
				cov := float64(c.checked-c.violations) / float64(c.checked)
				cr.Coverage = &cov
			}
			cr.EpsP50NS = Quantile(eps, .5)
			if len(ratios) > 0 {
				slices.Sort(ratios)
				cr.EpsOverProvable = ratios[len(ratios)/2]
			}
		}
		c.mu.Unlock()
		pr.Contestants = append(pr.Contestants, cr)
	}
	return pr
}

// Contestant returns the named contestant's result, or nil.
func (p *PathResult) Contestant(name string) *ContestantResult {
	for i := range p.Contestants {
		if p.Contestants[i].Name == name {
			return &p.Contestants[i]
		}
	}
	return nil
}

// Group returns the group holding the named contestant, or nil.
func (p *PathResult) Group(name string) *GroupResult {
	for i := range p.Groups {
		if slices.Contains(p.Groups[i].Contestants, name) {
			return &p.Groups[i]
		}
	}
	return nil
}

// Seconds is ns in seconds.
func Seconds(ns int64) float64 { return float64(ns) / float64(time.Second) }

// medianInterval is the median spacing of ts rounded to 100 ms (at least
// 100 ms; def with fewer than two samples): a peer's own pace (ptp4l
// reports once per granted Sync interval) is the series' τ0.
func medianInterval(ts []int64, def int64) int64 {
	if len(ts) < 2 {
		return def
	}
	d := make([]int64, 0, len(ts)-1)
	for i := 1; i < len(ts); i++ {
		d = append(d, ts[i]-ts[i-1])
	}
	const step = int64(100 * time.Millisecond)
	return max(step, (Quantile(d, .5)+step/2)/step*step)
}
