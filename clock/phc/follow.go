package phc

import (
	"fmt"
	"math"

	"github.com/meridiantime/meridian/clock"
)

// Follower keeps a PHC on the caller's clock, phc2sys's job: every Update
// measures PHC − clock through the Map and steers the PHC with a PI servo
// (frequency through clock_adjtime on the dynamic clock id), stepping it
// when it is further off than StepNS. meridiand runs one for
// `clock: phc:/dev/ptpN`, so the NIC stamps and serves the disciplined
// time. Its steps and frequency changes are noted on the Map, which then
// refuses stamps taken before a step and widens its rate bound.
type Follower struct {
	Map   *Map
	PHC   clock.Disciplined
	Raw   func() int64 // the Map's raw counter
	AtRaw func(raw int64) int64
	// StepNS: an offset beyond it is stepped out (default 1 ms; the first
	// update always steps when beyond 20 µs).
	StepNS int64
	// Kp, Ki: proportional and integral gains per update (defaults 0.7,
	// 0.3, phc2sys's PI servo constants).
	Kp, Ki float64

	started   bool
	lastRaw   int64
	integral  float64 // ppb
	baseFreq  float64
	lastFreq  float64
	lastOff   int64
	lastUncNS int64
}

// Offset is the last measurement: PHC − clock and the half-width of its
// uncertainty, in ns.
func (f *Follower) Offset() (offsetNS, uncNS int64) { return f.lastOff, f.lastUncNS }

// Measure reads PHC − clock once: the clock at the middle of the raw
// bracket, with the bracket's half-width (in clock time) as uncertainty.
func (f *Follower) Measure() (offsetNS, uncNS int64, raw int64, err error) {
	r, err := f.Map.Read()
	if err != nil {
		return 0, 0, 0, err
	}
	lo, hi := f.AtRaw(r.RawLo), f.AtRaw(r.RawHi)
	mid := lo + (hi-lo)/2
	return r.PHC - mid, (hi - lo + 1) / 2, r.RawLo + (r.RawHi-r.RawLo)/2, nil
}

// Update measures and steers once; call it about once a second.
func (f *Follower) Update() error {
	if f.StepNS == 0 {
		f.StepNS = 1_000_000
	}
	if f.Kp == 0 && f.Ki == 0 {
		f.Kp, f.Ki = 0.7, 0.3
	}
	off, unc, raw, err := f.Measure()
	if err != nil {
		return err
	}
	f.lastOff, f.lastUncNS = off, unc
	if !f.started {
		f.started = true
		f.lastRaw = raw
		if f.baseFreq, err = f.PHC.FreqPPB(); err != nil {
			return err
		}
		f.lastFreq = f.baseFreq
		if off > 20_000 || off < -20_000 {
			return f.step(off)
		}
		return nil
	}
	if off > f.StepNS || off < -f.StepNS {
		f.lastRaw = raw
		return f.step(off)
	}
	dt := float64(raw-f.lastRaw) * 1e-9
	f.lastRaw = raw
	if dt <= 0 {
		return nil
	}
	// Offset per second of interval is a rate in ppb.
	o := float64(off) / dt
	f.integral += f.Ki * o
	limit := f.PHC.MaxFreqPPB()
	f.integral = math.Max(-limit, math.Min(limit, f.integral))
	freq := f.baseFreq - f.integral - f.Kp*o
	freq = math.Max(-limit, math.Min(limit, freq))
	f.Map.NoteFreq(f.lastFreq)
	if err := f.PHC.AdjFreqPPB(freq); err != nil {
		return fmt.Errorf("phc: steer: %w", err)
	}
	f.lastFreq = freq
	return nil
}

func (f *Follower) step(off int64) error {
	err := f.PHC.Step(-off)
	f.Map.NoteStep() // even a failed step may have moved it
	if err != nil {
		return fmt.Errorf("phc: step %d ns: %w", -off, err)
	}
	return nil
}
