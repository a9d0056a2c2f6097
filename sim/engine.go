package sim

import (
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"

	"github.com/meridiantime/meridian/clock/simclock"
	"github.com/meridiantime/meridian/discipline"
	"github.com/meridiantime/meridian/truetime"
)

// startTrueNS is the simulated epoch: 2026-06-01T00:00:00Z.
const startTrueNS = int64(1_780_272_000) * 1e9

// Options change how a scenario runs without editing it.
type Options struct {
	Ablation      discipline.Ablation // negative controls only
	Servo         string              // overrides the scenario's servo when set
	DurationScale float64             // multiplies duration_s (sim-long); 0 means 1
}

// Result is one scenario's outcome. Times are µs unless named otherwise.
type Result struct {
	Name            string
	Reads           int // reads that returned an interval (not unsynchronized)
	AllReads        int
	Violations      int // reads whose interval missed true time
	ErrP50, ErrP99  float64
	ErrMax          float64
	EpsP50, EpsP99  float64
	Ratio           float64 // ε p50 / |error| p50, errors below 1 µs counted as 1 µs
	Tightness       float64 // max |interval mid − true time| / ε: > 1 is a violation
	FirstSyncS      float64 // −1: never
	SyncedPct       float64
	HoldoverSeen    bool
	UnsyncAfterSync bool
	Steps           int
	Falsetickers    []string
	Failures        []string // unmet expectations
}

type evKind int

const (
	evPoll evKind = iota
	evReply
	evTick
	evRead
)

type event struct {
	at   int64
	seq  uint64
	kind evKind
	src  int
	// reply payload
	t1, t2, t3 int64
	gen        int
}

type queue []*event

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *queue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

type runner struct {
	sc    Scenario
	now   int64
	seq   uint64
	q     queue
	clk   *simclock.Clock
	disc  *discipline.Discipline
	est   truetime.Estimate
	gen   int // bumps on every clock step: replies in flight are dropped
	rngs  []*rand.Rand
	rRead *rand.Rand
	res   Result

	failKinds map[string]bool
	tight     float64 // max |mid − true| / ε over reads
}

func sec(s float64) int64 { return int64(math.Round(s * 1e9)) }

func (r *runner) push(e *event) {
	r.seq++
	e.seq = r.seq
	heap.Push(&r.q, e)
}

// DisciplineConfig maps a scenario's overrides onto the discipline's
// configuration.
func DisciplineConfig(sc Scenario, opt Options) (discipline.Config, error) {
	cfg := discipline.DefaultConfig()
	servo := sc.Discipline.Servo
	if opt.Servo != "" {
		servo = opt.Servo
	}
	switch servo {
	case "", "linreg":
		cfg.Servo = discipline.ServoLinReg
	case "pi":
		cfg.Servo = discipline.ServoPI
	default:
		return cfg, fmt.Errorf("sim: unknown servo %q", servo)
	}
	if v := sc.Discipline.MinSources; v != 0 {
		cfg.MinSources = v
	}
	if v := sc.Discipline.DriftBoundPPM; v != 0 {
		cfg.DriftBoundPPB = v * 1000
	}
	if v := sc.Discipline.MaxErrorMS; v != 0 {
		cfg.MaxErrorNS = int64(v * 1e6)
	}
	if v := sc.Discipline.StepThresholdMS; v != 0 {
		cfg.StepThresholdNS = int64(v * 1e6)
	}
	if sc.Host.DriftFilePPM != nil {
		cfg.InitialFreqPPB = *sc.Host.DriftFilePPM * 1000
	}
	cfg.PrecisionNS = 10 // covers ns rounding of the four timestamps and the read
	cfg.Ablation = opt.Ablation
	return cfg, nil
}

