package discipline

import (
	"fmt"

	"github.com/meridiantime/meridian/truetime"
)

// Sample is one two-way time transfer with a source, as the protocol layer
// (NTP, PTP, simulator) measured it. Local times are readings of the
// disciplined clock; remote times are the source's clock.
//
//	offset θ = ((t2 − t1) + (t3 − t4)) / 2   (source minus local)
//	delay  δ = (t4 − t1) − (t3 − t2)
//
// The request usually comes first (NTP: t1 ≤ t4, t2 ≤ t3); PTP's response,
// the Sync, may come first and the request be sent behind it (t4 ≤ t1,
// t3 ≤ t2): the formulas are the same.
type Sample struct {
	T1NS int64 // local: request sent
	T2NS int64 // remote: request received
	T3NS int64 // remote: response sent
	T4NS int64 // local: response received

	RootDelayNS      int64 // source's round-trip delay to its reference
	RootDispersionNS int64 // source's own error bound to its reference
	Stratum          uint8
	Leap             truetime.Leap
	RefID            uint32
}

// OffsetNS is θ, the source's clock minus the local clock.
func (s Sample) OffsetNS() float64 {
	return (float64(s.T2NS-s.T1NS) + float64(s.T3NS-s.T4NS)) / 2
}

// DelayNS is δ, the round-trip path delay.
func (s Sample) DelayNS() int64 { return (s.T4NS - s.T1NS) - (s.T3NS - s.T2NS) }

// maxExchangeNS bounds a usable round trip: a reply later than this is
// useless for timekeeping and likely a bug or an attack.
const maxExchangeNS = 10_000_000_000

// Validate rejects samples no honest exchange can produce.
func (s Sample) Validate() error {
	switch {
	case s.T1NS <= 0 || s.T2NS <= 0 || s.T3NS <= 0 || s.T4NS <= 0:
		// Also keeps every difference below from overflowing.
		return fmt.Errorf("discipline: sample timestamps must be after 1970, got t1..t4 = %d %d %d %d", s.T1NS, s.T2NS, s.T3NS, s.T4NS)
	case s.T4NS-s.T1NS > maxExchangeNS || s.T1NS-s.T4NS > maxExchangeNS:
		return fmt.Errorf("discipline: exchange took %d ns, longer than %d", s.T4NS-s.T1NS, int64(maxExchangeNS))
	case (s.T4NS < s.T1NS) != (s.T3NS < s.T2NS) && s.T4NS != s.T1NS && s.T3NS != s.T2NS:
		// Either the request came first at both ends (NTP: t1 ≤ t4,
		// t2 ≤ t3) or the response did (PTP's Sync, then the Delay_Req
		// sent behind it: t4 ≤ t1, t3 ≤ t2). Mixed, the two clocks
		// disagree on which of two messages was first.
		return fmt.Errorf("discipline: sample t1..t4 = %d %d %d %d: the two ends disagree on which message came first", s.T1NS, s.T2NS, s.T3NS, s.T4NS)
	case s.DelayNS() < 0:
		return fmt.Errorf("discipline: sample has negative delay %d ns", s.DelayNS())
	case s.RootDelayNS < 0 || s.RootDispersionNS < 0:
		return fmt.Errorf("discipline: negative root delay %d or dispersion %d", s.RootDelayNS, s.RootDispersionNS)
	case s.Stratum == 0 || s.Stratum >= 16:
		return fmt.Errorf("discipline: source stratum %d is not synchronised", s.Stratum)
	}
	return nil
}

// ServoKind selects how offsets and frequency are steered.
type ServoKind int

const (
	// ServoLinReg sets the frequency from the weighted linear regression of
	// recent samples and slews the residual offset (chrony style). Default.
	ServoLinReg ServoKind = iota
	// ServoPI is a proportional-integral loop on the offset (ptp4l style).
	ServoPI
)

func (k ServoKind) String() string {
	switch k {
	case ServoLinReg:
		return "linreg"
	case ServoPI:
		return "pi"
	}
	return fmt.Sprintf("servo(%d)", int(k))
}

// Ablation removes terms from the bound. It exists only for the negative
// controls that prove the simulator's containment check can fail; the
// daemon never sets it.
type Ablation struct {
	OmitPathDelay bool // drop δ/2 (asymmetry) from each sample's bound
	OmitDrift     bool // drop the drift bound and frequency uncertainty growth
	OmitFloor     bool // let a later interval fall below an earlier earliest
}

