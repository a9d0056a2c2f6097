package discipline

import (
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/meridiantime/meridian/truetime"
)

// segment is one stretch during which the servo's frequency correction was
// constant. Local readings L map to the free-running timescale U (what the
// oscillator alone would read) by U = u0 + (L − l0)/(1 + freq). Steps start a
// new segment with a new l0 and the same U, so U is continuous across every
// correction the discipline makes. Samples are stored in U terms, so they
// stay valid across steps and frequency changes.
type segment struct {
	l0   int64   // local reading at the start, ns
	u0   float64 // U at l0, ns relative to Discipline.epochL
	freq float64 // correction during the segment, dimensionless
}

const maxSegments = 64

// rawSample is a Sample translated to the free-running timescale.
type rawSample struct {
	u, xr, boundNS float64 // U at the midpoint; U − true time; |error| bound
	localNS        int64
	delayNS        int64
	rootDelayNS    int64
	rootDispNS     int64
	stratum        uint8
	leap           truetime.Leap
	refID          uint32
}

type source struct {
	name        string
	unreachable bool // SetUnreachable: out of selection until it answers
	opt         SourceOptions
	samples     []rawSample // oldest first, at most FilterLen
	usedU       float64     // U of the newest sample a selection has used
	report      SourceReport
	tc          trendCache
}

// Discipline is the pure core: samples and local clock readings in,
// clock corrections and TrueTime estimates out. It never reads a clock.
// It is not safe for concurrent use.
type Discipline struct {
	cfg    Config
	epochL int64
	segs   []segment
	srcs   map[string]*source

	reg      []point
	fit      fit
	trendSc  trendScratch
	freq     float64 // applied correction c, dimensionless
	integ    float64 // PI integrator (dimensionless frequency)
	lastPIL  int64
	updates  int // updates that selected sources
	est      truetime.Estimate
	haveEst  bool
	lastNow  int64
	priorS   float64
	reports  []SourceReport
	spansBuf []span

	faults      int // selections that missed the carried-forward estimate
	floorRaises int // estimates widened so TrueTime does not go backwards
	// floorNS is the largest earliest bound any estimate can have handed
	// out (true time, ns).
	floorNS int64
	hull    hull // the last update's proven interval (see carryForward)
}

// Disrupted forgets everything measured against the local clock before a
// disruption (a suspend or VM pause stopped the raw counter, a VMClock
// marker moved): samples, the regression and the estimate, since the gap
// between the oscillator's timescale and true time is not known well enough
// to carry them across. The frequency correction and the TrueTime floor
// stay. The clock is unsynchronized until new samples, and may be stepped
// again as at a start.
func (d *Discipline) Disrupted(nowNS int64) {
	if d.haveEst {
		d.noteFloor(nowNS)
	}
	for _, src := range d.srcs {
		src.samples = src.samples[:0]
		src.usedU = 0
	}
	d.resetRegression()
	d.est = truetime.Estimate{Status: truetime.Unsynchronized, MaxErrorNS: d.cfg.MaxErrorNS, FreqPPB: d.freq * 1e9}
	d.haveEst = false
	d.updates = 0
}

// Faults counts selections that missed the previous estimate carried
// forward: a reference stepped, or the assumptions broke.
func (d *Discipline) Faults() int { return d.faults }

// FloorRaises counts estimates widened to keep TrueTime monotonic.
func (d *Discipline) FloorRaises() int { return d.floorRaises }