// Run simulates one scenario with the real discipline and truetime code.
// The same scenario and options always give the same Result.
func Run(sc Scenario, opt Options) (Result, error) {
	scale := opt.DurationScale
	if scale == 0 {
		scale = 1
	}
	cfg, err := DisciplineConfig(sc, opt)
	if err != nil {
		return Result{}, err
	}
	var steps []simclock.TempStep
	for _, t := range sc.Host.TempSteps {
		steps = append(steps, simclock.TempStep{AtNS: startTrueNS + sec(t.AtS), DeltaPPB: t.DeltaPPM * 1000})
	}
	osc := simclock.NewOscillator(simclock.OscillatorConfig{
		FreqErrorPPB:      sc.Host.FreqErrorPPM * 1000,
		WanderPPBPerSqrtS: sc.Host.WanderPPBPerSqrtS,
		TempSteps:         steps,
		Seed:              sc.Seed,
	}, startTrueNS)
	r := &runner{sc: sc, now: startTrueNS}
	r.clk = simclock.NewClock(osc, func() int64 { return r.now }, int64(sc.Host.OffsetMS*1e6), cfg.MaxFreqPPB)
	if cfg.InitialFreqPPB != 0 {
		if err := r.clk.AdjFreqPPB(cfg.InitialFreqPPB); err != nil {
			return Result{}, err
		}
	}
	r.disc, err = discipline.New(cfg, r.clk.NowNS())
	if err != nil {
		return Result{}, err
	}
	r.res = Result{Name: sc.Name, FirstSyncS: -1}
	r.rRead = rand.New(rand.NewPCG(uint64(sc.Seed), 0x7ead))
	for i := range sc.Sources {
		r.rngs = append(r.rngs, rand.New(rand.NewPCG(uint64(sc.Seed), uint64(i+1))))
		// iburst-like start: first polls spread over the first second
		r.push(&event{at: startTrueNS + sec(0.1*float64(i+1)), kind: evPoll, src: i})
	}
	r.push(&event{at: startTrueNS + sec(sc.TickS), kind: evTick})
	r.push(&event{at: startTrueNS + sec(sc.ReadEveryMS/1000), kind: evRead})
	end := startTrueNS + sec(sc.DurationS*scale)

	var errs, epss []float64
	synced := 0
	lastStatus := truetime.Unsynchronized
	for r.q.Len() > 0 {
		e := heap.Pop(&r.q).(*event)
		if e.at > end {
			break
		}
		r.now = e.at
		switch e.kind {
		case evPoll:
			r.poll(e.src)
		case evReply:
			if e.gen != r.gen {
				continue // the clock stepped while this exchange was in flight
			}
			s := r.sc.Sources[e.src]
			smp := discipline.Sample{
				T1NS: e.t1, T2NS: e.t2, T3NS: e.t3, T4NS: r.clk.NowNS(),
				RootDelayNS: int64(s.RootDelayUS * 1e3), RootDispersionNS: int64(s.RootDispersionUS * 1e3),
				Stratum: s.Stratum, RefID: uint32(e.src + 1),
			}
			if err := r.disc.AddSample(s.Name, smp); err != nil {
				return Result{}, fmt.Errorf("sim %s: %w", sc.Name, err)
			}
		case evTick:
			u := r.disc.Update(r.clk.NowNS())
			if u.Correction.StepNS != 0 {
				if err := r.clk.Step(u.Correction.StepNS); err != nil {
					return Result{}, err
				}
				r.gen++
				r.res.Steps++
			}
			if u.Correction.SetFreq {
				if err := r.clk.AdjFreqPPB(u.Correction.FreqPPB); err != nil {
					return Result{}, err
				}
			}
			r.est = u.Estimate
			r.res.Falsetickers = r.res.Falsetickers[:0]
			for _, s := range u.Sources {
				if s.State == discipline.SourceFalseticker {
					r.res.Falsetickers = append(r.res.Falsetickers, s.Name)
				}
			}
			r.push(&event{at: r.now + sec(sc.TickS), kind: evTick})
		case evRead:
			r.res.AllReads++
			local := r.clk.NowNS()
			iv := truetime.Bound(local, r.est)
			lastStatus = iv.Status
			if iv.Status != truetime.Unsynchronized {
				r.res.Reads++
				if iv.EarliestNS > r.now || iv.LatestNS < r.now {
					r.res.Violations++
				}
				if r.res.FirstSyncS < 0 && iv.Status == truetime.Synchronized {
					r.res.FirstSyncS = float64(r.now-startTrueNS) / 1e9
				}
				if iv.Status == truetime.Synchronized {
					synced++
				}
				if iv.Status == truetime.Holdover {
					r.res.HoldoverSeen = true
				}
				errUS := math.Abs(float64(local-r.now)) / 1e3
				errs = append(errs, errUS)
				eps := float64(iv.LatestNS-iv.EarliestNS) / 2
				epss = append(epss, eps/1e3)
				if eps > 0 {
					r.tight = max(r.tight, math.Abs(float64(iv.MidNS()-r.now))/eps)
				}
				if sc.Expect.MaxAbsErrorUS > 0 && float64(r.now-startTrueNS)/1e9 >= sc.Expect.SettleS && errUS > sc.Expect.MaxAbsErrorUS {
					r.fail("maxerr", "first clock error beyond expectation: %.1f µs at t=%.0fs exceeds max_abs_error_us %v", errUS, float64(r.now-startTrueNS)/1e9, sc.Expect.MaxAbsErrorUS)
				}
			} else if r.res.FirstSyncS >= 0 {
				r.res.UnsyncAfterSync = true
			}
			gap := sc.ReadEveryMS * 2 * r.rRead.Float64()
			r.push(&event{at: r.now + max(1, sec(gap/1000)), kind: evRead})
		}
	}
	r.summarise(errs, epss, synced, lastStatus)
	return r.res, nil
}

