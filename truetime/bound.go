package truetime

import (
	"errors"
	"fmt"
	"math"
)

// Status is the synchronisation state that a read reports.
type Status uint8

const (
	// Unsynchronized: never synchronised, or the error bound exceeded
	// max_error. Reads fail with ErrUnsynchronized.
	Unsynchronized Status = 0
	// Synchronized: fresh samples from enough agreeing sources.
	Synchronized Status = 1
	// Holdover: no fresh samples; the interval keeps widening at the
	// drift bound until it passes max_error.
	Holdover Status = 2
)

func (s Status) String() string {
	switch s {
	case Unsynchronized:
		return "unsynchronized"
	case Synchronized:
		return "synchronized"
	case Holdover:
		return "holdover"
	case Disrupted:
		return "disrupted"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Leap is a pending leap second announced by the sources.
type Leap uint8

const (
	LeapNone   Leap = 0
	LeapInsert Leap = 1
	LeapDelete Leap = 2
)

// ErrUnsynchronized is returned by reads when no bound can be promised.
var ErrUnsynchronized = errors.New("truetime: clock is unsynchronized")

// Estimate is what the discipline knows about the local clock at one local
// instant LocalNS (T0). All offsets are local clock minus true time.
//
// Between updates the estimated offset moves linearly (the servo's frequency
// correction is constant between updates) and the uncertainty grows by
// RateBoundPPB:
//
//	x̂(t) = OffsetNS + SkewPPB·(t − T0)
//	ε(t) = Eps0NS + RateBoundPPB·|t − T0|
//	[earliest, latest] = [t − x̂(t) − ε(t), t − x̂(t) + ε(t)]
//
// The interval is centred on the corrected reading rather than on the raw
// reading t: this is the same promise as [t − ε', t + ε'] around the raw
// reading with ε' = ε + |x̂(t)|, only tighter. See doc.go for the
// derivation of Eps0NS.
type Estimate struct {
	Status Status
	Leap   Leap

	LocalNS  int64   // T0: local clock reading the estimate refers to
	OffsetNS float64 // x̂(T0): residual offset not yet removed by the servo
	SkewPPB  float64 // dx̂/dt between updates (ppb of local time)

	Eps0NS        int64   // half-width at T0
	DriftBoundPPB float64 // configured bound on frequency wander (RFC 5905 PHI)
	FreqUncPPB    float64 // bound on the servo's residual frequency error

	MaxErrorNS      int64 // beyond this half-width the clock is unsynchronized
	HoldoverAfterNS int64 // a reader that sees no update this long reports holdover (0: never)

	// Informational, for status output and for the NTP/PTP servers.
	FreqPPB          float64 // frequency correction applied to the clock
	Stratum          uint8
	RefID            uint32
	RootDelayNS      int64
	RootDispersionNS int64
	LastSampleNS     int64 // local reading of the newest sample used
}

// Interval is a TrueTime reading: earliest ≤ true time ≤ latest.
type Interval struct {
	EarliestNS int64
	LatestNS   int64
	Status     Status
}

// MidNS is the centre of the interval, the best estimate of true time.
func (i Interval) MidNS() int64 { return i.EarliestNS + (i.LatestNS-i.EarliestNS)/2 }

// EpsNS is the half-width of the interval.
func (i Interval) EpsNS() int64 { return (i.LatestNS - i.EarliestNS + 1) / 2 }

// After reports whether tNS has definitely passed: tNS < EarliestNS. This is
// the one implementation of the comparison; truetime.Clock, the gRPC
// service, every client transport and every WaitUntilAfter loop call it.
func (i Interval) After(tNS int64) bool { return tNS < i.EarliestNS }

// Before reports whether tNS has definitely not arrived: tNS > LatestNS.
func (i Interval) Before(tNS int64) bool { return tNS > i.LatestNS }

// UntilAfterNS is how much further the interval must move before After(tNS)
// holds: tNS − EarliestNS + 1, ≤ 0 when it already holds. WaitUntilAfter
// loops sleep this long (capped) and then read again.
func (i Interval) UntilAfterNS(tNS int64) int64 { return tNS - i.EarliestNS + 1 }

// Bound computes the interval for local clock reading nowNS. It is pure and
// does not allocate. An unsynchronized estimate, or one whose half-width has
// grown past MaxErrorNS, yields Status Unsynchronized and a zero interval.
func Bound(nowNS int64, e Estimate) Interval { return BoundOf(nowNS, &e) }

// BoundOf is Bound reading the estimate through a pointer: the
// shared-memory reader's hot path, which would otherwise copy the
// estimate on every read.
func BoundOf(nowNS int64, e *Estimate) Interval {
	if e.Status == Unsynchronized || e.Status == Disrupted {
		return Interval{Status: e.Status} // no bounds: see Disrupted
	}
	dt := float64(nowNS - e.LocalNS)
	off := e.OffsetNS + e.SkewPPB*dt*1e-9
	eps := float64(e.Eps0NS) + (e.DriftBoundPPB+e.FreqUncPPB)*math.Abs(dt)*1e-9
	if e.MaxErrorNS > 0 && eps > float64(e.MaxErrorNS) {
		return Interval{}
	}
	// Keep integer precision: nowNS is ~1.8e18, so work with the small
	// correction in float and add it to the integer reading.
	lo := nowNS - int64(math.Ceil(off+eps))
	hi := nowNS - int64(math.Floor(off-eps))
	st := e.Status
	if st == Synchronized && e.HoldoverAfterNS > 0 && nowNS-e.LastSampleNS > e.HoldoverAfterNS {
		st = Holdover
	}
	if e.Leap != LeapNone {
		lo, hi = widenForLeap(lo, hi)
	}
	return Interval{EarliestNS: lo, LatestNS: hi, Status: st}
}

const nsPerDay = 86400 * int64(1e9)

// widenForLeap widens the interval by one second on both sides when it lies
// within a second of a UTC midnight, where an announced leap second takes
// effect: the clock may or may not have applied it yet.
func widenForLeap(lo, hi int64) (int64, int64) {
	next := (lo/nsPerDay + 1) * nsPerDay
	if hi >= next-int64(1e9) || lo-(next-nsPerDay) < int64(1e9) {
		return lo - int64(1e9), hi + int64(1e9)
	}
	return lo, hi
}

// Reference renders the estimate's NTP reference ID as chronyc does: the
// ASCII code of a reference clock (stratum ≤ 1) or of our own clock
// ("LOCL", local_stratum), else the upstream server's IPv4 address; "" when
// there is none.
func (e Estimate) Reference() string {
	id := e.RefID
	if id == 0 {
		return ""
	}
	b := [4]byte{byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)}
	if e.Stratum <= 1 || id == RefIDLocal {
		n := 0
		for n < 4 && b[n] != 0 {
			n++
		}
		return string(b[:n])
	}
	return fmt.Sprintf("%d.%d.%d.%d", b[0], b[1], b[2], b[3])
}

// RefIDLocal is "LOCL": the daemon serves its own clock as the reference.
const RefIDLocal = 0x4c4f434c