// New returns a discipline whose clock currently reads nowNS with frequency
// correction cfg.InitialFreqPPB already applied. Zero fields of cfg take
// DefaultConfig values.
func New(cfg Config, nowNS int64) (*Discipline, error) {
	def := DefaultConfig()
	if cfg.MinSources == 0 {
		cfg.MinSources = def.MinSources
	}
	if cfg.DriftBoundPPB == 0 {
		cfg.DriftBoundPPB = def.DriftBoundPPB
	}
	if cfg.OscillatorTolerancePPB == 0 {
		cfg.OscillatorTolerancePPB = def.OscillatorTolerancePPB
	}
	if cfg.MaxFreqPPB == 0 {
		cfg.MaxFreqPPB = def.MaxFreqPPB
	}
	if cfg.MaxErrorNS == 0 {
		cfg.MaxErrorNS = def.MaxErrorNS
	}
	if cfg.PrecisionNS == 0 {
		cfg.PrecisionNS = def.PrecisionNS
	}
	if cfg.FilterLen == 0 {
		cfg.FilterLen = def.FilterLen
	}
	if cfg.RegressionLen == 0 {
		cfg.RegressionLen = def.RegressionLen
	}
	if cfg.SlewTimeConstantNS == 0 {
		cfg.SlewTimeConstantNS = def.SlewTimeConstantNS
	}
	if cfg.HoldoverAfterNS == 0 {
		cfg.HoldoverAfterNS = 4 * cfg.SlewTimeConstantNS
	}
	switch {
	case cfg.MinSources < 1:
		return nil, fmt.Errorf("discipline: min sources must be ≥ 1, got %d", cfg.MinSources)
	case cfg.DriftBoundPPB < 0 || math.IsNaN(cfg.DriftBoundPPB):
		return nil, fmt.Errorf("discipline: drift bound must be ≥ 0, got %v ppb", cfg.DriftBoundPPB)
	case cfg.OscillatorTolerancePPB < 0 || math.IsNaN(cfg.OscillatorTolerancePPB):
		return nil, fmt.Errorf("discipline: oscillator tolerance must be ≥ 0, got %v ppb", cfg.OscillatorTolerancePPB)
	case cfg.MaxFreqPPB <= 0 || math.IsNaN(cfg.MaxFreqPPB):
		return nil, fmt.Errorf("discipline: max frequency must be > 0, got %v ppb", cfg.MaxFreqPPB)
	case math.IsNaN(cfg.InitialFreqPPB) || math.Abs(cfg.InitialFreqPPB) > cfg.MaxFreqPPB:
		return nil, fmt.Errorf("discipline: initial frequency %v ppb outside ±%v ppb", cfg.InitialFreqPPB, cfg.MaxFreqPPB)
	case cfg.MaxErrorNS < 0 || cfg.PrecisionNS < 0 || cfg.StepThresholdNS < 0:
		return nil, errors.New("discipline: max error, precision and step threshold must be ≥ 0")
	case cfg.FilterLen < 1 || cfg.RegressionLen < 2:
		return nil, fmt.Errorf("discipline: filter length %d must be ≥ 1 and regression length %d ≥ 2", cfg.FilterLen, cfg.RegressionLen)
	case cfg.SlewTimeConstantNS < 0 || cfg.HoldoverAfterNS < 0:
		return nil, errors.New("discipline: slew time constant and holdover time must be ≥ 0")
	case cfg.Servo != ServoLinReg && cfg.Servo != ServoPI:
		return nil, fmt.Errorf("discipline: unknown servo %v", cfg.Servo)
	}
	c := cfg.InitialFreqPPB * 1e-9
	d := &Discipline{
		cfg:     cfg,
		epochL:  nowNS,
		segs:    []segment{{l0: nowNS, u0: 0, freq: c}},
		srcs:    make(map[string]*source),
		freq:    c,
		integ:   c,
		lastPIL: nowNS,
		lastNow: nowNS,
		// The oscillator's own rate error s (dxr/du) is what the drift file's
		// correction cancelled: c + s = 0.
		priorS: -c,
	}
	return d, nil
}

// FreqPPB is the frequency correction the discipline last asked for: what a
// drift file should hold.
func (d *Discipline) FreqPPB() float64 { return d.freq * 1e9 }

// Estimate is the last estimate Update produced.
func (d *Discipline) Estimate() truetime.Estimate { return d.est }

// uAt maps a local reading (relative to epoch, may be fractional) to U.
func (d *Discipline) uAt(lRel float64) float64 {
	for i := len(d.segs) - 1; i >= 0; i-- {
		s := d.segs[i]
		if l0 := float64(s.l0 - d.epochL); lRel >= l0 || i == 0 {
			return s.u0 + (lRel-l0)/(1+s.freq)
		}
	}
	panic("unreachable")
}

func (d *Discipline) pushSegment(s segment) {
	if n := len(d.segs); n > 0 && d.segs[n-1].l0 == s.l0 {
		d.segs[n-1] = s
		return
	}
	if len(d.segs) == maxSegments {
		copy(d.segs, d.segs[1:])
		d.segs = d.segs[:maxSegments-1]
	}
	d.segs = append(d.segs, s)
}

