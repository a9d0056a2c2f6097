package daemon

import (
	"time"

	"github.com/meridiantime/meridian/clock/system"
	"github.com/meridiantime/meridian/truetime"
)

// externalChangeNS: a measured CLOCK_REALTIME further than this from its
// model was stepped or steered by another program.
const externalChangeNS = 10_000

// realtimeUpdate is clock: system's part of an update: the model readers
// use is measured again (its error joins the published bound); a clock
// someone else moved voids what was measured before, as a suspend does;
// the kernel's status (STA_UNSYNC, maxerror, esterror, leap bits) is kept
// true for adjtimex readers.
func (d *Daemon) realtimeUpdate(rt *system.Realtime, e truetime.Estimate) truetime.Estimate {
	dev, err := rt.Remeasure()
	switch {
	case err != nil:
		d.log.Error("measuring CLOCK_REALTIME", "err", err)
	case dev > externalChangeNS:
		d.m.disruptions.Inc()
		d.loop.Disrupted()
		d.log.Warn("CLOCK_REALTIME was stepped or steered by another program: samples dropped, re-acquiring (run no other time daemon)",
			"moved", time.Duration(dev))
		e.Status = truetime.Unsynchronized
	}
	e.Eps0NS += rt.ModelErrorNS()
	synced := e.Status == truetime.Synchronized
	var epsNS int64
	if synced {
		epsNS = truetime.Bound(d.clk.NowNS(), e).EpsNS()
	}
	if err := rt.SetSync(synced, max(epsNS, 0), max(epsNS, 0)); err != nil {
		d.log.Error("setting the kernel's sync status", "err", err)
	}
	if err := rt.SetLeap(synced && e.Leap == truetime.LeapInsert, synced && e.Leap == truetime.LeapDelete); err != nil {
		d.log.Error("setting the kernel's leap status", "err", err)
	}
	return e
}
