package sim

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"time"

	"go.yaml.in/yaml/v3"
)

// Random worlds. Generate draws a scenario inside the assumptions that
// package truetime states (see its doc): an oscillator within ±500 ppm whose
// temperature steps and wander stay within the drift bound, paths whose
// asymmetry is within their delay, honest sources within what they
// advertise, and liars scheduled so that at most ⌊(n−1)/2⌋ of n sources
// are lying at any instant (counting a source as lying while its newest
// sample may still be a lie). A world with one source may also let that
// source step (outside the assumptions: it is then checked against the
// reference's old or new time, see TruthMode).

// Generate returns world number i of the campaign seeded with seed. The
// same (seed, i) always gives the same world.
func Generate(seed uint64, i int) Scenario {
	rng := rand.New(rand.NewPCG(seed, uint64(i)*0x9e3779b97f4a7c15+1))
	u := func(lo, hi float64) float64 { return lo + (hi-lo)*rng.Float64() }
	pick := func(p float64) bool { return rng.Float64() < p }
	sc := Defaults()
	sc.Name = fmt.Sprintf("world-%d-%d", seed, i)
	sc.Seed = int64(rng.Uint32())
	sc.DurationS = math.Round(u(600, 2400))
	sc.ReadEveryMS = math.Round(u(20, 200))
	h := &sc.Host
	h.FreqErrorPPM = round3(u(-500, 500))
	if pick(0.3) {
		h.FreqErrorPPM = 0
	}
	h.OffsetMS = round3(u(-1000, 1000) * math.Pow(rng.Float64(), 4))
	if pick(0.5) {
		h.WanderPPBPerSqrtS = round3(u(0, 2))
	}
	// Temperature steps: their cumulative effect stays within 60 % of the
	// 15 ppm drift bound (wander takes some of the rest).
	budget := 9.0
	for range rng.IntN(4) {
		d := round3(u(-budget, budget))
		h.TempSteps = append(h.TempSteps, TempStep{AtS: math.Round(u(60, sc.DurationS)), DeltaPPM: d})
		budget -= math.Abs(d)
	}
	if pick(0.2) {
		// A restart from the drift file: right, or a little stale.
		v := round3(math.Max(-500, math.Min(500, -h.FreqErrorPPM+u(-5, 5))))
		h.DriftFilePPM = &v
	}
	if pick(0.15) {
		// Host suspends (CLOCK_MONOTONIC_RAW stops), from half a second to
		// two hours; the run goes on after the last one.
		at := 0.0
		for range 1 + rng.IntN(2) {
			at += math.Round(u(60, sc.DurationS/2))
			d := round3(0.5 * math.Pow(14400, rng.Float64()))
			h.Suspends = append(h.Suspends, Suspend{AtS: at, DurationS: d})
			at += d
		}
		sc.DurationS = math.Round(at + u(300, 900))
	}
	if pick(0.25) {
		sc.Discipline.Servo = "pi"
	}
	if pick(0.2) {
		sc.Discipline.MinSources = 2
	}
	n := 1 + rng.IntN(7)
	for j := range n {
		sc.Sources = append(sc.Sources, genSource(rng, j, sc.DurationS))
	}
	if n == 1 && pick(0.3) {
		// A lone reference that steps: outside the assumptions.
		s := &sc.Sources[0]
		s.Errors = append(s.Errors, Error{FromS: math.Round(u(120, sc.DurationS)), OffsetMS: round3(u(-3000, 3000) * math.Pow(rng.Float64(), 2))})
	} else {
		addLiars(rng, &sc)
	}
	if n == 1 {
		// A stream of its own, so that adding this left every other draw,
		// and so every world without it, as it was.
		sparse(rand.New(rand.NewPCG(seed^0x5ba75e, uint64(i))), &sc)
	}
	humps(rand.New(rand.NewPCG(seed^0x4a3b5, uint64(i))), &sc) // its own stream too
	return sc
}

// humps gives half the queueing sources an Erlang-k queue (k = 2..8): a
// hump above a sparse floor, as wake-ups and schedulers make, where the
// least-delayed samples are rare.
func humps(rng *rand.Rand, sc *Scenario) {
	for i := range sc.Sources {
		if sc.Sources[i].JitterUS > 0 && rng.Float64() < 0.5 {
			sc.Sources[i].JitterShape = 2 + rng.IntN(7)
		}
	}
}