// AddSample records one measurement from the named source. The exchange must
// not span a clock step: callers discard exchanges in flight when they apply
// a Correction with a non-zero StepNS.
func (d *Discipline) AddSample(name string, s Sample) error {
	if err := s.Validate(); err != nil {
		return fmt.Errorf("%w (source %s)", err, name)
	}
	src := d.srcs[name]
	if src == nil {
		src = &source{name: name}
		d.srcs[name] = src
	}
	mid := s.T1NS + (s.T4NS-s.T1NS)/2
	// The exchange on the free-running timescale U: the local stamps t1
	// and t4 are converted through the recorded corrections, so a
	// correction applied between them bends nothing. U runs at the
	// oscillator's rate 1 + s with |s| ≤ rateBound.
	u1, u4 := d.uAt(float64(s.T1NS-d.epochL)), d.uAt(float64(s.T4NS-d.epochL))
	t2, t3 := float64(s.T2NS-d.epochL), float64(s.T3NS-d.epochL)
	serverSpan := t3 - t2
	// δ on U; never less than on the local clock (the two differ by the
	// correction's rate over t4 − t1), so the bound takes the larger.
	delay := math.Max((u4-u1)-serverSpan, float64(s.DelayNS()))
	rateBound := d.rateBound()
	bound := float64(s.RootDelayNS)/2 + float64(s.RootDispersionNS) + float64(d.cfg.PrecisionNS) +
		// The oscillator's rate error skews the local span t4 − t1: δ is
		// measured short or long by s·(t4 − t1). The round trip's share
		// keeps the a-priori bound (tolerance and correction range), as
		// it always had; the server's span |t3 − t2| — microseconds for
		// NTP, the wait between a Sync and the Delay_Req sent behind it
		// for PTP, which any caller may make long — is covered at the
		// rate's bound.
		delay*(d.cfg.OscillatorTolerancePPB+d.cfg.MaxFreqPPB)*1e-9 + math.Abs(serverSpan)*rateBound
	if !d.cfg.Ablation.OmitPathDelay {
		bound += delay / 2 // asymmetry: the one-way split of δ is unknown
	}
	u := (u1 + u4) / 2
	// Compare on the free-running timescale: local readings go back after a
	// negative step, U never does.
	if n := len(src.samples); n > 0 && u <= src.samples[n-1].u {
		return fmt.Errorf("discipline: source %s: sample at %d is not newer than the last (%d)", name, mid, src.samples[n-1].localNS)
	}
	// U − source time at the exchange's midpoint on U: exact for a linear
	// U, which the midpoint on the local clock is not when a correction
	// changed its rate in between.
	xr := ((u1 - t2) + (u4 - t3)) / 2
	rs := rawSample{
		u: u, xr: xr, boundNS: bound,
		localNS: mid, delayNS: s.DelayNS(),
		rootDelayNS: s.RootDelayNS, rootDispNS: s.RootDispersionNS,
		stratum: s.Stratum, leap: s.Leap, refID: s.RefID,
	}
	if len(src.samples) == d.cfg.FilterLen {
		copy(src.samples, src.samples[1:])
		src.samples = src.samples[:len(src.samples)-1]
	}
	src.samples = append(src.samples, rs)
	return nil
}

// rate returns the raw frequency estimate s and the bound on its error.
func (d *Discipline) rate() (s, unc float64) {
	if d.rateFromFit() {
		return d.fit.slope, d.fit.slopeUnc
	}
	return d.priorS, d.priorUnc()
}

// priorUnc bounds the rate before any fit: the oscillator tolerance
// around the prior estimate.
func (d *Discipline) priorUnc() float64 {
	return d.cfg.OscillatorTolerancePPB*1e-9 + math.Abs(d.priorS)
}

// rateFromFit says whether rate() comes from the regression: a fit whose
// slope bound is tighter than the prior's.
func (d *Discipline) rateFromFit() bool { return d.fit.ok && d.fit.slopeUnc < d.priorUnc() }

// rateBound bounds the oscillator's rate error |s| now: the estimate's
// magnitude plus its error bound (rate), never more than the configured
// tolerance, which holds by assumption.
func (d *Discipline) rateBound() float64 {
	est, unc := d.rate()
	return math.Min(d.cfg.OscillatorTolerancePPB*1e-9, math.Abs(est)+unc) + d.cfg.DriftBoundPPB*1e-9
}

// filterRateUnc is the rate uncertainty the clock filter ages samples by,
// given the bound unc that rate() returned: three standard errors of the
// regression's slope while the rate comes from the regression (capped at
// unc/16), unc/16 otherwise (the prior: no fit yet, or a window no line
// passed through). A statistic, never a bound: it only weighs samples.
func (d *Discipline) filterRateUnc(unc float64) float64 {
	if d.rateFromFit() && d.fit.slopeSD > 0 {
		return math.Min(unc/16, 3*d.fit.slopeSD)
	}
	return unc / 16
}

// growth is how fast an aged bound widens per ns of U.
func (d *Discipline) growth() float64 {
	if d.cfg.Ablation.OmitDrift {
		return 0
	}
	_, unc := d.rate()
	return unc + d.cfg.DriftBoundPPB*1e-9
}

