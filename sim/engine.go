package sim

import (
	"container/heap"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/meridiantime/meridian/clock/fake"
	"github.com/meridiantime/meridian/clock/simclock"
	"github.com/meridiantime/meridian/discipline"
	"github.com/meridiantime/meridian/ntp"
	"github.com/meridiantime/meridian/ntp/engine"
	"github.com/meridiantime/meridian/truetime"
	"github.com/meridiantime/meridian/truetime/shm"
)

// startTrueNS is the simulated epoch: 2026-06-01T00:00:00Z.
const startTrueNS = int64(1_780_272_000) * 1e9

// Options change how a scenario runs without editing it.
type Options struct {
	Ablation      discipline.Ablation // negative controls only
	Servo         string              // overrides the scenario's servo when set
	DurationScale float64             // multiplies duration_s (sim-long); 0 means 1
	// MutateReply, when set, rewrites each reply on the wire before the
	// client sees it: tests use it to prove that a wire-format or server bug
	// shows up in the simulator.
	MutateReply func(src int, reply []byte)
	// NoDisruptionCheck turns the suspend and liveness checks off, in the
	// readers and in the writer: the negative control for host suspends.
	NoDisruptionCheck bool
	// ShmDir is where the host's shared-memory segment lives; "" means a
	// fresh temporary directory, removed at the end.
	ShmDir string
}

// Result is one scenario's outcome. Times are µs unless named otherwise.
type Result struct {
	Name           string
	Mode           TruthMode
	Reads          int // reads that returned an interval (not unsynchronized)
	AllReads       int
	Violations     int // reads whose interval missed the truth (see TruthMode)
	Backwards      int // reads whose latest fell below an earlier read's earliest
	ShmMismatches  int // reads where shared memory and the in-process clock disagreed
	DisruptedReads int // reads refused as disrupted (after a suspend, before a new sample)
	ErrP50, ErrP99 float64
	ErrMax         float64
	EpsP50, EpsP99 float64
	MidP50, MidP99 float64 // |interval midpoint − true|: the best estimate a reader gets
	// EpsMinUS is the median over reads of the provable minimum half-width
	// at the read: min over the honest samples taken so far of
	// δ/2 + root delay/2 + root dispersion + drift bound × age (what any
	// bound under the same assumptions could prove from the samples the
	// host actually got; a suspend forgets them, as it must).
	EpsMinUS        float64
	EpsVsMin        float64 // median over reads of ε / the provable minimum at that read
	Tightness       float64 // max |interval mid − true time| / ε: > 1 is a violation
	FirstSyncS      float64 // −1: never
	SyncedPct       float64
	HoldoverSeen    bool
	UnsyncAfterSync bool
	Steps           int
	Faults          int // selections that missed the carried-forward estimate
	// LeftAssumptionsS is when, during this realization, more than
	// ⌊(m−1)/2⌋ of the m sources with samples spoke from a lie at an update
	// (loss or an outage can keep a liar's last sample newest long after it
	// stopped lying); −1: never. From then on a TruthTrue world's reads are
	// checked for monotonicity only.
	LeftAssumptionsS float64
	FloorRaises      int // estimates widened to keep TrueTime monotonic
	Requests         int // NTP requests the host sent (the poll's adaptation shows here)
	Falsetickers     []string
	Failures         []string // unmet expectations
}

type evKind int

const (
	evPoll      evKind = iota // a source engine's timer
	evAtSrv                   // a request reaches a source's server
	evAtHost                  // a reply reaches the host
	evTick                    // the host's discipline update
	evRead                    // a TrueTime read
	evPTPMaster               // a PTP source's grandmaster timer
)

