package impair

import (
	"fmt"
	"math"
	"time"
)

// Dist is a jitter distribution.
type Dist int

const (
	// None adds no jitter.
	None Dist = iota
	// Uniform adds a delay drawn uniformly from [0, Jitter.Max).
	Uniform
	// Exponential adds a delay drawn from an exponential distribution of
	// mean Jitter.Mean (capped at Jitter.Max when that is set).
	Exponential
)

func (d Dist) String() string {
	switch d {
	case None:
		return "none"
	case Uniform:
		return "uniform"
	case Exponential:
		return "exponential"
	}
	return fmt.Sprintf("Dist(%d)", int(d))
}

// Jitter is the random delay added to a direction's base delay.
type Jitter struct {
	Dist Dist
	Mean time.Duration // Exponential: the mean
	Max  time.Duration // Uniform: the upper end; Exponential: a cap (0: none)
}

// Change switches a direction's base delay at a given time after the wire
// was configured: a route change. Frames already queued keep their due
// instants.
type Change struct {
	At    time.Duration // since Configure (or New)
	Delay time.Duration // the new base delay
}

// Path is one direction's impairment.
type Path struct {
	Delay     time.Duration // base delay, the minimum
	Jitter    Jitter
	LossPct   float64 // frames dropped, percent in [0, 100]
	NoReorder bool    // keep FIFO: a jittered frame never overtakes an earlier one
	Changes   []Change
	// SubtractNS is taken off this direction's delays on top of
	// Config.SubtractNS: the wire's own overhead is not the same both ways
	// (one reader thread and one TAP queue each), and an uneven overhead is
	// an asymmetry no NTP client can see.
	SubtractNS int64
}

// Config is the wire's impairment in both directions.
type Config struct {
	AtoB, BtoA Path
	Seed       uint64 // the RNG seed: equal seeds give equal decisions
	// SubtractNS is taken off every configured delay (never below zero):
	// set it to the calibrated one-way overhead so that configured delays
	// are what the path shows.
	SubtractNS int64
	// MaxQueue bounds the frames in flight per direction; beyond it frames
	// are dropped and counted as Overflow. 0 means 4096.
	MaxQueue int

	ignoreDelay bool // test hook: the negative control, base delays not applied
}

// Validate checks every field; errors name the key.
func (c Config) Validate() error {
	for _, p := range []struct {
		key string
		p   Path
	}{{"a_to_b", c.AtoB}, {"b_to_a", c.BtoA}} {
		if err := p.p.validate(p.key); err != nil {
			return err
		}
	}
	if c.SubtractNS < 0 {
		return fmt.Errorf("impair: subtract_ns: must be ≥ 0, got %d", c.SubtractNS)
	}
	if c.MaxQueue < 0 {
		return fmt.Errorf("impair: max_queue: must be ≥ 0, got %d", c.MaxQueue)
	}
	return nil
}

func (p Path) validate(key string) error {
	if p.Delay < 0 {
		return fmt.Errorf("impair: %s.delay: must be ≥ 0, got %v", key, p.Delay)
	}
	if p.SubtractNS < 0 {
		return fmt.Errorf("impair: %s.subtract_ns: must be ≥ 0, got %d", key, p.SubtractNS)
	}
	if math.IsNaN(p.LossPct) || p.LossPct < 0 || p.LossPct > 100 {
		return fmt.Errorf("impair: %s.loss_pct: must be in [0, 100], got %v", key, p.LossPct)
	}
	j := p.Jitter
	switch j.Dist {
	case None:
		if j.Mean != 0 || j.Max != 0 {
			return fmt.Errorf("impair: %s.jitter: distribution none takes no mean or max, got mean %v max %v", key, j.Mean, j.Max)
		}
	case Uniform:
		if j.Max <= 0 {
			return fmt.Errorf("impair: %s.jitter.max: must be > 0 for uniform, got %v", key, j.Max)
		}
	case Exponential:
		if j.Mean <= 0 {
			return fmt.Errorf("impair: %s.jitter.mean: must be > 0 for exponential, got %v", key, j.Mean)
		}
		if j.Max < 0 {
			return fmt.Errorf("impair: %s.jitter.max: must be ≥ 0, got %v", key, j.Max)
		}
	default:
		return fmt.Errorf("impair: %s.jitter.dist: unknown distribution %d", key, int(j.Dist))
	}
	for i, ch := range p.Changes {
		if ch.At < 0 || ch.Delay < 0 {
			return fmt.Errorf("impair: %s.changes[%d]: at and delay must be ≥ 0, got at %v delay %v", key, i, ch.At, ch.Delay)
		}
		if i > 0 && ch.At < p.Changes[i-1].At {
			return fmt.Errorf("impair: %s.changes[%d].at: must not precede changes[%d].at (%v < %v)", key, i, i-1, ch.At, p.Changes[i-1].At)
		}
	}
	return nil
}
