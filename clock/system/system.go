// Package system disciplines a kernel clock through clock_adjtime(2): by
// default CLOCK_REALTIME, like chronyd (opt-in, needs CAP_SYS_TIME), and any
// dynamic clock id (package phc uses it for /dev/ptpN).
//
// Must never: be exercised against the host's real clock in tests. Every
// system call goes through the Adjtimer interface, which tests replace with
// a fake; the only real call in tests is the read-only modes=0 query.
//
// Units: the kernel's timex.freq is ppm with a 16-bit binary fraction
// (65.536 per ppb); ADJ_SETOFFSET with ADJ_NANO takes a timeval whose
// "usec" field holds nanoseconds and must be in [0, 1e9).
package system

import (
	"fmt"
	"math"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/clock"
)

// Adjtimer is the system-call boundary.
type Adjtimer interface {
	ClockAdjtime(clockID int32, buf *unix.Timex) (state int, err error)
	ClockGettime(clockID int32, ts *unix.Timespec) error
}

type kernel struct{}

func (kernel) ClockAdjtime(id int32, buf *unix.Timex) (int, error) {
	if buf.Modes != 0 && testing.Testing() {
		// Tests never change the host's clocks: they use a fake Adjtimer.
		return 0, fmt.Errorf("refusing clock_adjtime(%d, modes %#x) on the real kernel from a test binary: %w", id, buf.Modes, unix.EPERM)
	}
	return unix.ClockAdjtime(id, buf)
}
func (kernel) ClockGettime(id int32, ts *unix.Timespec) error { return unix.ClockGettime(id, ts) }

// Kernel returns the real system calls.
func Kernel() Adjtimer { return kernel{} }

// KernelMaxFreqPPB is the kernel's frequency limit (±500 ppm).
const KernelMaxFreqPPB = 500_000

const ppbToTimexFreq = 65.536

// Clock is a clock.Disciplined over one kernel clock id.
type Clock struct {
	a          Adjtimer
	id         int32
	maxFreqPPB float64
}

var _ clock.Disciplined = (*Clock)(nil)

// New returns CLOCK_REALTIME; a nil Adjtimer means the real system calls.
func New(a Adjtimer) *Clock { return NewClockID(a, unix.CLOCK_REALTIME, KernelMaxFreqPPB) }

// NewClockID returns a clock for any clock id (e.g. a PHC's dynamic id).
func NewClockID(a Adjtimer, id int32, maxFreqPPB float64) *Clock {
	if a == nil {
		a = kernel{}
	}
	return &Clock{a: a, id: id, maxFreqPPB: maxFreqPPB}
}

// NowNS reads the clock; 0 if the read fails (callers needing the error use
// Read).
func (c *Clock) NowNS() int64 {
	ns, _ := c.Read()
	return ns
}

// Read reads the clock.
func (c *Clock) Read() (int64, error) {
	var ts unix.Timespec
	if err := c.a.ClockGettime(c.id, &ts); err != nil {
		return 0, fmt.Errorf("clock_gettime(%d): %w", c.id, err)
	}
	return ts.Nano(), nil
}

// ReadOnlyStatus queries the clock with modes = 0: it changes nothing.
func (c *Clock) ReadOnlyStatus() (unix.Timex, int, error) {
	var tx unix.Timex
	state, err := c.a.ClockAdjtime(c.id, &tx)
	if err != nil {
		return tx, state, fmt.Errorf("clock_adjtime(%d, modes=0): %w", c.id, err)
	}
	return tx, state, nil
}

// FreqPPB reads the applied frequency correction.
func (c *Clock) FreqPPB() (float64, error) {
	tx, _, err := c.ReadOnlyStatus()
	return float64(tx.Freq) / ppbToTimexFreq, err
}

// MaxFreqPPB is the correction limit.
func (c *Clock) MaxFreqPPB() float64 { return c.maxFreqPPB }

// AdjFreqPPB sets the absolute frequency correction.
func (c *Clock) AdjFreqPPB(freqPPB float64) error {
	if math.IsNaN(freqPPB) || math.Abs(freqPPB) > c.maxFreqPPB {
		return fmt.Errorf("clock_adjtime(%d): frequency %v ppb outside ±%v", c.id, freqPPB, c.maxFreqPPB)
	}
	tx := unix.Timex{Modes: unix.ADJ_FREQUENCY, Freq: int64(math.Round(freqPPB * ppbToTimexFreq))}
	if _, err := c.a.ClockAdjtime(c.id, &tx); err != nil {
		return fmt.Errorf("clock_adjtime(%d, ADJ_FREQUENCY): %w", c.id, err)
	}
	return nil
}

// StepTimeval encodes a step for ADJ_SETOFFSET|ADJ_NANO: whole seconds
// rounded down and a non-negative nanosecond part.
func StepTimeval(stepNS int64) unix.Timeval {
	sec := stepNS / 1e9
	nsec := stepNS % 1e9
	if nsec < 0 {
		sec--
		nsec += 1e9
	}
	return unix.Timeval{Sec: sec, Usec: nsec}
}

// Step adds stepNS to the clock.
func (c *Clock) Step(stepNS int64) error {
	tx := unix.Timex{Modes: unix.ADJ_SETOFFSET | unix.ADJ_NANO, Time: StepTimeval(stepNS)}
	if _, err := c.a.ClockAdjtime(c.id, &tx); err != nil {
		return fmt.Errorf("clock_adjtime(%d, ADJ_SETOFFSET): %w", c.id, err)
	}
	return nil
}

// SetLeap announces a leap second at the end of the UTC day to the kernel
// (STA_INS or STA_DEL, kept with the other status bits), or withdraws one
// (0), as chronyd does in kernel leap mode.
func (c *Clock) SetLeap(insert, del bool) error {
	cur, _, err := c.ReadOnlyStatus()
	if err != nil {
		return err
	}
	status := cur.Status &^ (unix.STA_INS | unix.STA_DEL)
	switch {
	case insert:
		status |= unix.STA_INS
	case del:
		status |= unix.STA_DEL
	}
	if status == cur.Status {
		return nil
	}
	tx := unix.Timex{Modes: unix.ADJ_STATUS, Status: status}
	if _, err := c.a.ClockAdjtime(c.id, &tx); err != nil {
		return fmt.Errorf("clock_adjtime(%d, ADJ_STATUS leap): %w", c.id, err)
	}
	return nil
}

// SetSync sets or clears STA_UNSYNC (keeping the other status bits) and the
// kernel's maximum and estimated error (µs), which other programs (ntptime,
// adjtimex) read.
func (c *Clock) SetSync(synced bool, maxErrorNS, estErrorNS int64) error {
	cur, _, err := c.ReadOnlyStatus()
	if err != nil {
		return err
	}
	status := cur.Status | unix.STA_UNSYNC
	if synced {
		status = cur.Status &^ unix.STA_UNSYNC
	}
	tx := unix.Timex{
		Modes:    unix.ADJ_STATUS | unix.ADJ_MAXERROR | unix.ADJ_ESTERROR,
		Status:   status,
		Maxerror: maxErrorNS / 1000,
		Esterror: estErrorNS / 1000,
	}
	if _, err := c.a.ClockAdjtime(c.id, &tx); err != nil {
		return fmt.Errorf("clock_adjtime(%d, ADJ_STATUS): %w", c.id, err)
	}
	return nil
}
