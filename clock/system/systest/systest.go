// Package systest is a simulated CLOCK_REALTIME at the clock_adjtime
// boundary (system.Adjtimer), for tests of clock: system that must never
// touch the host's clock. It runs from a raw counter (the host's
// CLOCK_MONOTONIC_RAW or a fake) at the rate the frequency correction and
// tick written to it set — as the kernel's does: CLOCK_REALTIME and
// CLOCK_MONOTONIC_RAW share one oscillator — takes steps, and keeps the
// status bits, maxerror and esterror as the kernel does. It records every
// call.
package systest

import (
	"math"
	"sync"

	"golang.org/x/sys/unix"
)

// Kernel is the simulated clock.
type Kernel struct {
	Raw func() int64

	mu       sync.Mutex
	base     int64
	baseRaw  int64
	freq     int64 // timex.freq units (ppm << 16)
	tick     int64 // µs per tick, 10000 nominal
	status   int32
	maxerror int64
	esterror int64
	calls    []unix.Timex
}

// New returns a clock reading raw() + offsetNS now, running at freqPPB
// (a correction someone left in the kernel).
func New(raw func() int64, offsetNS int64, freqPPB float64) *Kernel {
	r := raw()
	return &Kernel{Raw: raw, base: r + offsetNS, baseRaw: r, tick: 10000, status: unix.STA_UNSYNC,
		freq: int64(math.Round(freqPPB * 65.536))}
}

func (k *Kernel) rate() float64 {
	return (float64(k.freq)/65.536 + (float64(k.tick)-10000)/10000*1e9) * 1e-9
}

func (k *Kernel) atLocked(raw int64) int64 {
	return k.base + int64(math.Round(float64(raw-k.baseRaw)*(1+k.rate())))
}

// At is the clock's reading at a raw instant (the truth tests compare with).
func (k *Kernel) At(raw int64) int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.atLocked(raw)
}

func (k *Kernel) rebase() {
	r := k.Raw()
	k.base, k.baseRaw = k.atLocked(r), r
}

// ClockAdjtime implements system.Adjtimer for CLOCK_REALTIME.
func (k *Kernel) ClockAdjtime(id int32, tx *unix.Timex) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if id != unix.CLOCK_REALTIME {
		return 0, unix.EINVAL
	}
	k.calls = append(k.calls, *tx)
	const known = unix.ADJ_FREQUENCY | unix.ADJ_SETOFFSET | unix.ADJ_NANO | unix.ADJ_STATUS | unix.ADJ_MAXERROR | unix.ADJ_ESTERROR | unix.ADJ_TICK
	if tx.Modes&^known != 0 {
		return 0, unix.EINVAL // the discipline uses none of the kernel's PLL modes
	}
	if tx.Modes&unix.ADJ_FREQUENCY != 0 {
		if tx.Freq > 500*65536 || tx.Freq < -500*65536 {
			return 0, unix.EINVAL
		}
		k.rebase()
		k.freq = tx.Freq
	}
	if tx.Modes&unix.ADJ_TICK != 0 {
		k.rebase()
		k.tick = tx.Tick
	}
	if tx.Modes&unix.ADJ_SETOFFSET != 0 {
		if tx.Modes&unix.ADJ_NANO == 0 || tx.Time.Usec < 0 || tx.Time.Usec >= 1e9 {
			return 0, unix.EINVAL
		}
		k.base += tx.Time.Sec*1e9 + tx.Time.Usec
	}
	if tx.Modes&unix.ADJ_STATUS != 0 {
		k.status = tx.Status
	}
	if tx.Modes&unix.ADJ_MAXERROR != 0 {
		k.maxerror = tx.Maxerror
	}
	if tx.Modes&unix.ADJ_ESTERROR != 0 {
		k.esterror = tx.Esterror
	}
	*tx = unix.Timex{Freq: k.freq, Tick: k.tick, Status: k.status, Maxerror: k.maxerror, Esterror: k.esterror}
	state := unix.TIME_OK
	switch {
	case k.status&unix.STA_UNSYNC != 0:
		state = unix.TIME_ERROR
	case k.status&unix.STA_INS != 0:
		state = unix.TIME_INS
	case k.status&unix.STA_DEL != 0:
		state = unix.TIME_DEL
	}
	return state, nil
}

// ClockGettime implements system.Adjtimer.
func (k *Kernel) ClockGettime(id int32, ts *unix.Timespec) error {
	if id != unix.CLOCK_REALTIME {
		return unix.EINVAL
	}
	*ts = unix.NsecToTimespec(k.At(k.Raw()))
	return nil
}

// Calls returns every clock_adjtime call so far.
func (k *Kernel) Calls() []unix.Timex {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]unix.Timex(nil), k.calls...)
}

// Status returns the status bits, maxerror and esterror (µs) as adjtimex
// readers see them.
func (k *Kernel) Status() (status int32, maxerrorUS, esterrorUS int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.status, k.maxerror, k.esterror
}

// StepExternally moves the clock as another program would (date -s).
func (k *Kernel) StepExternally(ns int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.base += ns
}
