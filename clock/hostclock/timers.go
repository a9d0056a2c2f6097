// Package hostclock reads the host's clocks (CLOCK_MONOTONIC_RAW,
// CLOCK_BOOTTIME and CLOCK_REALTIME through the kernel's vDSO, called from
// a small assembly stub without cgo; the system call where there is no
// usable vDSO) and makes Go runtime timers. It is the impure half of
// package clock, kept apart so that the cores that use clock's interfaces
// import no unsafe code.
package hostclock

import (
	"time"

	"github.com/meridiantime/meridian/clock"
)

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time        { return r.t.C }
func (r realTimer) Stop() bool                 { return r.t.Stop() }
func (r realTimer) Reset(d time.Duration) bool { return r.t.Reset(d) }

type realTimers struct{}

func (realTimers) NewTimer(d time.Duration) clock.Timer { return realTimer{time.NewTimer(d)} }

// RealTimers returns timers backed by the Go runtime.
func RealTimers() clock.Timers { return realTimers{} }
