package daemon

import (
	"fmt"

	"github.com/meridiantime/meridian/discipline"
	"github.com/meridiantime/meridian/truetime"
)

// unreachablePolls is the reachability register's width: a source that
// answered none of its last unreachablePolls polls is unreachable.
const unreachablePolls = 8

// markReachability takes NTP sources whose register is all zero (after at
// least 8 polls) out of selection, and lets them back when they answer.
func (d *Daemon) markReachability() {
	for _, s := range d.sources {
		d.disc.SetUnreachable(s.Name, s.Stats.Reach.Load() == 0 && s.Stats.Sent.Load() >= unreachablePolls)
	}
}

// sourceStateWhy is the log line for a source entering a state.
func sourceStateWhy(s discipline.SourceState) string {
	switch s {
	case discipline.SourceSelected:
		return "source selected: it agrees with the majority and is combined"
	case discipline.SourceFalseticker:
		return "source rejected as a falseticker: its interval misses the majority's intersection"
	case discipline.SourceTooFew:
		return "source agrees, but fewer sources than min_sources do: not used"
	case discipline.SourceUnreachable:
		return "source unreachable: no reply to its last 8 polls; out of selection until it answers"
	}
	return "source unused: no sample yet, or its newest is wider than max_error"
}

// logTransitions logs each source's change of state once, with the reason.
func (d *Daemon) logTransitions(reports []discipline.SourceReport) {
	if d.srcStates == nil {
		d.srcStates = map[string]discipline.SourceState{}
	}
	for _, r := range reports {
		prev, seen := d.srcStates[r.Name]
		d.srcStates[r.Name] = r.State
		if (!seen && r.State == discipline.SourceUnused) || (seen && prev == r.State) {
			continue
		}
		switch r.State {
		case discipline.SourceSelected, discipline.SourceUnused:
			d.log.Info(sourceStateWhy(r.State), "source", r.Name, "was", prev.String())
		default:
			d.log.Warn(sourceStateWhy(r.State), "source", r.Name, "was", prev.String())
		}
	}
}

// statusReason says why e is not synchronized, from the sources' reports.
func (d *Daemon) statusReasonFor(e truetime.Estimate, reports []discipline.SourceReport) string {
	switch e.Status {
	case truetime.Synchronized:
		return ""
	case truetime.Disrupted:
		return "the host's clocks were disrupted (suspend, VM pause or migration): re-acquiring"
	}
	if len(d.cfg.Sources) == 0 {
		if d.cfg.LocalStratum == 0 {
			return "no sources configured and local_stratum 0: configure sources (or local_stratum for a local reference)"
		}
		return "local reference"
	}
	n := map[discipline.SourceState]int{}
	withSamples := 0
	for _, r := range reports {
		n[r.State]++
		if r.Samples > 0 {
			withSamples++
		}
	}
	var why string
	switch {
	case n[discipline.SourceSelected] > 0:
		why = "" // selected but not synchronized: the bound grew past max_error
	case n[discipline.SourceUnreachable] == len(reports) && len(reports) > 0:
		why = "no source reachable (no reply to the last 8 polls of any source)"
	case n[discipline.SourceTooFew] > 0:
		why = fmt.Sprintf("%d sources agree, fewer than min_sources (%d)", n[discipline.SourceTooFew], d.cfg.MinSources)
	case n[discipline.SourceFalseticker] > 0:
		why = fmt.Sprintf("the %d usable sources disagree: no majority interval", n[discipline.SourceFalseticker])
	case withSamples == 0:
		why = "no sample from any source yet"
	default:
		why = "no source has a sample narrower than max_error"
	}
	if e.Status == truetime.Holdover {
		if why == "" {
			return "holdover: no fresh sample; ε grows at the drift bound until max_error"
		}
		return "holdover (ε grows at the drift bound until max_error): " + why
	}
	if why == "" {
		return "error bound above max_error"
	}
	return why
}

// statusReason is the newest reason (the Status call's).
func (d *Daemon) statusReason() string {
	d.reportsMu.Lock()
	defer d.reportsMu.Unlock()
	return d.reason
}
