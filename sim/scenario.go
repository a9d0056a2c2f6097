package sim

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Scenario is one simulated run. Scenario files state only what differs
// from Defaults(); every duration is in seconds (float) or the unit in the
// key's name.
type Scenario struct {
	Name        string  `yaml:"name"`
	Description string  `yaml:"description"`
	Seed        int64   `yaml:"seed"`
	DurationS   float64 `yaml:"duration_s"`
	ReadEveryMS float64 `yaml:"read_every_ms"` // mean spacing of TrueTime reads (uniformly jittered)
	TickS       float64 `yaml:"tick_s"`        // discipline update period

	Host       Host       `yaml:"host"`
	Discipline Discipline `yaml:"discipline"`
	Sources    []Source   `yaml:"sources"`
	Expect     Expect     `yaml:"expect"`
}

// Host is the simulated machine's oscillator and starting state.
type Host struct {
	OffsetMS          float64    `yaml:"offset_ms"`      // initial clock minus true time
	FreqErrorPPM      float64    `yaml:"freq_error_ppm"` // oscillator rate error
	WanderPPBPerSqrtS float64    `yaml:"wander_ppb_per_sqrt_s"`
	TempSteps         []TempStep `yaml:"temp_steps"`
	DriftFilePPM      *float64   `yaml:"drift_file_ppm"` // restart with this frequency correction
	Suspends          []Suspend  `yaml:"suspends"`       // host suspend / VM pause: the raw clock and the daemon stop
}

// Suspend stops the host at AtS for DurationS: CLOCK_MONOTONIC_RAW stands
// still and the daemon runs nothing; CLOCK_BOOTTIME and the sources go on.
type Suspend struct {
	AtS       float64 `yaml:"at_s"`
	DurationS float64 `yaml:"duration_s"`
}

// TempStep is a sudden oscillator frequency change (a temperature step).
type TempStep struct {
	AtS      float64 `yaml:"at_s"`
	DeltaPPM float64 `yaml:"delta_ppm"`
}

// Discipline overrides the discipline's configuration.
type Discipline struct {
	Servo           string  `yaml:"servo"` // linreg | pi
	MinSources      int     `yaml:"min_sources"`
	DriftBoundPPM   float64 `yaml:"drift_bound_ppm"`
	MaxErrorMS      float64 `yaml:"max_error_ms"`
	StepThresholdMS float64 `yaml:"step_threshold_ms"`
}

// Source is a simulated time source behind a simulated link.
type Source struct {
	Name        string  `yaml:"name"`
	Protocol    string  `yaml:"protocol"` // ntp (default) | ptp: a unicast PTP grandmaster; poll_s is its Sync and Delay_Req period
	PollS       float64 `yaml:"poll_s"`
	MaxPollS    float64 `yaml:"max_poll_s"`   // > poll_s: the poll adapts between them on the filter's advice
	DelayUS     float64 `yaml:"delay_us"`     // base round trip
	AsymmetryUS float64 `yaml:"asymmetry_us"` // forward minus return one-way delay
	JitterUS    float64 `yaml:"jitter_us"`    // mean of exponential queueing per direction
	// ReturnJitterUS, when set, is the return direction's mean queueing
	// (jitter_us is then the forward direction's): one-sided queueing, as
	// when requests leave an idle host and replies a busy one.
	ReturnJitterUS *float64 `yaml:"return_jitter_us"`
	// JitterShape k > 1 makes each direction's queueing Erlang-k (the sum
	// of k exponentials, same mean) instead of exponential (k = 1, the
	// default): a hump with a sparse floor, as a wake-up or a scheduler
	// delay has, where the least-delayed samples are rare and far apart.
	JitterShape int `yaml:"jitter_shape"`
	// Trace names a file (relative to the scenario's) of recorded one-way
	// delays, a "request_us reply_us" pair per line ('#' starts a
	// comment): each exchange takes the next pair in turn, from the top
	// again at the end, in place of delay_us, asymmetry_us and jitter
	// (loss and outages still apply). A path measured on a real wire
	// (`meridian-bench accuracy --traces`, docs/benchmarks.md) replays
	// here against true time.
	Trace            string       `yaml:"trace"`
	TraceRows        [][2]float64 `yaml:"-"`        // µs, loaded by LoadDir
	LossPct          float64      `yaml:"loss_pct"` // per direction
	Outages          []Window     `yaml:"outages"`  // no replies
	Stratum          uint8        `yaml:"stratum"`  // advertised
	RootDispersionUS float64      `yaml:"root_dispersion_us"`
	RootDelayUS      float64      `yaml:"root_delay_us"`
	Errors           []Error      `yaml:"errors"` // the source's clock minus true time, piecewise
	Routes           []Route      `yaml:"routes"` // path changes: new delay and asymmetry from a time on
}

