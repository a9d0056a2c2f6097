package daemon

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/clock/system"
	"github.com/meridiantime/meridian/truetime"
	"github.com/meridiantime/meridian/truetime/clockbound"
)

// openClockBound creates the ClockBound segment when configured.
func (d *Daemon) openClockBound() error {
	if d.cfg.ClockBound.Path == "" {
		return nil
	}
	w, err := clockbound.Create(d.cfg.ClockBound.Path)
	if err != nil {
		return fmt.Errorf("clockbound.path: %w", err)
	}
	d.cb = w
	var res unix.Timespec
	if err := unix.ClockGetres(unix.CLOCK_MONOTONIC_COARSE, &res); err == nil {
		d.cbCoarseRes = res.Nano()
	} else {
		d.cbCoarseRes = int64(10 * time.Millisecond)
	}
	return nil
}

// realtimeState reads CLOCK_REALTIME's frequency correction and whether
// the kernel is slewing an offset (adjtimex with modes = 0: read only).
func (d *Daemon) realtimeState() (freqPPB, slewPPB float64) {
	adj := d.opt.RealtimeAdj
	if adj == nil {
		adj = system.Kernel()
	}
	var tx unix.Timex // modes = 0
	if _, err := adj.ClockAdjtime(unix.CLOCK_REALTIME, &tx); err != nil {
		return 0, 1_000_000 // unknown: the kernel's whole range
	}
	const nominalTickUS = 1e6 / 100 // USER_HZ 100
	freqPPB = float64(tx.Freq)/65.536 + (float64(tx.Tick)-nominalTickUS)/nominalTickUS*1e9
	if tx.Tick == 0 {
		freqPPB = float64(tx.Freq) / 65.536
	}
	if tx.Offset != 0 {
		slewPPB = 500_000 // the kernel slews an offset at up to 500 ppm
	}
	return freqPPB, slewPPB
}

// publishClockBound writes e's interval, as CLOCK_REALTIME's bound, to the
// ClockBound segment.
func (d *Daemon) publishClockBound(e truetime.Estimate) {
	if d.cb == nil {
		return
	}
	lo := time.Now().UnixNano()
	now := d.clk.NowNS()
	hi := time.Now().UnixNano()
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts)
	asOf := ts.Nano()
	iv := truetime.Bound(now, e)
	freq, slew := d.realtimeState()
	b, drift, status := clockbound.Compute(iv, e, clockbound.Realtime{Lo: lo, Hi: hi, FreqPPB: freq, SlewPPB: slew,
		WanderPPB: d.cfg.ClockBound.RealtimeWanderPPM * 1000}, d.cbCoarseRes)
	if d.opt.ClockBoundOmitRealtime { // negative control: the bound as if CLOCK_REALTIME were our clock
		b, drift = iv.EpsNS(), uint32(e.DriftBoundPPB+e.FreqUncPPB)
	}
	// Void a few publishes ahead: a stopped daemon's bound is not trusted.
	void := asOf + 5*int64(d.opt.Tick)
	d.cb.Write(clockbound.Snapshot{AsOfNS: asOf, VoidAfterNS: void, BoundNS: b, MaxDriftPPB: drift, Status: status})
}
