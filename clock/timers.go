package clock

import "time"

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time        { return r.t.C }
func (r realTimer) Stop() bool                 { return r.t.Stop() }
func (r realTimer) Reset(d time.Duration) bool { return r.t.Reset(d) }

type realTimers struct{}

func (realTimers) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

// RealTimers returns timers backed by the Go runtime.
func RealTimers() Timers { return realTimers{} }
