// Package clockbound exports TrueTime in AWS ClockBound's shared-memory
// layout, version 2 (the clock-bound project's docs/PROTOCOL.md), so
// programs built on the ClockBound client libraries read meridiand's bound
// unchanged.
//
// ClockBound's bound is about CLOCK_REALTIME: a client reads CLOCK_REALTIME
// R and CLOCK_MONOTONIC_COARSE m and uses [R − b(m), R + b(m)] with
//
//	b(m) = bound + (m − as_of) · max_drift · 1e-9.
//
// meridiand's own clock need not be CLOCK_REALTIME (clock: virtual), so the
// bound published here covers the distance between CLOCK_REALTIME and
// TrueTime's interval at the publish, and max_drift covers how fast that
// distance can grow: the interval's own growth plus the difference of the
// two clocks' frequency corrections (adjtimex, read only), the kernel's
// largest slew while it is slewing an offset, and an assumed wander of
// whoever steers CLOCK_REALTIME (realtime_wander_ppm, as ClockBound's own
// max_drift_rate). The promise holds as long as nobody steps
// CLOCK_REALTIME, or changes its frequency by more than that, between two
// publishes (either is seen at the next one); void_after is a few
// publishes ahead.
//
// Layout (native byte order, 80 bytes): magic [2]u32 {0x414D5A4E,
// 0x43420200}, segment size u32, version u16 (2), generation u16 (odd while
// writing; wraps to 2), as_of timespec, void_after timespec, bound i64 ns,
// disruption marker u64, max_drift u32 ppb, clock status i32 (0 unknown, 1
// synchronized, 2 free running, 3 disrupted), clock disruption support u8.
package clockbound

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/truetime"
)

// Size is the segment's size in bytes.
const Size = 80

// Magic is the segment's two magic words.
var Magic = [2]uint32{0x414D5A4E, 0x43420200}

// Clock statuses.
const (
	StatusUnknown      = 0
	StatusSynchronized = 1
	StatusFreeRunning  = 2
	StatusDisrupted    = 3
)

// Offsets of the fields.
const (
	offMagic      = 0
	offSize       = 8
	offVerGen     = 12 // version u16 | generation u16, written as one u32
	offAsOf       = 16
	offVoidAfter  = 32
	offBound      = 48
	offDisruption = 56
	offMaxDrift   = 64
	offStatus     = 68
	offDisrSupp   = 72
)

// Writer owns one segment file.
type Writer struct {
	f   *os.File
	mem []byte
	gen uint16
}

// Create creates (or takes over) the segment at path: the file is created
// 0644 in a directory created 0755 if missing; a symlink is refused.
func Create(path string) (*Writer, error) {
	if path == "" {
		return nil, errors.New("clockbound: empty path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("clockbound: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return nil, fmt.Errorf("clockbound: %w", err)
	}
	if err := f.Truncate(Size); err != nil {
		f.Close()
		return nil, fmt.Errorf("clockbound: %w", err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, Size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("clockbound: mmap %s: %w", path, err)
	}
	w := &Writer{f: f, mem: mem}
	ne := binary.NativeEndian
	ne.PutUint32(mem[offMagic:], Magic[0])
	ne.PutUint32(mem[offMagic+4:], Magic[1])
	ne.PutUint32(mem[offSize:], Size)
	w.gen = uint16(ne.Uint32(mem[offVerGen:]) >> 16)
	if w.gen%2 == 1 { // a writer died mid-update
		w.gen++
	}
	w.Write(Snapshot{Status: StatusUnknown})
	return w, nil
}

// Snapshot is one publish's content.
type Snapshot struct {
	AsOfNS, VoidAfterNS int64 // CLOCK_MONOTONIC_COARSE
	BoundNS             int64
	MaxDriftPPB         uint32
	Status              int32
	DisruptionMarker    uint64
}

func (w *Writer) verGen() *uint32 { return (*uint32)(unsafe.Pointer(&w.mem[offVerGen])) }

// Write publishes s under the generation seqlock: odd while writing, then
// the next even number (2 after a wrap, never 0).
func (w *Writer) Write(s Snapshot) {
	const version = 2
	w.gen++
	atomic.StoreUint32(w.verGen(), version|uint32(w.gen)<<16) // odd: readers retry
	ne := binary.NativeEndian
	put := func(off int, ns int64) {
		ne.PutUint64(w.mem[off:], uint64(ns/1e9))
		ne.PutUint64(w.mem[off+8:], uint64(ns%1e9))
	}
	put(offAsOf, s.AsOfNS)
	put(offVoidAfter, s.VoidAfterNS)
	ne.PutUint64(w.mem[offBound:], uint64(s.BoundNS))
	ne.PutUint64(w.mem[offDisruption:], s.DisruptionMarker)
	ne.PutUint32(w.mem[offMaxDrift:], s.MaxDriftPPB)
	ne.PutUint32(w.mem[offStatus:], uint32(s.Status))
	w.mem[offDisrSupp] = 0
	w.gen++
	if w.gen == 0 {
		w.gen = 2
	}
	atomic.StoreUint32(w.verGen(), version|uint32(w.gen)<<16)
}

// Close marks the segment unknown and unmaps it (the file stays, as
// ClockBound's daemon leaves it).
func (w *Writer) Close() error {
	w.Write(Snapshot{Status: StatusUnknown})
	err := unix.Munmap(w.mem)
	return errors.Join(err, w.f.Close())
}

// Realtime is what the exporter knows about CLOCK_REALTIME at a publish.
type Realtime struct {
	// Lo, Hi bracket CLOCK_REALTIME at the instant the interval is for.
	Lo, Hi int64
	// FreqPPB is CLOCK_REALTIME's frequency correction (adjtimex freq and
	// tick), SlewPPB the largest extra rate while the kernel slews an
	// offset (0 when it is not), WanderPPB how far whoever steers
	// CLOCK_REALTIME may change its frequency before the next publish
	// (ClockBound's own max_drift_rate assumption, 15 ppm by default).
	FreqPPB, SlewPPB, WanderPPB float64
}

// Compute turns TrueTime's interval iv (for the estimate e, with the
// disciplined clock running at e.FreqPPB) and CLOCK_REALTIME's state into
// ClockBound's bound and max drift. coarseResNS is CLOCK_MONOTONIC_COARSE's
// resolution: a client's elapsed time can be short by that much, so the
// bound carries that much growth in advance.
func Compute(iv truetime.Interval, e truetime.Estimate, rt Realtime, coarseResNS int64) (boundNS int64, maxDriftPPB uint32, status int32) {
	switch iv.Status {
	case truetime.Synchronized:
		status = StatusSynchronized
	case truetime.Holdover:
		status = StatusFreeRunning
	case truetime.Disrupted:
		return 0, 0, StatusDisrupted
	default:
		return 0, 0, StatusUnknown
	}
	b := max(rt.Hi-iv.EarliestNS, iv.LatestNS-rt.Lo)
	drift := e.DriftBoundPPB + e.FreqUncPPB + math.Abs(rt.FreqPPB-e.FreqPPB) + rt.SlewPPB + rt.WanderPPB
	drift = math.Ceil(drift) + 1
	if drift > math.MaxUint32 {
		drift = math.MaxUint32
	}
	b += int64(math.Ceil(float64(coarseResNS)*drift*1e-9)) + 1
	return b, uint32(drift), status
}