// Config is the discipline's tuning. Zero values are replaced by defaults in
// New (see DefaultConfig).
type Config struct {
	MinSources             int     // agreeing sources needed before synchronized
	DriftBoundPPB          float64 // assumed bound on frequency wander (15 ppm)
	OscillatorTolerancePPB float64 // |frequency error| of an uncorrected oscillator (500 ppm)
	MaxFreqPPB             float64 // clamp on the applied correction
	StepThresholdNS        int64   // step when |offset| exceeds this; slew below
	StepLimit              int     // updates during which a step is allowed; <0: always
	MaxErrorNS             int64   // half-width beyond which the clock is unsynchronized
	PrecisionNS            int64   // reading precision of the local clock
	HoldoverAfterNS        int64   // no usable sample this long → holdover
	FilterLen              int     // samples kept per source for the clock filter
	// RegressionLen is how many points the frequency regression keeps. Its
	// hard slope bound falls as 1/span: on a path whose points are ~1 ms
	// wide (scenario 28), 64 points bound the rate to 50–65 ppm, more than
	// the drift bound, and 256 to ~12 ppm (the bound ages at ~27 ppm
	// instead of 65–80). The drift bound covers the frequency's moves
	// across any window, and a window no line fits is trimmed (refit).
	RegressionLen      int
	SlewTimeConstantNS int64 // offsets are slewed out over about this long
	Servo              ServoKind
	InitialFreqPPB     float64 // frequency from the drift file (steering only, not the bound)
	Ablation           Ablation
}

// DefaultConfig returns the defaults (the config keys drift_bound_ppm,
// oscillator_tolerance_ppm, max_error, … document the same values).
func DefaultConfig() Config {
	return Config{
		MinSources:             1,
		DriftBoundPPB:          15_000,
		OscillatorTolerancePPB: 500_000,
		MaxFreqPPB:             500_000,
		StepThresholdNS:        128_000_000,
		StepLimit:              3,
		MaxErrorNS:             1_000_000_000,
		PrecisionNS:            100,
		HoldoverAfterNS:        64_000_000_000,
		FilterLen:              256,
		RegressionLen:          256,
		SlewTimeConstantNS:     8_000_000_000,
		Servo:                  ServoLinReg,
	}
}

// Correction is what the caller must apply to the clock.Disciplined, in
// this order: Step(StepNS) when StepNS ≠ 0, then AdjFreqPPB(FreqPPB) when
// SetFreq.
type Correction struct {
	StepNS  int64
	SetFreq bool
	FreqPPB float64
}

// SourceState is the discipline's view of one source, for status and metrics.
type SourceState int

const (
	SourceUnused      SourceState = iota // no usable sample yet, or not fresh
	SourceSelected                       // agreed with the majority and was combined
	SourceFalseticker                    // outside the majority's intersection
	SourceTooFew                         // agreeing set smaller than min_sources
	SourceUnreachable                    // no reply to the last 8 polls: out of selection
	SourceNoSelect                       // configured noselect: measured and reported, never selected
	SourceTooFar                         // its bound exceeds the source's max_distance
)

// SourceOptions are a source's selection options, as chrony's server
// directive has them.
type SourceOptions struct {
	// NoSelect: measure and report the source, never select it.
	NoSelect bool
	// Prefer: when a preferred source is among the selected, the estimate
	// is combined from the preferred ones only (the interval still comes
	// from every selected source's agreement).
	Prefer bool
	// MaxDistanceNS: a source whose bound (root delay/2 + root dispersion
	// + its own delay/2, aged) exceeds this is not selectable; 0: no limit
	// beyond MaxErrorNS.
	MaxDistanceNS int64
}

func (s SourceState) String() string {
	switch s {
	case SourceUnused:
		return "unused"
	case SourceSelected:
		return "selected"
	case SourceFalseticker:
		return "falseticker"
	case SourceTooFew:
		return "too_few"
	case SourceUnreachable:
		return "unreachable"
	case SourceNoSelect:
		return "noselect"
	case SourceTooFar:
		return "too_far"
	}
	return fmt.Sprintf("source_state(%d)", int(s))
}

// SourceReport summarises one source at the last update.
type SourceReport struct {
	Name        string
	State       SourceState
	OffsetNS    float64 // filtered estimate of local minus source, aged to the update
	DelayNS     int64   // delay of the filtered sample
	JitterNS    float64 // RMS of offset differences in the filter
	BoundNS     float64 // half-width of this source's interval at the update
	Stratum     uint8
	Samples     int   // samples in the filter
	LastLocalNS int64 // local time of the newest sample
	// PollTargetNS is the poll interval the filter's noise calls for (see
	// pollTarget); 0 when there are too few samples to say.
	PollTargetNS int64
}

// Update is the result of one discipline step.
type Update struct {
	Correction Correction
	Estimate   truetime.Estimate
	Sources    []SourceReport
}