// candidate is one source's interval for the selection stage: local minus
// true time at the update, centre ± half.
type candidate struct {
	src    *source
	sample rawSample // the newest sample, whose interval this is
	center float64
	half   float64
	filt   filtered // the clock filter's estimate, for steering
}

// Update runs the stages filter → select → combine/holdover → servo →
// estimate for local reading nowNS. The caller applies the returned
// Correction to the clock at once and publishes the Estimate.
func (d *Discipline) Update(nowNS int64) Update {
	d.lastNow = nowNS
	uNow := d.uAt(float64(nowNS - d.epochL))
	names := d.sourceNames()
	cands := d.filter(names, uNow)
	lo, hi, selected, ok := d.selectSources(cands)
	prevLo, prevHi, havePrev := d.carryForward(nowNS)

	fresh := false
	for _, c := range selected {
		if c.sample.u > c.src.usedU {
			fresh = true
		}
	}
	var steer, hullC, hullH float64
	var est truetime.Estimate
	status := truetime.Unsynchronized
	switch {
	case ok:
		lone := len(cands) == 1
		// A lone source's own interval is the regression's point: covering
		// it with the previous estimate (below) would let a step of the
		// source hide inside a wide point, and the frequency would then mix
		// its old and new timescale. A step shows up instead as points the
		// fitted line cannot pass through (see refit).
		regLo, regHi := lo, hi
		lo, hi = d.mergeWithPrevious(lo, hi, prevLo, prevHi, havePrev, fresh, lone)
		if !lone {
			regLo, regHi = lo, hi
		}
		hullC, hullH = (lo+hi)/2, (hi-lo)/2
		steer, est = d.combine(nowNS, lo, hi, selected)
		status = est.Status
		if fresh {
			for _, c := range selected {
				c.src.usedU = max(c.src.usedU, c.sample.u)
			}
			d.updates++
			d.addRegressionPoint(uNow, nowNS, regLo, regHi, len(selected) < 2)
		}
	case havePrev:
		hullC, hullH = (prevLo+prevHi)/2, (prevHi-prevLo)/2
		steer = hullC
		status = truetime.Holdover
		est = d.est
		est.Status = status
		est.OffsetNS = steer
		est.Eps0NS = int64(math.Ceil((prevHi - prevLo) / 2))
	}

	u := Update{}
	if status == truetime.Unsynchronized {
		d.goUnsynchronized(nowNS, uNow, &u)
		u.Sources = d.collectReports(names)
		return u
	}
	local := d.servoStep(nowNS, uNow, ok && fresh, &steer, &est, &u)
	d.finishEstimate(nowNS, local, &est)
	d.est, d.haveEst = est, est.Status != truetime.Unsynchronized
	// What the next update intersects with: the hull itself, not the
	// published interval (centred on the filter, floor-raised, plus the
	// reader's precision), which would widen it at every update.
	d.hull = hull{off: hullC + float64(u.Correction.StepNS), half: hullH, localNS: local}
	u.Estimate = est
	u.Sources = d.collectReports(names)
	return u
}

// SetUnreachable takes a source out of selection (true) or lets it back
// (false), as its reachability register says: a source that answered none
// of its last 8 polls no longer speaks for the time, however wide its last
// sample has grown (chrony does the same). Its samples are kept: when it
// answers again its filter resumes. The previous estimate, carried
// forward, keeps what its samples proved.
func (d *Discipline) SetUnreachable(name string, unreachable bool) {
	src, ok := d.srcs[name]
	if !ok {
		if !unreachable {
			return
		}
		src = &source{name: name}
		d.srcs[name] = src
	}
	src.unreachable = unreachable
}

// SetSourceOptions sets a source's selection options (the source need not
// have sent a sample yet).
func (d *Discipline) SetSourceOptions(name string, o SourceOptions) {
	src, ok := d.srcs[name]
	if !ok {
		src = &source{name: name}
		d.srcs[name] = src
	}
	src.opt = o
}

// RemoveSource forgets a source and its samples (a source taken out of
// the configuration). The previous estimate, carried forward, keeps what
// they proved.
func (d *Discipline) RemoveSource(name string) { delete(d.srcs, name) }

