package truetime

// Liveness and disruption: pure decisions over clock readings, so that
// tests drive them with fake clocks. Nothing here reads a clock.

import "time"

// Disrupted: the host's clocks were disrupted since the estimate was made
// (suspend or VM pause stopped CLOCK_MONOTONIC_RAW, or the VMClock device
// reported a migration or snapshot restore), so the local clock may be off
// by the length of the gap. Reads fail with ErrDisrupted until the next good
// sample. (ClockBound's Disrupted.)
const Disrupted Status = 3

// ErrDisrupted is returned by reads while the status is Disrupted. It also
// matches ErrUnsynchronized (errors.Is), so a caller that only knows
// "unsynchronized" treats it the same way: no interval is promised.
var ErrDisrupted error = disruptedError{}

type disruptedError struct{}

func (disruptedError) Error() string {
	return "truetime: clock disrupted (suspend, VM pause or migration): no interval until the next good sample"
}

func (disruptedError) Is(target error) bool { return target == ErrUnsynchronized }

// StatusErr is the error a read returns for an interval of status st: nil,
// ErrUnsynchronized or ErrDisrupted.
func StatusErr(st Status) error {
	switch st {
	case Unsynchronized:
		return ErrUnsynchronized
	case Disrupted:
		return ErrDisrupted
	}
	return nil
}

// Defaults for Tolerance.
const (
	DefaultVoidAfter = 5 * time.Second
	// DefaultGapSlack absorbs the reads' jitter; suspends last far longer.
	DefaultGapSlack = time.Millisecond
	// DefaultGapTolPPB is the rate at which CLOCK_BOOTTIME may run away from
	// CLOCK_MONOTONIC_RAW without a suspend: the kernel's NTP frequency
	// correction of CLOCK_MONOTONIC (at most 500 ppm).
	DefaultGapTolPPB = 500_000
)

// Stamp is what a publish records about the host's clocks so that a reader
// can tell a live, current snapshot from a dead writer's or one made before
// a suspend.
type Stamp struct {
	RawNS       int64   // CLOCK_MONOTONIC_RAW at the publish
	BootNS      int64   // CLOCK_BOOTTIME at the publish
	VoidAfterNS int64   // CLOCK_BOOTTIME after which the snapshot is void; 0: the writer stopped
	GapSlackNS  int64   // gap tolerance, absolute
	GapTolPPB   float64 // gap tolerance, relative to the elapsed boottime
	Marker      uint64  // VMClock disruption marker at the publish (0: no device)
	// WallToMonoNS is the kernel's wall_to_monotonic offset, read before
	// RawNS and BootNS (hostclock.WallToMonoNS; 0: not recorded). While a
	// reader finds the same offset, no sleep time was injected since: see
	// JudgeFast.
	WallToMonoNS int64
}

// Verdict is a reader's judgement of a snapshot at one (raw, boot) reading.
type Verdict uint8

const (
	Live Verdict = iota // use the snapshot
	Void                // the writer stopped, died, or the stamp is from another boot: unsynchronized
	Gap                 // the clocks were disrupted since the publish: disrupted
)

func (v Verdict) String() string {
	switch v {
	case Live:
		return "live"
	case Void:
		return "void"
	case Gap:
		return "disrupted"
	}
	return "verdict(?)"
}

// GapNS is how much more CLOCK_BOOTTIME advanced than CLOCK_MONOTONIC_RAW
// between two readings: the time the raw clock (and the virtual clock built
// on it) did not see.
func GapNS(raw0, boot0, raw1, boot1 int64) int64 { return (boot1 - boot0) - (raw1 - raw0) }

// gapTolerated reports whether a gap over a boottime interval of elapsedNS
// is within the slack and rate tolerance.
func gapTolerated(gapNS, elapsedNS, slackNS int64, tolPPB float64) bool {
	return gapNS <= slackNS+int64(tolPPB*1e-9*float64(max(elapsedNS, 0)))
}

// Judge decides what a reader does with a snapshot stamped s, read at
// (raw, boot) with the VMClock marker marker (0 without the device).
//
//   - boot ≥ VoidAfterNS: the writer has not refreshed the heartbeat in
//     time (dead, stopped, or suspended with the host longer than the void
//     window) → Void.
//   - either clock behind the stamp by more than the slack: the stamp comes
//     from another boot (a segment on persistent storage) → Void.
//   - a different VMClock marker, or boottime ahead of the raw clock by more
//     than the tolerance since the publish → Gap.
func Judge(s Stamp, raw, boot int64, marker uint64) Verdict {
	if boot >= s.VoidAfterNS {
		return Void
	}
	dr, db := raw-s.RawNS, boot-s.BootNS
	if dr < -s.GapSlackNS || db < -s.GapSlackNS {
		return Void
	}
	if marker != 0 && s.Marker != 0 && marker != s.Marker {
		return Gap // both sides see the VMClock device and it moved
	}
	if !gapTolerated(db-dr, db, s.GapSlackNS, s.GapTolPPB) {
		return Gap
	}
	return Live
}