// Route replaces a source's delay_us and asymmetry_us from FromS on.
type Route struct {
	FromS       float64 `yaml:"from_s"`
	DelayUS     float64 `yaml:"delay_us"`
	AsymmetryUS float64 `yaml:"asymmetry_us"`
}

// Window is a half-open span of simulated time.
type Window struct {
	FromS float64 `yaml:"from_s"`
	ToS   float64 `yaml:"to_s"`
}

// Error makes the source's clock read OffsetMS away from true time from FromS
// on (until the next Error). A lie when larger than the advertised root
// dispersion.
type Error struct {
	FromS    float64 `yaml:"from_s"`
	OffsetMS float64 `yaml:"offset_ms"`
}

// Expect is what the scenario must show besides zero containment violations.
type Expect struct {
	SyncedByS       float64  `yaml:"synced_by_s"`       // first synchronized read no later than this (0: no check)
	NeverSynced     bool     `yaml:"never_synced"`      // must never report synchronized
	MaxAbsErrorUS   float64  `yaml:"max_abs_error_us"`  // clock error bound after SettleS (0: no check)
	SettleS         float64  `yaml:"settle_s"`          // reads before this are not checked against MaxAbsErrorUS
	Falsetickers    []string `yaml:"falsetickers"`      // sources that must be flagged at the end
	HoldoverSeen    bool     `yaml:"holdover_seen"`     // some read must report holdover
	DisruptedSeen   bool     `yaml:"disrupted_seen"`    // some read must be refused as disrupted
	UnsyncAfterSync bool     `yaml:"unsync_after_sync"` // some read after first sync must be unsynchronized
	SyncedAtEnd     bool     `yaml:"synced_at_end"`     // last read synchronized
	MinSteps        int      `yaml:"min_steps"`         // clock steps at least
	MaxSteps        *int     `yaml:"max_steps"`         // clock steps at most
	MaxEpsVsMin     float64  `yaml:"max_eps_vs_min"`    // median ε over the provable minimum at most (0: no check)
	MaxMidP50US     float64  `yaml:"max_mid_p50_us"`    // median |interval midpoint − true| at most (0: no check)
	MaxEpsP50US     float64  `yaml:"max_eps_p50_us"`    // median half-width at most (0: no check)
}

// Defaults returns the baseline scenario every file starts from.
func Defaults() Scenario {
	return Scenario{
		Seed:        1,
		DurationS:   3600,
		ReadEveryMS: 30,
		TickS:       1,
	}
}

// DefaultSource is the baseline for every entry of sources.
func DefaultSource() Source {
	return Source{PollS: 4, DelayUS: 200, Stratum: 1, RootDispersionUS: 1}
}

// ParseScenario decodes one scenario over the defaults. Unknown keys are
// errors.
func ParseScenario(data []byte) (Scenario, error) {
	sc := Defaults()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&sc); err != nil {
		return Scenario{}, fmt.Errorf("scenario: %w", err)
	}
	if len(sc.Sources) == 0 {
		sc.Sources = []Source{{Name: "ref"}}
	}
	// Re-decode sources over per-source defaults so files list only differences.
	var raw struct {
		Sources []yaml.Node `yaml:"sources"`
	}
	_ = yaml.Unmarshal(data, &raw)
	for i := range sc.Sources {
		s := DefaultSource()
		if i < len(raw.Sources) {
			if err := raw.Sources[i].Decode(&s); err != nil {
				return Scenario{}, fmt.Errorf("scenario: sources[%d]: %w", i, err)
			}
		} else {
			s.Name = sc.Sources[i].Name
		}
		if s.Name == "" {
			s.Name = fmt.Sprintf("src%d", i)
		}
		sc.Sources[i] = s
	}
	return sc, sc.Validate()
}