func (d *Discipline) sourceNames() []string {
	names := make([]string, 0, len(d.srcs))
	for n := range d.srcs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// filter turns each source's samples into one candidate interval for the
// offset now. Only the newest sample speaks for a source: an older sample
// may date from before the source changed behaviour (a liar that became
// honest still has its lies in the filter), and the selection's majority
// argument holds for what each source says now, not for what it said once.
// What older samples knew is not lost: the previous estimate, carried
// forward and intersected with every new selection, keeps the tightest
// bound any past selection proved.
func (d *Discipline) filter(names []string, uNow float64) []candidate {
	cNow := float64(d.lastNow-d.epochL) - uNow // L − U at now
	sRate, unc := d.rate()
	g := d.growth()
	cands := make([]candidate, 0, len(names))
	d.reports = d.reports[:0]
	for _, n := range names {
		src := d.srcs[n]
		src.report = SourceReport{Name: n, State: SourceUnused, Samples: len(src.samples)}
		if src.unreachable {
			src.report.State = SourceUnreachable
		}
		if len(src.samples) == 0 {
			continue
		}
		last := src.samples[len(src.samples)-1]
		age := math.Abs(uNow - last.u)
		half := last.boundNS + g*age
		center := last.xr + sRate*(uNow-last.u) + cNow
		var jit float64
		for _, rs := range src.samples {
			c := rs.xr + sRate*(uNow-rs.u) + cNow
			jit += (c - center) * (c - center)
		}
		src.report.OffsetNS = center
		src.report.DelayNS = last.delayNS
		src.report.BoundNS = half
		src.report.Stratum = last.stratum
		src.report.LastLocalNS = last.localNS
		src.report.PollTargetNS = pollTarget(src.samples, g)
		if len(src.samples) > 1 {
			src.report.JitterNS = math.Sqrt(jit / float64(len(src.samples)-1))
		}
		switch {
		case src.unreachable:
		case src.opt.NoSelect:
			src.report.State = SourceNoSelect
		case src.opt.MaxDistanceNS > 0 && half > float64(src.opt.MaxDistanceNS):
			src.report.State = SourceTooFar
		case half <= float64(d.cfg.MaxErrorNS):
			f := filterTrended(src.samples, uNow, cNow, sRate, d.filterRateUnc(unc), &src.tc, &d.trendSc)
			src.report.OffsetNS = f.center
			cands = append(cands, candidate{src: src, sample: last, center: center, half: half, filt: f})
		}
	}
	return cands
}

// selectSources finds the hull of points covered by a majority of the
// candidates and marks each source selected, falseticker or too few.
func (d *Discipline) selectSources(cands []candidate) (lo, hi float64, selected []candidate, ok bool) {
	spans := d.spansBuf[:0]
	for _, c := range cands {
		spans = append(spans, span{c.center - c.half, c.center + c.half})
	}
	d.spansBuf = spans
	lo, hi, ok = intersect(spans, len(spans)-maxLiars(len(spans)))
	if !ok {
		return 0, 0, nil, false
	}
	for _, c := range cands {
		if c.center+c.half >= lo && c.center-c.half <= hi {
			c.src.report.State = SourceSelected
			selected = append(selected, c)
		} else {
			c.src.report.State = SourceFalseticker
		}
	}
	if len(selected) < d.cfg.MinSources {
		for _, c := range selected {
			c.src.report.State = SourceTooFew
		}
		return 0, 0, nil, false
	}
	return lo, hi, selected, true
}

// hull is the proven interval of the last update (local minus true time,
// centre ± half at local reading localNS), carried forward by the next.
type hull struct {
	off, half float64
	localNS   int64
}

// carryForward is the previous update's hull at nowNS: still a valid bound
// under the same drift assumption, moving at the estimate's rates.
func (d *Discipline) carryForward(nowNS int64) (lo, hi float64, ok bool) {
	if !d.haveEst || d.est.Status == truetime.Unsynchronized {
		return 0, 0, false
	}
	dt := float64(nowNS - d.hull.localNS)
	off := d.hull.off + d.est.SkewPPB*dt*1e-9
	eps := d.hull.half + (d.est.DriftBoundPPB+d.est.FreqUncPPB)*math.Abs(dt)*1e-9
	if eps > float64(d.cfg.MaxErrorNS) {
		return 0, 0, false
	}
	return off - eps, off + eps, true
}

// mergeWithPrevious intersects the new selection with the previous
// estimate carried forward. Within the assumptions both contain true time,
// so they overlap; when they do not, an assumption broke (a lone or
// majority reference stepped, or the oscillator left the drift bound): that
// is a fault, not a sample to fit. The estimate then covers both (the
// reference's old and new time, as chrony widens its dispersion in the same
// event) and the frequency regression starts afresh, since its points
// straddle the fault.
//
// A lone source has no majority to outvote a step that stays within its
// advertised error, and a partial intersection could then exclude both its
// old and its new time (the reference's time may lie anywhere in the new
// interval). So for a lone source the result is always one whole interval:
// the inner one when they nest, else the narrower of the two (no narrower
// interval is sure to hold either time), and both covered together when
// they do not meet (a fault). Every read then holds the reference's old or
// new time. The price is a wider interval than the intersection after an
// honest but jittery reading. A step smaller than the noise does not reset
// the frequency regression: its least-squares slope bound stays sound
// enough for it (sim/scenarios/35-lone-step-within-noise.yaml).
func (d *Discipline) mergeWithPrevious(lo, hi, prevLo, prevHi float64, havePrev, fresh, lone bool) (float64, float64) {
	if !havePrev {
		return lo, hi
	}
	if lone && prevLo <= hi && prevHi >= lo {
		switch {
		case lo >= prevLo && hi <= prevHi, prevLo >= lo && prevHi <= hi:
			// nested: the intersection is one of the two whole intervals
		default:
			// The narrower of the two whole intervals: the previous one
			// holds the reference's old time, the new one its new time,
			// and no interval narrower than both is sure to hold either.
			if hi-lo <= prevHi-prevLo {
				return lo, hi
			}
			return prevLo, prevHi
		}
	}
	if prevLo <= hi && prevHi >= lo {
		return math.Max(lo, prevLo), math.Min(hi, prevHi)
	}
	if fresh {
		d.faults++
		d.resetRegression()
	}
	return math.Min(lo, prevLo), math.Max(hi, prevHi)
}

// centreShift is how far (in hull half-widths) the estimate's centre may
// move from the hull's centre towards the filter's estimate.
const centreShift = 0.5

// combine weights the selected sources into the steering offset and builds
// the estimate's centre, width and reference fields from the hull [lo, hi].
func (d *Discipline) combine(nowNS int64, lo, hi float64, selected []candidate) (float64, truetime.Estimate) {
	var sw, sx float64
	newest := int64(math.MinInt64)
	bestIdx := 0
	leapVotes := map[truetime.Leap]int{}
	minStratum := uint8(255)
	anyPrefer := false
	for _, c := range selected {
		anyPrefer = anyPrefer || c.src.opt.Prefer
	}
	for i, c := range selected {
		// Combined as NTPv4 and chrony do, each source weighted by its
		// distance: here the half-width its filter proved. A preferred
		// source among the selected speaks alone (with the other
		// preferred ones); the hull still comes from all of them.
		if !anyPrefer || c.src.opt.Prefer {
			w := 1 / math.Max(c.filt.half*c.filt.half, 1)
			sw += w
			sx += w * c.filt.center
		}
		if c.half < selected[bestIdx].half {
			bestIdx = i
		}
		newest = max(newest, c.sample.localNS)
		leapVotes[c.sample.leap]++
		minStratum = min(minStratum, c.sample.stratum)
	}
	steer := math.Min(math.Max(sx/sw, lo), hi)
	// The estimate is centred on the filter's estimate, so a reader's
	// best estimate (the midpoint) is as good as the steered clock, within
	// half the hull's half-width of its centre: the interval then covers
	// the hull at most 50 % wider than the hull itself. (A quarter kept ε
	// a little tighter but held the midpoint off the filter's estimate on
	// jittery paths: in the simulator heavy-jitter's midpoint error p99
	// 727 µs against 398 µs, ε/min 1.50 against 1.59.)
	c, half := (lo+hi)/2, (hi-lo)/2
	mid := math.Min(math.Max(steer, c-centreShift*half), c+centreShift*half)
	b := selected[bestIdx].sample
	leap := truetime.LeapNone
	for l, v := range leapVotes {
		if l != truetime.LeapNone && 2*v > len(selected) {
			leap = l
		}
	}
	status := truetime.Synchronized
	if nowNS-newest > d.cfg.HoldoverAfterNS {
		status = truetime.Holdover
	}
	return steer, truetime.Estimate{
		Status:       status,
		Leap:         leap,
		OffsetNS:     mid,
		Eps0NS:       int64(math.Ceil(math.Max(mid-lo, hi-mid))) + d.cfg.PrecisionNS,
		Stratum:      min(minStratum+1, 15),
		RefID:        b.refID,
		RootDelayNS:  b.rootDelayNS + b.delayNS,
		LastSampleNS: newest,
	}
}

// addRegressionPoint records the selection's proven interval as one point
// of the frequency regression. The selection's interval, not each source's
// samples: a hull of a majority holds true time whichever sources lied, so
// the regression's hard slope bound holds too; a liar's samples never enter
// it. lone: the interval rests on one source (see stepRobustUnc).
func (d *Discipline) addRegressionPoint(uNow float64, nowNS int64, lo, hi float64, lone bool) {
	cNow := float64(nowNS-d.epochL) - uNow
	d.reg = append(d.reg, point{u: uNow, xr: (lo+hi)/2 - cNow, boundNS: math.Max((hi-lo)/2, 1), lone: lone})
	d.refit()
}

// goUnsynchronized drops the estimate and holds the best frequency.
func (d *Discipline) goUnsynchronized(nowNS int64, uNow float64, u *Update) {
	if d.haveEst {
		// Lost the bound: stop slewing and hold the best frequency, so an
		// unsynchronized clock drifts as little as it can.
		if hold := d.holdFreq(); hold != d.freq {
			d.freq = hold
			d.pushSegment(segment{l0: nowNS, u0: uNow, freq: hold})
			u.Correction = Correction{SetFreq: true, FreqPPB: hold * 1e9}
		}
		d.noteFloor(nowNS)
		// Re-acquiring may step, as at a start: after a long suspend the
		// clock is hours behind, which max_freq would take months to slew.
		d.updates = 0
	}
	d.est = truetime.Estimate{Status: truetime.Unsynchronized, MaxErrorNS: d.cfg.MaxErrorNS, FreqPPB: d.freq * 1e9}
	d.haveEst = false
	u.Estimate = d.est
}

// servoStep steps the clock when far off (only early on), then sets the
// frequency that cancels the oscillator's rate and slews out the rest. It
// returns the local reading after any step.
func (d *Discipline) servoStep(nowNS int64, uNow float64, freshSample bool, steer *float64, est *truetime.Estimate, u *Update) int64 {
	local := nowNS
	if freshSample && d.cfg.StepThresholdNS > 0 && math.Abs(*steer) > float64(d.cfg.StepThresholdNS) &&
		(d.cfg.StepLimit < 0 || d.updates <= d.cfg.StepLimit) {
		step := -int64(math.Round(*steer))
		u.Correction.StepNS = step
		local = nowNS + step
		d.pushSegment(segment{l0: local, u0: uNow, freq: d.freq})
		*steer += float64(step)
		est.OffsetNS += float64(step)
		est.LastSampleNS += step
	}
	s, _ := d.rate()
	newFreq := d.servo(local, *steer, float64(est.Eps0NS), s, freshSample)
	if newFreq != d.freq {
		d.freq = newFreq
		d.pushSegment(segment{l0: local, u0: uNow, freq: newFreq})
		u.Correction.SetFreq = true
		u.Correction.FreqPPB = newFreq * 1e9
	}
	return local
}

// finishEstimate fills the estimate's rates and limits, keeps TrueTime from
// going backwards, and drops it when it is wider than MaxErrorNS.
func (d *Discipline) finishEstimate(nowNS, local int64, est *truetime.Estimate) {
	s, unc := d.rate()
	est.LocalNS = local
	est.SkewPPB = (d.freq + s) / (1 + d.freq) * 1e9
	est.FreqPPB = d.freq * 1e9
	est.MaxErrorNS = d.cfg.MaxErrorNS
	est.HoldoverAfterNS = d.cfg.HoldoverAfterNS
	if !d.cfg.Ablation.OmitDrift {
		est.DriftBoundPPB = d.cfg.DriftBoundPPB
		est.FreqUncPPB = unc / (1 + d.freq) * 1e9
	}
	if d.haveEst {
		d.noteFloor(nowNS)
	}
	if !d.cfg.Ablation.OmitFloor {
		d.raiseToFloor(nowNS, local, est)
	}
	est.RootDispersionNS = max(0, est.Eps0NS-est.RootDelayNS/2)
	if est.Eps0NS > d.cfg.MaxErrorNS {
		*est = truetime.Estimate{Status: truetime.Unsynchronized, MaxErrorNS: d.cfg.MaxErrorNS, FreqPPB: d.freq * 1e9}
		d.updates = 0 // re-acquiring may step, as at a start (see goUnsynchronized)
	}
}

// floorWindowNS is how long after a new estimate a reader may still be
// computing with the previous one (copied, then descheduled before reading
// the clock): the monotonicity check covers that window.
const floorWindowNS = int64(1e9)

// noteFloor records the latest earliest bound the current estimate can
// have handed out before it is replaced at local reading nowNS.
func (d *Discipline) noteFloor(nowNS int64) {
	if iv := truetime.Bound(nowNS, d.est); iv.Status != truetime.Unsynchronized {
		d.floorNS = max(d.floorNS, iv.EarliestNS)
	}
}

// raiseToFloor keeps TrueTime from going backwards: a later read's latest
// is never below an earlier read's earliest. Within the assumptions this
// never triggers (every earliest was ≤ true time ≤ every later latest); when
// a reference stepped back it does, and the interval then reaches up to what
// was already promised, covering the reference's old time as well as its
// new one until true time passes the floor. Earliest is never moved. It
// runs before the new estimate replaces d.est, the one readers may still be
// using.
func (d *Discipline) raiseToFloor(nowNS, local int64, est *truetime.Estimate) {
	if d.floorNS == 0 || est.Status == truetime.Unsynchronized {
		return
	}
	need := int64(0)
	if iv := truetime.Bound(local, *est); iv.Status != truetime.Unsynchronized {
		need = max(need, d.floorNS-iv.LatestNS)
	}
	// A reader racing the publish may still use the previous estimate for a
	// while: the new latest must stay above its earliest over that window
	// (both are linear in time, so the window's end suffices).
	// An unsynchronized previous estimate bounds nothing: Bound says so.
	old := truetime.Bound(nowNS+floorWindowNS, d.est)
	if iv := truetime.Bound(local+floorWindowNS, *est); old.Status != truetime.Unsynchronized && iv.Status != truetime.Unsynchronized {
		need = max(need, old.EarliestNS-iv.LatestNS)
	}
	if need <= 0 {
		return
	}
	half := (need + 1) / 2
	est.OffsetNS -= float64(half)
	est.Eps0NS += half + 1
	d.floorRaises++
}

func (d *Discipline) collectReports(names []string) []SourceReport {
	out := make([]SourceReport, 0, len(names))
	for _, n := range names {
		out = append(out, d.srcs[n].report)
	}
	return out
}

// refit trims the regression window and refits; when no line passes within
// every point's bound the oscillator's rate changed inside the window, so
// the oldest points are dropped. A window that stays
// inconsistent after trimming proves that an assumption broke: it is
// discarded, and the rate falls back to the oscillator tolerance, rather
// than used with a slope bound it does not have.
func (d *Discipline) refit() {
	if over := len(d.reg) - d.cfg.RegressionLen; over > 0 {
		d.reg = append(d.reg[:0], d.reg[over:]...)
	}
	d.fit = regress(d.reg)
	for !feasible(d.reg) {
		if len(d.reg) <= 4 {
			d.resetRegression()
			return
		}
		drop := len(d.reg) / 4
		d.reg = append(d.reg[:0], d.reg[drop:]...)
		d.fit = regress(d.reg)
	}
}

// resetRegression drops the frequency regression: the rate falls back to
// the prior (the oscillator tolerance) until new points are fitted.
func (d *Discipline) resetRegression() {
	d.reg = d.reg[:0]
	d.fit = fit{}
}

// holdFreq is the correction that cancels the oscillator's estimated rate
// with no phase slew.
func (d *Discipline) holdFreq() float64 {
	c := d.integ
	if d.cfg.Servo == ServoLinReg {
		s, _ := d.rate()
		c = -s
	}
	maxF := d.cfg.MaxFreqPPB * 1e-9
	return math.Max(-maxF, math.Min(maxF, c))
}

// servo returns the frequency correction to apply from local reading
// nowNS on, given the steering offset (local minus true, ns) and the raw
// rate s.
func (d *Discipline) servo(nowNS int64, offNS, halfNS, s float64, freshSample bool) float64 {
	tau := float64(d.cfg.SlewTimeConstantNS)
	// An offset many times the measurement's half-width is certainly real:
	// remove it faster (down to 1 s, then limited by MaxFreqPPB). Offsets
	// within the noise are smoothed over the full time constant.
	if a := math.Abs(offNS); a > 2*halfNS && halfNS >= 0 {
		tau = math.Max(1e9, tau*2*halfNS/a)
	}
	var c float64
	switch d.cfg.Servo {
	case ServoPI:
		// Second-order loop, damping 1/√2, natural period ~ τ: the integral
		// term learns the frequency, the proportional term removes phase.
		if freshSample {
			// After an outage the gap says nothing about the loop: cap it so
			// one late sample cannot wind the integrator up.
			dt := math.Min(float64(nowNS-d.lastPIL), tau)
			d.integ -= offNS * dt / (tau * tau)
			d.lastPIL = nowNS
		}
		c = d.integ - math.Sqrt2*offNS/tau
	default:
		// Cancel the oscillator's rate and slew the offset out with time
		// constant τ: dx/dL = (c + s)/(1 + c) = −x/τ.
		k := 0.0
		if tau > 0 {
			k = offNS / tau
		}
		c = -(s + k) / (1 + k)
	}
	maxF := d.cfg.MaxFreqPPB * 1e-9
	return math.Max(-maxF, math.Min(maxF, c))
}