type event struct {
	at   int64
	seq  uint64
	kind evKind
	src  int
	gen  uint64 // the host's step generation when the request left
	pkt  []byte
	lie  bool // the server's clock was lying when it stamped this reply
	// PTP (see ptp.go): the datagram is PTP, on the event port; tok is a
	// timer's token.
	ptp, evPort bool
	tok         uint64
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

// refTime is what a simulated source's server serves: true time plus the
// source's error, with the root values the scenario says it advertises.
type refTime struct {
	r   *runner
	src int
}

func (t refTime) clockNS() int64 {
	s := t.r.sc.Sources[t.src]
	return t.r.now + sourceErrorNS(s, float64(t.r.now-startTrueNS)/1e9)
}

func (t refTime) Now() (truetime.Interval, error) {
	s := t.r.sc.Sources[t.src]
	eps := int64(s.RootDispersionUS*1e3) + int64(s.RootDelayUS*1e3)/2
	c := t.clockNS()
	return truetime.Interval{EarliestNS: c - eps, LatestNS: c + eps, Status: truetime.Synchronized}, nil
}

func (t refTime) Estimate() truetime.Estimate {
	s := t.r.sc.Sources[t.src]
	return truetime.Estimate{Status: truetime.Synchronized, Stratum: s.Stratum, RefID: uint32(t.src + 1),
		RootDelayNS: int64(s.RootDelayUS * 1e3), LastSampleNS: t.clockNS()}
}

func (t refTime) LocalNS() int64 { return t.clockNS() }

// host is the simulated meridiand: the same loop, engines, server handler,
// TrueTime clock and shared-memory segment as the daemon, over a simulated
// oscillator.
type host struct {
	osc     *simclock.Oscillator
	clk     *simclock.Clock
	loop    *discipline.Loop
	tt      *truetime.Clock
	shmW    *shm.Writer
	shmR    *shm.Reader
	pub     shm.Publisher
	engines []*engine.Engine
	servers []*ntp.Server
	ptp     []*ptpNode // per source; nil for NTP sources
}

type runner struct {
	sc    Scenario
	opt   Options
	now   int64
	seq   uint64
	q     queue
	h     host
	rngs  []*rand.Rand
	trace []int // per source: the trace row of its current exchange
	rRead *rand.Rand
	res   Result

	failKinds   map[string]bool
	tight       float64 // max |mid − true| / ε over reads
	maxEarliest int64

	// Per source: has the loop taken a sample, and was the newest one a lie.
	hasSample, newestLies []bool
	outside               bool // the majority assumption broke at some update

	// The provable minimum: bestMin + driftPPB·1e-9·(now) is the narrowest
	// half-width any honest sample taken so far proves at now (ns, true
	// time relative to startTrueNS); +Inf before the first.
	driftPPB float64
	bestMin  float64
	resumeAt int64 // end of the latest suspend seen by the minimum

	mids, mins, ratios []float64 // per read: |mid − true| µs, provable minimum µs, ε / minimum
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

// newHost builds the simulated daemon: oscillator, clock, discipline loop,
// TrueTime clock, shared-memory segment, one NTP engine per source and one
// server per source.
func (r *runner) newHost(cfg discipline.Config, shmDir string) error {
	sc := r.sc
	var steps []simclock.TempStep
	for _, t := range sc.Host.TempSteps {
		steps = append(steps, simclock.TempStep{AtNS: startTrueNS + sec(t.AtS), DeltaPPB: t.DeltaPPM * 1000})
	}
	h := &r.h
	var pauses []simclock.Pause
	for _, p := range sc.Host.Suspends {
		pauses = append(pauses, simclock.Pause{FromNS: startTrueNS + sec(p.AtS), ToNS: startTrueNS + sec(p.AtS+p.DurationS)})
	}
	h.osc = simclock.NewOscillator(simclock.OscillatorConfig{
		FreqErrorPPB:      sc.Host.FreqErrorPPM * 1000,
		WanderPPBPerSqrtS: sc.Host.WanderPPBPerSqrtS,
		TempSteps:         steps,
		Pauses:            pauses,
		Seed:              sc.Seed,
	}, startTrueNS)
	h.clk = simclock.NewClock(h.osc, func() int64 { return r.now }, int64(sc.Host.OffsetMS*1e6), cfg.MaxFreqPPB)
	if cfg.InitialFreqPPB != 0 {
		if err := h.clk.AdjFreqPPB(cfg.InitialFreqPPB); err != nil {
			return err
		}
	}
	disc, err := discipline.New(cfg, h.clk.NowNS())
	if err != nil {
		return err
	}
	h.loop = discipline.NewLoop(disc, h.clk)
	h.tt = truetime.NewClock(h.clk, fake.PanicTimers{})
	path := filepath.Join(shmDir, "truetime.shm")
	// The segment stamps and judges its snapshots with the simulated
	// CLOCK_MONOTONIC_RAW (the oscillator, which stops in a suspend) and
	// CLOCK_BOOTTIME (true time, which does not).
	shmOpt := shm.Options{Clocks: r.clocks, VMClock: "-", NoGuard: r.opt.NoDisruptionCheck}
	if h.shmW, err = shm.CreateWith(path, shmOpt); err != nil {
		return err
	}
	if h.shmR, err = shm.Open(path); err != nil {
		h.shmW.Close()
		return err
	}
	if !r.opt.NoDisruptionCheck {
		h.tt.SetCheck(h.shmW.Check) // in-process reads fail when shm reads would, as in meridiand
	}
	h.pub = shm.Publisher{Clock: h.tt, Shm: h.shmW, Model: h.clk.Model, Disrupted: func(uint64) {
		h.loop.Disrupted() // as meridiand does
		clear(r.hasSample) // the discipline forgot every sample
		clear(r.newestLies)
	}}
	for i, s := range sc.Sources {
		r.rngs = append(r.rngs, rand.New(rand.NewPCG(uint64(sc.Seed), uint64(i+1))))
		r.trace = append(r.trace, -1)
		// First requests spread over the first second, as iburst would.
		first := h.clk.NowNS() + sec(0.1*float64(i+1))
		cc := engine.ClientConfig{Poll: time.Duration(sec(s.PollS))}
		if s.MaxPollS > s.PollS {
			cc.MinPoll, cc.MaxPoll = cc.Poll, time.Duration(sec(s.MaxPollS))
		}
		h.engines = append(h.engines, engine.New(cc, uint64(sc.Seed)<<8|uint64(i), first))
		h.servers = append(h.servers, ntp.NewServer(refTime{r: r, src: i}, ntp.RateLimit{}, nil))
		h.ptp = append(h.ptp, nil)
		if s.Protocol == "ptp" {
			h.ptp[i] = r.newPTP(i)
			r.ptpTimer(i, evPTPMaster, 0, 0)
			r.ptpTimer(i, evPoll, sec(0.1*float64(i+1)), 0)
			continue
		}
		r.push(&event{at: startTrueNS + sec(0.1*float64(i+1)), kind: evPoll, src: i})
	}
	return nil
}

func (h *host) close() {
	h.shmR.Close()
	h.shmW.Close()
}

// Run simulates one scenario with the real NTP engines and server handler,
// discipline loop, TrueTime clock and shared memory. The same scenario and
// options always give the same Result.
func Run(sc Scenario, opt Options) (Result, error) {
	scale := opt.DurationScale
	if scale == 0 {
		scale = 1
	}
	cfg, err := DisciplineConfig(sc, opt)
	if err != nil {
		return Result{}, err
	}
	for i, s := range sc.Sources {
		if s.Trace != "" && len(s.TraceRows) == 0 {
			// Parsed without its directory (ParseScenario, not LoadDir):
			// running it would quietly use delay_us and jitter instead.
			return Result{}, fmt.Errorf("sim: %s: sources[%d].trace %q was not loaded (LoadDir loads it)", sc.Name, i, s.Trace)
		}
	}
	dir := opt.ShmDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "meridian-sim-"); err != nil {
			return Result{}, err
		}
		defer os.RemoveAll(dir)
	}
	drift := cfg.DriftBoundPPB
	if drift == 0 {
		drift = discipline.DefaultConfig().DriftBoundPPB
	}
	r := &runner{sc: sc, opt: opt, now: startTrueNS, driftPPB: drift, bestMin: math.Inf(1)}
	r.res = Result{Name: sc.Name, FirstSyncS: -1, Mode: sc.TruthMode(), LeftAssumptionsS: -1}
	r.hasSample, r.newestLies = make([]bool, len(sc.Sources)), make([]bool, len(sc.Sources))
	if err := r.newHost(cfg, dir); err != nil {
		return Result{}, err
	}
	defer r.h.close()
	r.rRead = rand.New(rand.NewPCG(uint64(sc.Seed), 0x7ead))
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
		if e.kind != evAtSrv && e.kind != evPTPMaster {
			if wake, asleep := r.suspendedUntil(e.at); asleep {
				// The host is suspended: it runs nothing, and a reply that
				// arrives meanwhile is lost. Its timers fire at resume.
				if e.kind != evAtHost {
					e.at = wake
					if e.kind == evTick {
						// Readers resume with the host; the loop's next
						// update comes a little later.
						e.at += sec(r.sc.TickS / 2)
					}
					r.push(e)
				}
				continue
			}
		}
		var err error
		switch {
		case e.kind == evPoll && r.h.ptp[e.src] != nil:
			err = r.ptpClientTick(e)
		case e.kind == evPoll:
			r.poll(e.src)
		case e.kind == evPTPMaster:
			r.ptpMasterTick(e)
		case e.kind == evAtSrv && e.ptp:
			r.ptpServe(e)
		case e.kind == evAtSrv:
			r.serve(e)
		case e.kind == evAtHost && e.ptp:
			err = r.ptpHostReceive(e)
		case e.kind == evAtHost:
			err = r.receive(e)
		}
		if err != nil {
			return Result{}, fmt.Errorf("sim %s: %w", sc.Name, err)
		}
		switch e.kind {
		case evTick:
			if err := r.tick(); err != nil {
				return Result{}, fmt.Errorf("sim %s: %w", sc.Name, err)
			}
		case evRead:
			st, errUS, epsUS, ok := r.read()
			r.res.AllReads++
			lastStatus = st
			if ok {
				r.res.Reads++
				if r.res.FirstSyncS < 0 && st == truetime.Synchronized {
					r.res.FirstSyncS = float64(r.now-startTrueNS) / 1e9
				}
				if st == truetime.Synchronized {
					synced++
				}
				if st == truetime.Holdover {
					r.res.HoldoverSeen = true
				}
				errs = append(errs, errUS)
				epss = append(epss, epsUS)
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
	d := r.h.loop.Discipline()
	r.res.Steps, r.res.Faults, r.res.FloorRaises = r.h.loop.Steps(), d.Faults(), d.FloorRaises()
	r.summarise(errs, epss, synced, lastStatus)
	return r.res, nil
}

// clocks reads the simulated CLOCK_MONOTONIC_RAW and CLOCK_BOOTTIME.
func (r *runner) clocks() (raw, boot int64) {
	return r.h.osc.RawAt(r.now), r.now - startTrueNS + 1_000_000_000_000
}

// suspendedUntil reports whether the host is suspended at true time t and
// when it resumes.
func (r *runner) suspendedUntil(t int64) (int64, bool) {
	for _, p := range r.sc.Host.Suspends {
		from, to := startTrueNS+sec(p.AtS), startTrueNS+sec(p.AtS+p.DurationS)
		if t >= from && t < to {
			return to, true
		}
	}
	return 0, false
}

// tick runs one update of the loop and publishes it.
func (r *runner) tick() error {
	if !r.outside {
		m, liars := 0, 0
		for i, ok := range r.hasSample {
			if ok {
				m++
				if r.newestLies[i] {
					liars++
				}
			}
		}
		if liars > (m-1)/2 && liars > 0 {
			r.outside = true
			r.res.LeftAssumptionsS = float64(r.now-startTrueNS) / 1e9
		}
	}
	u, err := r.h.loop.Update()
	if err != nil {
		return err
	}
	r.h.pub.Publish(u.Estimate)
	r.res.Falsetickers = r.res.Falsetickers[:0]
	now := r.h.clk.NowNS()
	for _, s := range u.Sources {
		// The filter's poll advice, as meridiand hands it to its sources.
		if i := slices.IndexFunc(r.sc.Sources, func(x Source) bool { return x.Name == s.Name }); i >= 0 {
			r.h.engines[i].Step(now, engine.Input{Kind: engine.InputPollAdvice, PollNS: s.PollTargetNS})
		}
		if s.State == discipline.SourceFalseticker {
			r.res.Falsetickers = append(r.res.Falsetickers, s.Name)
		}
	}
	r.push(&event{at: r.now + sec(r.sc.TickS), kind: evTick})
	return nil
}

// read reads TrueTime in process and through shared memory, checks that
// they agree, and checks the interval against the truth and against every
// earlier read.
func (r *runner) read() (st truetime.Status, errUS, epsUS float64, ok bool) {
	local := r.h.clk.NowNS()
	iv, err := r.h.tt.Now()
	var ivShm truetime.Interval
	var errShm error
	if r.opt.NoDisruptionCheck {
		ivShm, errShm = r.h.shmR.NowAtRaw(r.h.osc.RawAt(r.now))
	} else {
		ivShm, errShm = r.h.shmR.NowAt(r.clocks())
	}
	if (err == nil) != (errShm == nil) || (err == nil && iv != ivShm) {
		r.res.ShmMismatches++
		r.fail("shm", "shared memory read %+v (%v) differs from in-process %+v (%v) at t=%.3fs", ivShm, errShm, iv, err, float64(r.now-startTrueNS)/1e9)
	}
	if err != nil {
		if errors.Is(err, truetime.ErrDisrupted) {
			r.res.DisruptedReads++
		}
		return iv.Status, 0, 0, false
	}
	if iv.LatestNS < r.maxEarliest {
		r.res.Backwards++
		r.fail("back", "TrueTime went backwards at t=%.3fs: latest %d below an earlier earliest %d", float64(r.now-startTrueNS)/1e9, iv.LatestNS, r.maxEarliest)
	}
	r.maxEarliest = max(r.maxEarliest, iv.EarliestNS)
	if !r.contains(iv) {
		r.res.Violations++
	}
	eps := float64(iv.LatestNS-iv.EarliestNS) / 2
	mid := math.Abs(float64(iv.MidNS() - r.now))
	if eps > 0 {
		r.tight = max(r.tight, mid/eps)
	}
	r.mids = append(r.mids, mid/1e3)
	if m := r.provableMinNS(); !math.IsInf(m, 1) && m > 0 {
		r.mins = append(r.mins, m/1e3)
		r.ratios = append(r.ratios, eps/m)
	}
	return iv.Status, math.Abs(float64(local-r.now)) / 1e3, eps / 1e3, true
}

// contains applies the scenario's truth: true time within the assumptions;
// for a lone reference that steps, its time before or after its latest
// step; nothing outside both (only monotonicity is checked there).
func (r *runner) contains(iv truetime.Interval) bool {
	in := func(t int64) bool { return iv.EarliestNS <= t && t <= iv.LatestNS }
	switch r.res.Mode {
	case TruthTrue:
		return r.outside || in(r.now)
	case TruthReference:
		s := r.sc.Sources[0]
		tS := float64(r.now-startTrueNS) / 1e9
		cur, prev := sourceErrorsNS(s, tS)
		return in(r.now+cur) || in(r.now+prev)
	}
	return true
}

// link draws one packet's trip over source i's path now: its one-way delay
// in ns (forward or back), or ok=false when the packet is lost.
func (r *runner) link(i int, forward bool) (int64, bool) {
	s := r.sc.Sources[i]
	rng := r.rngs[i]
	lost := rng.Float64()*100 < s.LossPct
	mean := s.JitterUS
	if !forward && s.ReturnJitterUS != nil {
		mean = *s.ReturnJitterUS
	}
	j := rng.ExpFloat64() * mean
	if k := s.JitterShape; k > 1 {
		// Erlang-k of the same mean; only these scenarios draw more.
		for range k - 1 {
			j += rng.ExpFloat64() * mean
		}
		j /= float64(k)
	}
	tS := float64(r.now-startTrueNS) / 1e9
	for _, w := range s.Outages {
		if tS >= w.FromS && tS < w.ToS {
			return 0, false
		}
	}
	if lost {
		return 0, false
	}
	delay, asym := s.DelayUS, s.AsymmetryUS
	for _, rc := range s.Routes {
		if tS >= rc.FromS {
			delay, asym = rc.DelayUS, rc.AsymmetryUS
		}
	}
	if rows := s.TraceRows; len(rows) > 0 {
		if forward {
			r.trace[i] = (r.trace[i] + 1) % len(rows)
			return sec(rows[r.trace[i]][0] / 1e6), true
		}
		return sec(rows[r.trace[i]][1] / 1e6), true
	}
	if forward {
		return sec((delay/2 + asym/2 + j) / 1e6), true
	}
	return sec((delay/2 - asym/2 + j) / 1e6), true
}

// poll fires source i's engine timer and puts any request on the wire.
func (r *runner) poll(i int) {
	e := r.h.engines[i]
	e.Step(r.h.clk.NowNS(), engine.Input{Kind: engine.InputTick})
	rd := e.Ready()
	if rd.Send != nil {
		r.res.Requests++
		if d, ok := r.link(i, true); ok {
			pkt := append([]byte(nil), rd.Send...)
			r.push(&event{at: r.now + d, kind: evAtSrv, src: i, pkt: pkt, gen: r.h.loop.Gen()})
		}
	}
	e.Advance()
	wait := max(rd.DeadlineNS-r.h.clk.NowNS(), int64(1e6))
	r.push(&event{at: r.now + wait, kind: evPoll, src: i})
}

// serve answers a request with the real server handler.
func (r *runner) serve(e *event) {
	srv := r.h.servers[e.src]
	t := refTime{r: r, src: e.src}
	resp := make([]byte, 48)
	n, _ := srv.HandleRequest(e.pkt, resp, t.clockNS(), netip.AddrFrom4([4]byte{10, 0, 0, 1}))
	if n == 0 {
		return
	}
	s := r.sc.Sources[e.src]
	lie := s.lies(float64(sourceErrorNS(s, float64(r.now-startTrueNS)/1e9)) / 1e6)
	if d, ok := r.link(e.src, false); ok {
		r.push(&event{at: r.now + d, kind: evAtHost, src: e.src, pkt: resp[:n], gen: e.gen, lie: lie})
	}
}

// receive hands a reply to the engine and its samples to the loop.
func (r *runner) receive(e *event) error {
	if r.opt.MutateReply != nil {
		r.opt.MutateReply(e.src, e.pkt)
	}
	eng := r.h.engines[e.src]
	t4 := r.h.clk.NowNS()
	eng.Step(t4, engine.Input{Kind: engine.InputDatagram, Datagram: e.pkt, RxNS: t4})
	rd := eng.Ready()
	defer eng.Advance()
	for _, smp := range rd.Samples {
		smp.RefID = uint32(e.src + 1)
		err := r.h.loop.AddSample(r.sc.Sources[e.src].Name, smp, e.gen)
		if err != nil && !errors.Is(err, discipline.ErrStaleSample) {
			return err
		}
		if err == nil {
			r.hasSample[e.src], r.newestLies[e.src] = true, e.lie
			if !e.lie || r.res.Mode == TruthReference {
				r.noteSampleMin(smp)
			}
		}
	}
	return nil
}

// noteSampleMin folds one honest sample into the provable minimum.
func (r *runner) noteSampleMin(smp discipline.Sample) {
	r.forgetMinAcrossSuspend()
	h := float64(smp.DelayNS())/2 + float64(smp.RootDelayNS)/2 + float64(smp.RootDispersionNS)
	r.bestMin = min(r.bestMin, h-r.driftPPB*1e-9*float64(r.now-startTrueNS))
}

// forgetMinAcrossSuspend drops what was proven before a suspend the host
// has since woken from: nothing bounds the time it slept.
func (r *runner) forgetMinAcrossSuspend() {
	for _, p := range r.sc.Host.Suspends {
		if to := startTrueNS + sec(p.AtS+p.DurationS); to <= r.now && to > r.resumeAt {
			r.resumeAt, r.bestMin = to, math.Inf(1)
		}
	}
}

// provableMinNS is the provable minimum half-width now (+Inf before any
// honest sample).
func (r *runner) provableMinNS() float64 {
	r.forgetMinAcrossSuspend()
	return r.bestMin + r.driftPPB*1e-9*float64(r.now-startTrueNS)
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

// sourceErrorNS is source s's clock minus true time at simulated second tS.
func sourceErrorNS(s Source, tS float64) int64 {
	cur, _ := sourceErrorsNS(s, tS)
	return cur
}

// sourceErrorsNS is source s's error at tS and its error before its latest
// step at or before tS (0 before its first one).
func sourceErrorsNS(s Source, tS float64) (cur, prev int64) {
	var off, before float64
	for _, e := range s.Errors {
		if tS >= e.FromS {
			before, off = off, e.OffsetMS
		}
	}
	return int64(off * 1e6), int64(before * 1e6)
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
	for _, v := range [][]float64{r.mids, r.mins, r.ratios} {
		sort.Float64s(v)
	}
	res.MidP50, res.MidP99 = pct(r.mids, 0.5), pct(r.mids, 0.99)
	res.EpsMinUS, res.EpsVsMin = pct(r.mins, 0.5), pct(r.ratios, 0.5)
	res.Tightness = r.tight
	if res.AllReads > 0 {
		res.SyncedPct = 100 * float64(synced) / float64(res.AllReads)
	}
	slices.Sort(res.Falsetickers)
	x := r.sc.Expect
	if res.Violations > 0 {
		r.fail("viol", "%d containment violations (truth: %v)", res.Violations, res.Mode)
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
	if x.DisruptedSeen && res.DisruptedReads == 0 {
		r.fail("disrupted", "no read reported disrupted")
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
	if x.MaxEpsVsMin > 0 && res.EpsVsMin > x.MaxEpsVsMin {
		r.fail("epsmin", "median ε is %.2f× the provable minimum, want ≤ %v", res.EpsVsMin, x.MaxEpsVsMin)
	}
	if x.MaxEpsP50US > 0 && res.EpsP50 > x.MaxEpsP50US {
		r.fail("eps", "median ε %.3f µs, want ≤ %v", res.EpsP50, x.MaxEpsP50US)
	}
	if x.MaxMidP50US > 0 && res.MidP50 > x.MaxMidP50US {
		r.fail("mid", "median midpoint error %.1f µs, want ≤ %v", res.MidP50, x.MaxMidP50US)
	}
	if res.Steps < x.MinSteps {
		r.fail("minsteps", "%d clock steps, want ≥ %d", res.Steps, x.MinSteps)
	}
	if x.MaxSteps != nil && res.Steps > *x.MaxSteps {
		r.fail("maxsteps", "%d clock steps, want ≤ %d", res.Steps, *x.MaxSteps)
	}
}