// sparse makes, one time in three, a lone source answer only in a few short
// windows between long silences: a starved client (heavy loss, an
// unreachable path) whose few samples lie minutes apart, so that whatever
// the discipline concludes from them — a rate across a silence in which
// the reference may have stepped — has little to check it against.
func sparse(rng *rand.Rand, sc *Scenario) {
	if rng.Float64() >= 1.0/3 {
		return
	}
	s := &sc.Sources[0]
	var ws []Window
	at := 0.0
	for at < sc.DurationS {
		open := math.Round(1 + 30*rng.Float64()) // answers for this long
		quiet := math.Round(60 + 600*rng.Float64())
		ws = append(ws, Window{FromS: at + open, ToS: at + open + quiet})
		at += open + quiet
	}
	s.Outages = append(s.Outages, ws...)
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

func genSource(rng *rand.Rand, j int, durS float64) Source {
	u := func(lo, hi float64) float64 { return lo + (hi-lo)*rng.Float64() }
	pick := func(p float64) bool { return rng.Float64() < p }
	s := DefaultSource()
	s.Name = fmt.Sprintf("s%d", j)
	s.PollS = float64(int(1) << rng.IntN(5)) // 1..16 s
	if pick(0.2) {
		s.Protocol = "ptp" // a unicast PTP grandmaster: the same path, PTP's engines
	} else if pick(0.3) {
		s.MaxPollS = s.PollS * float64(int(1)<<(1+rng.IntN(6))) // adapts up to 64× on the filter's advice
	}
	s.DelayUS = math.Round(50 * math.Pow(400, rng.Float64()))
	if pick(0.5) {
		s.AsymmetryUS = math.Round(u(-s.DelayUS, s.DelayUS))
	}
	if pick(0.6) {
		s.JitterUS = math.Round(u(0, s.DelayUS))
	}
	if pick(0.4) {
		s.LossPct = math.Round(u(0, 30))
	}
	s.Stratum = uint8(1 + rng.IntN(3))
	if s.Stratum > 1 {
		s.RootDelayUS = math.Round(u(0, 5000))
	}
	s.RootDispersionUS = math.Round(u(1, 2000))
	if pick(0.1) {
		s.RootDispersionUS = math.Round(u(10_000, 100_000)) // honest but vague
	}
	if pick(0.3) {
		// An honest step within what the source advertises.
		lim := (s.RootDispersionUS + s.RootDelayUS/2) / 1000
		s.Errors = append(s.Errors, Error{FromS: math.Round(u(0, durS)), OffsetMS: round3(u(-lim, lim) * 0.95)})
	}
	for range rng.IntN(3) {
		from := math.Round(u(0, durS))
		s.Outages = append(s.Outages, Window{FromS: from, ToS: from + math.Round(u(10, 300))})
	}
	if pick(0.2) {
		d := math.Round(50 * math.Pow(400, rng.Float64()))
		s.Routes = append(s.Routes, Route{FromS: math.Round(u(0, durS)), DelayUS: d, AsymmetryUS: math.Round(u(-d, d) * rng.Float64())})
	}
	sortErrors(s.Errors)
	return s
}

func sortErrors(es []Error) {
	for i := 1; i < len(es); i++ {
		for j := i; j > 0 && es[j].FromS < es[j-1].FromS; j-- {
			es[j], es[j-1] = es[j-1], es[j]
		}
	}
}

// addLiars schedules lying episodes (start, grow, flip sign, stop) on
// random sources, keeping each only if the world stays within the
// majority assumption.
func addLiars(rng *rand.Rand, sc *Scenario) {
	n := len(sc.Sources)
	if (n-1)/2 == 0 {
		return
	}
	for range rng.IntN(6) {
		j := rng.IntN(n)
		s := &sc.Sources[j]
		saved := append([]Error(nil), s.Errors...)
		from := math.Round(sc.DurationS * rng.Float64())
		to := from + math.Round(30+600*rng.Float64())
		mag := (s.RootDispersionUS+s.RootDelayUS/2)/1000 + 0.5 + 200*math.Pow(rng.Float64(), 3) // ms beyond honest
		sign := 1.0
		if rng.IntN(2) == 0 {
			sign = -1
		}
		var ep []Error
		switch rng.IntN(3) {
		case 0: // constant lie
			ep = []Error{{FromS: from, OffsetMS: round3(sign * mag)}}
		case 1: // grows
			for k := range 4 {
				ep = append(ep, Error{FromS: from + float64(k)*(to-from)/4, OffsetMS: round3(sign * mag * float64(k+1) / 4)})
			}
		default: // flips sign halfway
			ep = []Error{{FromS: from, OffsetMS: round3(sign * mag)}, {FromS: math.Round((from + to) / 2), OffsetMS: round3(-sign * mag)}}
		}
		ep = append(ep, Error{FromS: to, OffsetMS: 0}) // stops lying
		// Replace whatever the source did inside the episode.
		var kept []Error
		for _, e := range s.Errors {
			if e.FromS < from || e.FromS > to {
				kept = append(kept, e)
			}
		}
		s.Errors = append(kept, ep...)
		sortErrors(s.Errors)
		if sc.TruthMode() != TruthTrue {
			s.Errors = saved
		}
	}
}

// Broken reports whether a result shows a broken promise: a read that
// missed its truth, TrueTime going backwards, or shared memory disagreeing
// with the in-process clock.
func Broken(r Result) bool { return r.Violations > 0 || r.Backwards > 0 || r.ShmMismatches > 0 }

// FuzzReport summarises a campaign.
type FuzzReport struct {
	Worlds, Reads, Violations int
	Left                      int // worlds whose realization left the majority assumption (see Result.LeftAssumptionsS)
	ByMode                    map[TruthMode]int
	Elapsed                   time.Duration
	// First failing world, as generated and as shrunk; nil when none failed.
	Failing, Shrunk *Scenario
	FailResult      Result
	ShrinkRuns      int
}

// Fuzz runs worlds 0..worlds−1 of the campaign seeded with seed and stops
// at the first broken one, which it shrinks.
func Fuzz(worlds int, seed uint64, opt Options, progress func(i int, r Result)) (FuzzReport, error) {
	start := time.Now()
	rep := FuzzReport{ByMode: map[TruthMode]int{}}
	for i := range worlds {
		sc := Generate(seed, i)
		if err := sc.Validate(); err != nil {
			return rep, fmt.Errorf("generator made an invalid world %d: %w", i, err)
		}
		r, err := Run(sc, opt)
		if err != nil {
			return rep, fmt.Errorf("world %d: %w", i, err)
		}
		rep.Worlds++
		rep.Reads += r.Reads
		rep.ByMode[r.Mode]++
		if r.LeftAssumptionsS >= 0 && r.Mode == TruthTrue {
			rep.Left++
		}
		if progress != nil {
			progress(i, r)
		}
		if Broken(r) {
			rep.Violations += r.Violations + r.Backwards + r.ShmMismatches
			rep.Failing, rep.FailResult = &sc, r
			shrunk, runs, err := Shrink(sc, opt)
			if err != nil {
				return rep, err
			}
			rep.Shrunk, rep.ShrinkRuns = &shrunk, runs
			break
		}
	}
	rep.Elapsed = time.Since(start)
	return rep, nil
}

// maxShrinkRuns bounds the shrinker's work.
const maxShrinkRuns = 400

// Shrink makes a broken scenario smaller while it stays broken: fewer
// sources, fewer events, less noise, a shorter run. It returns the smallest
// broken scenario it found and the number of runs it took.
func Shrink(sc Scenario, opt Options) (Scenario, int, error) {
	runs := 0
	broken := func(c Scenario) (bool, error) {
		if c.Validate() != nil || runs >= maxShrinkRuns {
			return false, nil
		}
		runs++
		r, err := Run(c, opt)
		return err == nil && Broken(r), nil
	}
	for {
		progress := false
		for _, c := range shrinkCandidates(sc) {
			ok, err := broken(c)
			if err != nil {
				return sc, runs, err
			}
			if ok {
				sc, progress = c, true
				break
			}
		}
		if !progress || runs >= maxShrinkRuns {
			return sc, runs, nil
		}
	}
}

// shrinkCandidates are one-step simplifications of sc, biggest first.
func shrinkCandidates(sc Scenario) []Scenario {
	var out []Scenario
	clone := func() Scenario {
		c := sc
		c.Sources = make([]Source, len(sc.Sources))
		for i, s := range sc.Sources {
			s.Errors = append([]Error(nil), s.Errors...)
			s.Outages = append([]Window(nil), s.Outages...)
			s.Routes = append([]Route(nil), s.Routes...)
			c.Sources[i] = s
		}
		c.Host.TempSteps = append([]TempStep(nil), sc.Host.TempSteps...)
		return c
	}
	if sc.DurationS > 60 {
		c := clone()
		c.DurationS = math.Round(sc.DurationS / 2)
		out = append(out, c)
	}
	for i := range sc.Sources {
		if len(sc.Sources) > 1 {
			c := clone()
			c.Sources = append(c.Sources[:i], c.Sources[i+1:]...)
			out = append(out, c)
		}
	}
	h := sc.Host
	if len(h.TempSteps) > 0 || h.WanderPPBPerSqrtS != 0 || h.DriftFilePPM != nil {
		c := clone()
		c.Host.TempSteps, c.Host.WanderPPBPerSqrtS, c.Host.DriftFilePPM = nil, 0, nil
		out = append(out, c)
	}
	if h.FreqErrorPPM != 0 || h.OffsetMS != 0 {
		c := clone()
		c.Host.FreqErrorPPM, c.Host.OffsetMS = 0, 0
		out = append(out, c)
	}
	for i, s := range sc.Sources {
		d := DefaultSource()
		simpler := []func(*Source){
			func(x *Source) { x.Outages = nil },
			func(x *Source) { x.Routes = nil },
			func(x *Source) { x.LossPct = 0 },
			func(x *Source) { x.JitterUS, x.JitterShape = 0, 0 },
			func(x *Source) { x.JitterShape = 0 },
			func(x *Source) { x.AsymmetryUS = 0 },
			func(x *Source) {
				x.RootDelayUS, x.RootDispersionUS, x.Stratum = d.RootDelayUS, d.RootDispersionUS, d.Stratum
			},
			func(x *Source) { x.MaxPollS = 0 },
			func(x *Source) { x.Protocol = "" },
			func(x *Source) { x.PollS, x.MaxPollS = d.PollS, 0 },
			func(x *Source) { x.DelayUS = d.DelayUS },
		}
		for k := range s.Errors {
			simpler = append(simpler, func(x *Source) { x.Errors = append(x.Errors[:k:k], x.Errors[k+1:]...) })
		}
		for _, f := range simpler {
			c := clone()
			f(&c.Sources[i])
			if !reflect.DeepEqual(c.Sources[i], s) {
				out = append(out, c)
			}
		}
	}
	return out
}

// MarshalScenario writes sc as a scenario file stating only what differs
// from the defaults, so ParseScenario reads back the same scenario.
func MarshalScenario(sc Scenario) ([]byte, error) {
	full, err := toMap(sc)
	if err != nil {
		return nil, err
	}
	def, err := toMap(Defaults())
	if err != nil {
		return nil, err
	}
	out := diffMap(full, def)
	dsrc, err := toMap(DefaultSource())
	if err != nil {
		return nil, err
	}
	var srcs []any
	for _, s := range sc.Sources {
		m, err := toMap(s)
		if err != nil {
			return nil, err
		}
		d := diffMap(m, dsrc)
		d["name"] = s.Name
		srcs = append(srcs, d)
	}
	out["name"] = sc.Name
	out["sources"] = srcs
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(out); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func toMap(v any) (map[string]any, error) {
	b, err := yaml.Marshal(v)
	if err != nil {
		return nil, err
	}
	m := map[string]any{}
	return m, yaml.Unmarshal(b, &m)
}

// diffMap keeps the keys of m whose values differ from def, recursing into
// maps; lists are kept whole.
func diffMap(m, def map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		dv, ok := def[k]
		if mv, isMap := v.(map[string]any); isMap {
			dm, _ := dv.(map[string]any)
			if sub := diffMap(mv, dm); len(sub) > 0 {
				out[k] = sub
			}
			continue
		}
		if !ok || !reflect.DeepEqual(v, dv) {
			if v == nil {
				continue
			}
			if l, isList := v.([]any); isList && len(l) == 0 {
				continue
			}
			out[k] = v
		}
	}
	return out
}
