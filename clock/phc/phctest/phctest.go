// Package phctest is a simulated PTP hardware clock at the ioctl and
// clock_adjtime boundary (phc.Device and system.Adjtimer), for tests on
// machines without a PHC. The PHC runs from a raw counter the test
// supplies (a fake one, or the host's CLOCK_MONOTONIC_RAW) at its own
// oscillator error plus the frequency correction written to it.
package phctest

import (
	"math"
	"math/rand/v2"
	"sync"

	"golang.org/x/sys/unix"
)

// PHC is one simulated device. The zero value is not usable: use New.
type PHC struct {
	Raw func() int64
	// OscPPB is the crystal's error: the PHC gains OscPPB on raw time with
	// no correction applied.
	OscPPB float64
	// MaxAdj reported by GETCAPS.
	MaxAdj int32
	// Cross: the device supports PTP_SYS_OFFSET_PRECISE.
	Cross bool
	// OldKernel: PTP_SYS_OFFSET_EXTENDED accepts only CLOCK_REALTIME.
	OldKernel bool
	// GapNS is the width of the bracket EXTENDED reports.
	GapNS int64

	mu      sync.Mutex
	base    int64 // PHC reading at baseRaw
	baseRaw int64
	adjPPB  float64
	rng     *rand.Rand
	// Adjustments counts frequency writes and steps (tests check the servo
	// went through clock_adjtime).
	FreqWrites, Steps int
	ReadOnly          int // modes=0 queries
	open              int
}

// FD is the descriptor Open returns.
const FD = 1000

// New returns a PHC reading raw()+offsetNS now.
func New(raw func() int64, offsetNS int64, oscPPB float64, seed uint64) *PHC {
	r := raw()
	return &PHC{Raw: raw, OscPPB: oscPPB, MaxAdj: 1_000_000, GapNS: 300,
		base: r + offsetNS, baseRaw: r, rng: rand.New(rand.NewPCG(seed, 7))}
}

func (p *PHC) atLocked(raw int64) int64 {
	d := float64(raw - p.baseRaw)
	return p.base + int64(math.Round(d*(1+(p.OscPPB+p.adjPPB)*1e-9)))
}

// At is the PHC's reading at a raw instant (the truth tests compare with).
func (p *PHC) At(raw int64) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.atLocked(raw)
}

// Open implements phc.Device.
func (p *PHC) Open(string) (int, error) {
	p.mu.Lock()
	p.open++
	p.mu.Unlock()
	return FD, nil
}

// Close implements phc.Device.
func (p *PHC) Close(int) error {
	p.mu.Lock()
	p.open--
	p.mu.Unlock()
	return nil
}

// Open reports how many descriptors are open.
func (p *PHC) OpenCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open
}

// Adjustments returns the steps and frequency writes so far, safe to call
// while a follower steers the device.
func (p *PHC) Adjustments() (steps, freqWrites int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.Steps, p.FreqWrites
}

// Caps implements phc.Device.
func (p *PHC) Caps(int) (unix.PtpClockCaps, error) {
	c := unix.PtpClockCaps{Max_adj: p.MaxAdj}
	if p.Cross {
		c.Cross_timestamping = 1
	}
	return c, nil
}

func ptpTime(ns int64) unix.PtpClockTime {
	return unix.PtpClockTime{Sec: ns / 1e9, Nsec: uint32(ns % 1e9)}
}

// SysOffsetPrecise implements phc.Device.
func (p *PHC) SysOffsetPrecise(int) (unix.PtpSysOffsetPrecise, error) {
	if !p.Cross {
		return unix.PtpSysOffsetPrecise{}, unix.EOPNOTSUPP
	}
	r := p.Raw()
	return unix.PtpSysOffsetPrecise{Device: ptpTime(p.At(r)), Monoraw: ptpTime(r)}, nil
}

// SysOffsetExtended implements phc.Device: each sample's device read falls
// at a random instant inside its [lo, lo+GapNS] bracket.
func (p *PHC) SysOffsetExtended(_ int, clockID int32, n int) (unix.PtpSysOffsetExtended, error) {
	var v unix.PtpSysOffsetExtended
	if clockID != unix.CLOCK_MONOTONIC_RAW || p.OldKernel {
		return v, unix.EINVAL // the fake has no realtime; old kernels refuse the clock id
	}
	if n < 1 || n > 25 {
		return v, unix.EINVAL
	}
	v.Samples, v.Clockid = uint32(n), clockID
	p.mu.Lock()
	defer p.mu.Unlock()
	lo := p.Raw()
	for i := range n {
		gap := p.GapNS + p.rng.Int64N(p.GapNS+1)
		at := lo + p.rng.Int64N(gap+1)
		v.Ts[i] = [3]unix.PtpClockTime{ptpTime(lo), ptpTime(p.atLocked(at)), ptpTime(lo + gap)}
	}
	return v, nil
}

// ClockAdjtime implements system.Adjtimer for the PHC's clock id.
func (p *PHC) ClockAdjtime(_ int32, tx *unix.Timex) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case tx.Modes == 0:
		p.ReadOnly++
	case tx.Modes&unix.ADJ_FREQUENCY != 0:
		r := p.Raw()
		p.base, p.baseRaw = p.atLocked(r), r
		p.adjPPB = float64(tx.Freq) / 65.536
		p.FreqWrites++
	case tx.Modes&unix.ADJ_SETOFFSET != 0:
		step := tx.Time.Sec*1e9 + tx.Time.Usec
		p.base += step
		p.Steps++
	default:
		return 0, unix.EINVAL
	}
	tx.Freq = int64(math.Round(p.adjPPB * 65.536))
	return 0, nil
}

// ClockGettime implements system.Adjtimer.
func (p *PHC) ClockGettime(_ int32, ts *unix.Timespec) error {
	*ts = unix.NsecToTimespec(p.At(p.Raw()))
	return nil
}