// fail records an unmet expectation; kind keeps one message per kind.
func (r *runner) fail(kind, f string, a ...any) {
	if r.failKinds[kind] {
		return
	}
	if r.failKinds == nil {
		r.failKinds = map[string]bool{}
	}
	r.failKinds[kind] = true
	r.res.Failures = append(r.res.Failures, fmt.Sprintf(f, a...))
}

// poll sends one request on source i's link and schedules its reply.
func (r *runner) poll(i int) {
	s := r.sc.Sources[i]
	rng := r.rngs[i]
	r.push(&event{at: r.now + sec(s.PollS*(0.95+0.1*rng.Float64())), kind: evPoll, src: i})
	tS := float64(r.now-startTrueNS) / 1e9
	lostOut := rng.Float64()*100 < s.LossPct
	lostBack := rng.Float64()*100 < s.LossPct
	jf, jb := rng.ExpFloat64()*s.JitterUS, rng.ExpFloat64()*s.JitterUS
	if lostOut || lostBack {
		return
	}
	for _, w := range s.Outages {
		if tS >= w.FromS && tS < w.ToS {
			return
		}
	}
	fwd := sec((s.DelayUS/2 + s.AsymmetryUS/2 + jf) / 1e6)
	back := sec((s.DelayUS/2 - s.AsymmetryUS/2 + jb) / 1e6)
	const procNS = 15_000
	arriveSrv := r.now + fwd
	srvErr := sourceErrorNS(s, float64(arriveSrv-startTrueNS)/1e9)
	t2 := arriveSrv + srvErr
	r.push(&event{
		at: arriveSrv + procNS + back, kind: evReply, src: i,
		t1: r.clk.NowNS(), t2: t2, t3: t2 + procNS, gen: r.gen,
	})
}

// sourceErrorNS is source s's clock minus true time at simulated second tS.
func sourceErrorNS(s Source, tS float64) int64 {
	var off float64
	for _, e := range s.Errors {
		if tS >= e.FromS {
			off = e.OffsetMS
		}
	}
	return int64(off * 1e6)
}

func pct(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func (r *runner) summarise(errs, epss []float64, synced int, last truetime.Status) {
	res := &r.res
	sort.Float64s(errs)
	sort.Float64s(epss)
	res.ErrP50, res.ErrP99 = pct(errs, 0.5), pct(errs, 0.99)
	if len(errs) > 0 {
		res.ErrMax = errs[len(errs)-1]
	}
	res.EpsP50, res.EpsP99 = pct(epss, 0.5), pct(epss, 0.99)
	res.Ratio = res.EpsP50 / max(res.ErrP50, 1)
	res.Tightness = r.tight
	if res.AllReads > 0 {
		res.SyncedPct = 100 * float64(synced) / float64(res.AllReads)
	}
	slices.Sort(res.Falsetickers)
	x := r.sc.Expect
	if res.Violations > 0 {
		r.fail("viol", "%d containment violations", res.Violations)
	}
	if x.SyncedByS > 0 && (res.FirstSyncS < 0 || res.FirstSyncS > x.SyncedByS) {
		r.fail("sync", "first synchronized at %.1fs, want ≤ %vs", res.FirstSyncS, x.SyncedByS)
	}
	if x.NeverSynced && res.FirstSyncS >= 0 {
		r.fail("never", "synchronized at %.1fs, want never", res.FirstSyncS)
	}
	for _, want := range x.Falsetickers {
		if !slices.Contains(res.Falsetickers, want) {
			r.fail("ft", "source %s not flagged as falseticker (flagged: %v)", want, res.Falsetickers)
		}
	}
	if x.HoldoverSeen && !res.HoldoverSeen {
		r.fail("ho", "never reported holdover")
	}
	if x.UnsyncAfterSync && !res.UnsyncAfterSync {
		r.fail("unsync", "never became unsynchronized after first sync")
	}
	if x.SyncedAtEnd && last != truetime.Synchronized {
		r.fail("end", "status at end is %v, want synchronized", last)
	}
	if res.Steps < x.MinSteps {
		r.fail("minsteps", "%d clock steps, want ≥ %d", res.Steps, x.MinSteps)
	}
	if x.MaxSteps != nil && res.Steps > *x.MaxSteps {
		r.fail("maxsteps", "%d clock steps, want ≤ %d", res.Steps, *x.MaxSteps)
	}
}