// JudgeFast is Judge without a CLOCK_BOOTTIME reading, for a reader that
// read the raw clock and then the kernel's wall_to_monotonic offset w2m
// (hostclock.RawWallToMonoNS). decided is false when it cannot tell — the
// stamp has no offset, or w2m differs from it — and the caller then reads
// CLOCK_BOOTTIME and calls Judge.
//
// Why it is sound: the kernel moves wall_to_monotonic by exactly the sleep
// time it injects at a resume (and on a clock set or leap second), and
// never otherwise. The publisher read the offset before its stamp, the
// reader after its raw reading; the same value means no sleep was injected
// between the stamp and the raw reading, so CLOCK_BOOTTIME advanced as
// CLOCK_MONOTONIC did, which runs at most GapTolPPB faster than the raw
// clock (the assumption Judge also makes). The heartbeat then expires by
// the raw clock, conservatively: void once raw has advanced VoidAfter −
// BootNS shrunk by that rate. Unlike Judge it never calls a gap on a
// kernel slewing CLOCK_MONOTONIC faster than GapTolPPB, which the raw
// clock, and so the interval, does not see.
func JudgeFast(s Stamp, raw, w2m int64, marker uint64) (v Verdict, decided bool) {
	f := s.Fast()
	return f.Judge(raw, w2m, marker)
}

// FastJudge is JudgeFast with what depends on the stamp alone worked out
// once (a reader keeps one per snapshot).
type FastJudge struct {
	w2m           int64 // 0: never decided
	rawLo         int64 // raw below it: the stamp is from another boot
	rawVoid       int64 // raw at or past it: the heartbeat expired
	marker        uint64
	writerStopped bool
}

// Fast prepares JudgeFast for stamp s.
func (s Stamp) Fast() FastJudge {
	f := FastJudge{w2m: s.WallToMonoNS, rawLo: s.RawNS - s.GapSlackNS, marker: s.Marker, writerStopped: s.VoidAfterNS <= s.BootNS}
	if !f.writerStopped {
		// Void once dr·(1 + tol) may have reached VoidAfter − BootNS
		// (boottime runs at most tol faster than raw without a sleep); a
		// nanosecond early for the division's rounding.
		f.rawVoid = s.RawNS + int64(float64(s.VoidAfterNS-s.BootNS)/(1+s.GapTolPPB*1e-9)) - 1
	}
	return f
}

// Judge is JudgeFast for the prepared stamp.
func (f *FastJudge) Judge(raw, w2m int64, marker uint64) (v Verdict, decided bool) {
	switch {
	case f.w2m == 0 || w2m != f.w2m:
		return Live, false
	case f.writerStopped || raw < f.rawLo || raw >= f.rawVoid:
		return Void, true
	case marker != 0 && f.marker != 0 && marker != f.marker:
		return Gap, true
	}
	return Live, true
}

// Guard is the publish side of disruption detection. Fed the clocks at
// every publish, it notices a suspend or VMClock disruption since the
// previous publish and holds the published status at Disrupted until an
// estimate carries a sample taken after the disruption was noticed
// (LastSampleNS later than the local reading at detection). Not safe for
// concurrent use.
type Guard struct {
	GapSlackNS int64   // 0 → DefaultGapSlack
	GapTolPPB  float64 // 0 → DefaultGapTolPPB

	init              bool
	lastRaw, lastBoot int64 // lastRaw: the raw reading taken before lastBoot
	lastMarker        uint64
	heldAtLocal       int64 // local reading when the disruption was noticed
	held              bool
	lastGap           int64
}

func (g *Guard) tol() (int64, float64) {
	slack, tol := g.GapSlackNS, g.GapTolPPB
	if slack == 0 {
		slack = int64(DefaultGapSlack)
	}
	if tol == 0 {
		tol = DefaultGapTolPPB
	}
	return slack, tol
}

// Check takes one publish instant — a boottime reading bracketed by raw
// readings raw0 ≤ (raw at boot) ≤ raw1 (hostclock.RawBootRawNS), the VMClock
// marker and the local clock's reading at raw0 — and the estimate about to
// be published, and returns the estimate to publish: e itself, or e with
// Status Disrupted while a disruption is held. gapNS is the gap detected at
// this call (0 if none): the time the local clock missed. The gap is bounded
// from below with the brackets, so a thread preempted between its clock
// reads never looks like a suspend.
func (g *Guard) Check(raw0, boot, raw1 int64, marker uint64, localNS int64, e Estimate) (out Estimate, gapNS int64) {
	slack, tol := g.tol()
	if g.init {
		db := boot - g.lastBoot
		gap := GapNS(g.lastRaw, g.lastBoot, raw1, boot)
		moved := marker != 0 && g.lastMarker != 0 && marker != g.lastMarker
		if moved || !gapTolerated(gap, db, slack, tol) {
			g.held, g.heldAtLocal = true, localNS
			gapNS = max(gap, 1)
			g.lastGap = gapNS
		}
	}
	g.init, g.lastRaw, g.lastBoot, g.lastMarker = true, raw0, boot, marker
	if g.held && e.Status != Unsynchronized && e.LastSampleNS > g.heldAtLocal {
		g.held = false
	}
	if g.held && e.Status != Unsynchronized {
		e.Status = Disrupted
	}
	return e, gapNS
}

// Held reports whether a disruption is being held, and the last gap seen.
func (g *Guard) Held() (bool, int64) { return g.held, g.lastGap }
