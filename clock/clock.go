package clock

import (
	"math"
	"time"
)

// Reader reads a clock. NowNS returns nanoseconds since the Unix epoch on the
// clock's own timescale (UTC, no leap smearing).
type Reader interface {
	NowNS() int64
}

// Disciplined is a clock that a servo can steer.
//
// Sign conventions: AdjFreqPPB(+x) makes the clock run x parts per billion
// faster than its free-running oscillator; Step(+s) moves the reading forward
// by s nanoseconds.
type Disciplined interface {
	Reader
	// AdjFreqPPB sets the absolute frequency correction in ppb. Values beyond
	// ±MaxFreqPPB are an error.
	AdjFreqPPB(freqPPB float64) error
	// FreqPPB returns the frequency correction currently applied.
	FreqPPB() (float64, error)
	// MaxFreqPPB is the largest |correction| the clock accepts.
	MaxFreqPPB() float64
	// Step adds stepNS to the clock's reading at once.
	Step(stepNS int64) error
	// SetSync reports synchronisation state to the clock (for the kernel's
	// STA_UNSYNC, maxerror and esterror; a no-op for software clocks).
	SetSync(synced bool, maxErrorNS, estErrorNS int64) error
}

// Linear is the pure model shared by every software clock in Meridian: a
// reading derived from a free-running raw counter R (nanoseconds):
//
//	L(R) = BaseNS + (R − BaseRawNS) · (1 + FreqPPB·1e-9)
//
// A frequency change rebases (BaseNS, BaseRawNS) to the raw instant of the
// change so the reading stays continuous; a step adds to BaseNS. The
// truetime shared-memory segment publishes these three numbers so other
// processes compute the same reading from CLOCK_MONOTONIC_RAW.
type Linear struct {
	BaseNS    int64   // clock reading at BaseRawNS
	BaseRawNS int64   // raw counter at the last rebase
	FreqPPB   float64 // frequency correction since BaseRawNS
}

// At returns the reading for raw counter value rawNS.
func (l Linear) At(rawNS int64) int64 {
	d := rawNS - l.BaseRawNS
	return l.BaseNS + d + int64(math.RoundToEven(float64(d)*l.FreqPPB*1e-9))
}

// Rebase returns the model with a new frequency from raw instant rawNS on,
// keeping the reading continuous at rawNS.
func (l Linear) Rebase(rawNS int64, freqPPB float64) Linear {
	return Linear{BaseNS: l.At(rawNS), BaseRawNS: rawNS, FreqPPB: freqPPB}
}

// Timer is a one-shot timer, the subset of *time.Timer that Meridian uses.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
	Reset(d time.Duration) bool
}

// Timers makes timers. Durations are in elapsed (monotonic) time; callers
// that wait for a clock reading re-check the clock when a timer fires.
type Timers interface {
	NewTimer(d time.Duration) Timer
}