// Validate reports the first bad value, naming its key.
func (sc Scenario) Validate() error {
	var errs []string
	bad := func(f string, a ...any) { errs = append(errs, fmt.Sprintf(f, a...)) }
	if sc.Name == "" {
		bad("name: must be set")
	}
	for _, k := range nonFinite(sc) {
		bad("%s: must be a finite number", k)
	}
	if sc.DurationS <= 0 {
		bad("duration_s: must be > 0, got %v", sc.DurationS)
	}
	if sc.ReadEveryMS <= 0 {
		bad("read_every_ms: must be > 0, got %v", sc.ReadEveryMS)
	}
	if sc.TickS <= 0 {
		bad("tick_s: must be > 0, got %v", sc.TickS)
	}
	for i, p := range sc.Host.Suspends {
		if p.AtS < 0 || p.DurationS <= 0 {
			bad("host.suspends[%d]: at_s must be ≥ 0 and duration_s > 0, got %v and %v", i, p.AtS, p.DurationS)
		}
		if i > 0 && p.AtS < sc.Host.Suspends[i-1].AtS+sc.Host.Suspends[i-1].DurationS {
			bad("host.suspends[%d]: starts before suspends[%d] ends (list them in order, not overlapping)", i, i-1)
		}
	}
	switch sc.Discipline.Servo {
	case "", "linreg", "pi":
	default:
		bad("discipline.servo: want linreg or pi, got %q", sc.Discipline.Servo)
	}
	seen := map[string]bool{}
	for i, s := range sc.Sources {
		if seen[s.Name] {
			bad("sources[%d].name: duplicate %q", i, s.Name)
		}
		seen[s.Name] = true
		switch s.Protocol {
		case "", "ntp":
		case "ptp":
			if s.MaxPollS != 0 {
				bad("sources[%d].max_poll_s: a ptp source's rate is fixed by its grant, got %v", i, s.MaxPollS)
			}
		default:
			bad("sources[%d].protocol: want ntp or ptp, got %q", i, s.Protocol)
		}
		if s.MaxPollS != 0 && s.MaxPollS < s.PollS {
			bad("sources[%d].max_poll_s: must be 0 or ≥ poll_s %v, got %v", i, s.PollS, s.MaxPollS)
		}
		if s.PollS <= 0 {
			bad("sources[%d].poll_s: must be > 0, got %v", i, s.PollS)
		}
		if s.DelayUS < 0 || s.JitterUS < 0 || s.RootDelayUS < 0 || s.RootDispersionUS < 0 {
			bad("sources[%d]: delays, jitter and root values must be ≥ 0", i)
		}
		if s.ReturnJitterUS != nil && !(*s.ReturnJitterUS >= 0) {
			bad("sources[%d].return_jitter_us: must be ≥ 0, got %v", i, *s.ReturnJitterUS)
		}
		if s.JitterShape < 0 || s.JitterShape > maxJitterShape {
			bad("sources[%d].jitter_shape: must be 0..%d (0 and 1: exponential), got %d", i, maxJitterShape, s.JitterShape)
		}
		if s.DelayUS/2 < abs(s.AsymmetryUS)/2 {
			bad("sources[%d].asymmetry_us: |%v| exceeds delay_us %v", i, s.AsymmetryUS, s.DelayUS)
		}
		if s.LossPct < 0 || s.LossPct >= 100 {
			bad("sources[%d].loss_pct: must be in [0, 100), got %v", i, s.LossPct)
		}
		for j, rc := range s.Routes {
			if rc.DelayUS < 0 || abs(rc.AsymmetryUS) > rc.DelayUS {
				bad("sources[%d].routes[%d]: delay_us must be ≥ 0 and |asymmetry_us| ≤ delay_us, got %v and %v", i, j, rc.DelayUS, rc.AsymmetryUS)
			}
		}
		if s.Stratum == 0 || s.Stratum > 15 {
			bad("sources[%d].stratum: must be 1..15, got %d", i, s.Stratum)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("scenario %q: %s", sc.Name, strings.Join(errs, "; "))
	}
	return nil
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// LoadDir reads every *.yaml scenario in dir, sorted by file name.
func LoadDir(dir string) ([]Scenario, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("sim: no *.yaml scenarios in %s", dir)
	}
	sort.Strings(files)
	var out []Scenario
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		sc, err := ParseScenario(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for i := range sc.Sources {
			if err := sc.Sources[i].loadTrace(dir); err != nil {
				return nil, fmt.Errorf("%s: sources[%d].trace: %w", f, i, err)
			}
		}
		out = append(out, sc)
	}
	return out, nil
}

// maxJitterShape bounds jitter_shape (an Erlang-k draws k exponentials).
const maxJitterShape = 16

// TruthMode is what a scenario's reads are checked against.
type TruthMode int

const (
	// TruthTrue: within the stated assumptions, every read contains true time.
	TruthTrue TruthMode = iota
	// TruthReference: a lone reference lies or steps (outside the
	// assumptions); every synchronized read contains the reference's time
	// before or after its latest step.
	TruthReference
	// TruthNone: a majority lies at some instant; nothing can be proven and
	// only monotonicity (and the scenario's expectations) are checked.
	TruthNone
)

func (m TruthMode) String() string {
	switch m {
	case TruthTrue:
		return "true"
	case TruthReference:
		return "ref"
	}
	return "none"
}

// lies reports whether a source's error at an instant exceeds what it
// advertises (root delay/2 + root dispersion): an honest source's clock is
// within that of true time.
func (s Source) lies(errMS float64) bool {
	return abs(errMS)*1000 > s.RootDispersionUS+s.RootDelayUS/2
}

// lyingWindows are the spans during which source s's newest sample may be a
// lie: each lying segment extended by the time its samples stay newest
// (two polls and a round trip).
func (s Source) lyingWindows(endS float64) []Window {
	var out []Window
	memory := 2*max(s.PollS, s.MaxPollS) + 1
	for i, e := range s.Errors {
		if !s.lies(e.OffsetMS) {
			continue
		}
		to := endS
		if i+1 < len(s.Errors) {
			to = s.Errors[i+1].FromS
		}
		out = append(out, Window{FromS: e.FromS, ToS: to + memory})
	}
	return out
}

// TruthMode says which truth the scenario's reads are checked against: at
// most ⌊(n−1)/2⌋ of n sources may be lying at any instant (counting a
// source as lying while its newest sample may still be a lie) for true
// time; a lone lying or stepping reference is checked against its own old
// and new time; anything else only for monotonicity.
func (sc Scenario) TruthMode() TruthMode {
	n := len(sc.Sources)
	maxLiars := (n - 1) / 2
	var edges []float64
	var wins [][]Window
	for _, s := range sc.Sources {
		w := s.lyingWindows(sc.DurationS * 1e6)
		wins = append(wins, w)
		for _, x := range w {
			edges = append(edges, x.FromS)
		}
	}
	for _, at := range edges {
		liars := 0
		for _, ws := range wins {
			for _, w := range ws {
				if at >= w.FromS && at < w.ToS {
					liars++
					break
				}
			}
		}
		if liars > maxLiars {
			if n == 1 {
				return TruthReference
			}
			return TruthNone
		}
	}
	return TruthTrue
}

// ProvableMinUS is the narrowest half-width any bound can prove from the
// best source: δ_min/2 + root delay/2 + root dispersion (µs), the root
// values as the wire carries them (NTP's short format rounds up to 2⁻¹⁶ s).
func (sc Scenario) ProvableMinUS() float64 {
	best := math.Inf(1)
	for _, s := range sc.Sources {
		d := s.DelayUS
		for _, rc := range s.Routes {
			d = min(d, rc.DelayUS)
		}
		best = min(best, d/2+wireShortUS(s.RootDelayUS)/2+wireShortUS(s.RootDispersionUS))
	}
	if math.IsInf(best, 1) {
		return 0
	}
	return best
}

// wireShortUS is v µs after a round trip through NTP's 16.16 short format,
// rounded up as a bound must be.
func wireShortUS(v float64) float64 {
	return math.Ceil(v*65536/1e6) * 1e6 / 65536
}

// nonFinite lists the keys whose values are NaN or infinite.
func nonFinite(sc Scenario) []string {
	var out []string
	check := func(key string, v float64) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			out = append(out, key)
		}
	}
	check("duration_s", sc.DurationS)
	check("read_every_ms", sc.ReadEveryMS)
	check("tick_s", sc.TickS)
	h := sc.Host
	check("host.offset_ms", h.OffsetMS)
	check("host.freq_error_ppm", h.FreqErrorPPM)
	check("host.wander_ppb_per_sqrt_s", h.WanderPPBPerSqrtS)
	if h.DriftFilePPM != nil {
		check("host.drift_file_ppm", *h.DriftFilePPM)
	}
	for i, t := range h.TempSteps {
		check(fmt.Sprintf("host.temp_steps[%d].at_s", i), t.AtS)
		check(fmt.Sprintf("host.temp_steps[%d].delta_ppm", i), t.DeltaPPM)
	}
	for i, p := range h.Suspends {
		check(fmt.Sprintf("host.suspends[%d].at_s", i), p.AtS)
		check(fmt.Sprintf("host.suspends[%d].duration_s", i), p.DurationS)
	}
	d := sc.Discipline
	check("discipline.drift_bound_ppm", d.DriftBoundPPM)
	check("discipline.max_error_ms", d.MaxErrorMS)
	check("discipline.step_threshold_ms", d.StepThresholdMS)
	for i, s := range sc.Sources {
		k := fmt.Sprintf("sources[%d].", i)
		for name, v := range map[string]float64{"poll_s": s.PollS, "max_poll_s": s.MaxPollS, "delay_us": s.DelayUS, "asymmetry_us": s.AsymmetryUS,
			"jitter_us": s.JitterUS, "loss_pct": s.LossPct, "root_dispersion_us": s.RootDispersionUS, "root_delay_us": s.RootDelayUS} {
			check(k+name, v)
		}
		if s.ReturnJitterUS != nil {
			check(k+"return_jitter_us", *s.ReturnJitterUS)
		}
		for j, e := range s.Errors {
			check(fmt.Sprintf("%serrors[%d].from_s", k, j), e.FromS)
			check(fmt.Sprintf("%serrors[%d].offset_ms", k, j), e.OffsetMS)
		}
		for j, w := range s.Outages {
			check(fmt.Sprintf("%soutages[%d].from_s", k, j), w.FromS)
			check(fmt.Sprintf("%soutages[%d].to_s", k, j), w.ToS)
		}
		for j, r := range s.Routes {
			check(fmt.Sprintf("%sroutes[%d].from_s", k, j), r.FromS)
			check(fmt.Sprintf("%sroutes[%d].delay_us", k, j), r.DelayUS)
			check(fmt.Sprintf("%sroutes[%d].asymmetry_us", k, j), r.AsymmetryUS)
		}
	}
	sort.Strings(out)
	return out
}

// loadTrace reads the source's trace file (relative to dir), if it names
// one: every line a pair of non-negative one-way delays in µs.
func (s *Source) loadTrace(dir string) error {
	if s.Trace == "" {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(dir, s.Trace))
	if err != nil {
		return err
	}
	rows, err := ParseTrace(data)
	if err != nil {
		return fmt.Errorf("%s: %w", s.Trace, err)
	}
	s.TraceRows = rows
	return nil
}

// ParseTrace parses a delay trace: per line "request_us reply_us", both
// finite and ≥ 0; blank lines and '#' comments are skipped; at least one
// pair.
func ParseTrace(data []byte) ([][2]float64, error) {
	var rows [][2]float64
	for n, line := range strings.Split(string(data), "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: want two delays (request_us reply_us), got %d fields", n+1, len(f))
		}
		var row [2]float64
		for j, v := range f {
			x, err := strconv.ParseFloat(v, 64)
			if err != nil || !(x >= 0) || math.IsInf(x, 0) {
				return nil, fmt.Errorf("line %d: delay %q: want a finite number of µs ≥ 0", n+1, v)
			}
			row[j] = x
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		return nil, errors.New("no delays")
	}
	return rows, nil
}
