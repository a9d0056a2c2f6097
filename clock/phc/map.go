package phc

import (
	"errors"
	"fmt"
	"math"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/clock/hostclock"
	"github.com/meridiantime/meridian/clock/system"
)

// Reading is one PHC reading bracketed by two readings of the host's
// CLOCK_MONOTONIC_RAW: the PHC read PHC at some raw instant in
// [RawLo, RawHi]. A hardware cross-timestamp has RawLo == RawHi.
type Reading struct {
	RawLo, PHC, RawHi int64
}

// Method is how a Map measures the PHC against the host, best first.
type Method int

const (
	// Precise: PTP_SYS_OFFSET_PRECISE, a cross-timestamp latched by the
	// hardware (PTM on PCIe, ART on Intel): no bracket at all.
	Precise Method = iota
	// Extended: PTP_SYS_OFFSET_EXTENDED with CLOCK_MONOTONIC_RAW, the
	// driver's own bracket around the device read (kernel ≥ 6.12); the
	// narrowest of several samples.
	Extended
	// User: clock_gettime on the PHC between two raw reads in user space
	// (every kernel; the bracket includes the system call).
	User
)

func (m Method) String() string {
	return [...]string{"precise", "extended", "user"}[m]
}

// MapOptions configure a Map. Zero values take defaults.
type MapOptions struct {
	Dev Device          // nil: the real device
	Adj system.Adjtimer // nil: the real system calls (read-only here)
	Raw func() int64    // nil: hostclock.MonoRawNS
	// AtRaw is the caller's clock reading at a raw instant (non-decreasing
	// in raw): the clock that PHC stamps are converted to.
	AtRaw func(raw int64) int64
	// OscPPB bounds each oscillator's own error (the PHC's crystal and the
	// host's): the relative rate of the two is within the PHC's frequency
	// correction ± 2·OscPPB. Default 100 ppm.
	OscPPB float64
	// Samples for Extended (1…25, default 9).
	Samples int
	// MaxGapNS: a bracket wider than this is retried (User) or refused.
	// Default 50 µs.
	MaxGapNS int64
}

// Map relates one PHC to the caller's clock, so hardware stamps (PHC
// time) are usable by a clock that is not the PHC: every conversion reads
// the PHC against the host afresh and widens the result by the bracket
// and by the stamp's age times the worst relative rate, on the side that
// keeps a receive stamp late and a transmit stamp early, as the bound
// needs (package hwts).
type Map struct {
	o      MapOptions
	fd     int
	id     int32
	own    bool
	method Method

	// What this process did to the PHC lately (Follower): a step voids
	// every stamp taken before it, and a frequency change leaves stamps
	// taken before it at the old rate.
	mu        sync.Mutex
	stepRaw   int64   // raw instant after the last step (0: never)
	freqPPB   float64 // the largest |correction| set within maxStampAgeNS
	freqRaw   int64   // when it was set
	hadAdjust bool
}

// NoteStep records that the PHC was just stepped: stamps up to the
// longest stamp age from now are refused (one taken before the step would
// convert by the wrong offset).
func (m *Map) NoteStep() {
	r := m.o.Raw()
	m.mu.Lock()
	m.stepRaw = r
	m.mu.Unlock()
}

// NoteFreq records a frequency correction (ppb) that was in force until
// now: the rate bound covers it for the longest stamp age.
func (m *Map) NoteFreq(oldPPB float64) {
	r := m.o.Raw()
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.hadAdjust || r-m.freqRaw > maxStampAgeNS || math.Abs(oldPPB) > m.freqPPB {
		m.freqPPB, m.freqRaw, m.hadAdjust = math.Abs(oldPPB), r, true
	}
}

// NewMap measures the PHC open at fd (not closed by Map.Close), choosing
// the best method the device and kernel accept.
func NewMap(fd int, caps unix.PtpClockCaps, o MapOptions) (*Map, error) {
	if o.AtRaw == nil {
		return nil, errors.New("phc: map needs the clock to convert to (AtRaw)")
	}
	if o.Dev == nil {
		o.Dev = realDevice{}
	}
	if o.Adj == nil {
		o.Adj = system.Kernel()
	}
	if o.Raw == nil {
		o.Raw = hostclock.MonoRawNS
	}
	if o.OscPPB == 0 {
		o.OscPPB = 100_000
	}
	if o.Samples <= 0 || o.Samples > 25 {
		o.Samples = 9
	}
	if o.MaxGapNS <= 0 {
		o.MaxGapNS = 50_000
	}
	if math.IsNaN(o.OscPPB) || o.OscPPB < 0 {
		return nil, fmt.Errorf("phc: oscillator bound %v ppb", o.OscPPB)
	}
	m := &Map{o: o, fd: fd, id: ClockID(fd), method: User}
	if caps.Cross_timestamping != 0 {
		if _, err := o.Dev.SysOffsetPrecise(fd); err == nil {
			m.method = Precise
		}
	}
	if m.method == User {
		if _, err := o.Dev.SysOffsetExtended(fd, unix.CLOCK_MONOTONIC_RAW, 1); err == nil {
			m.method = Extended
		}
	}
	if _, err := m.Read(); err != nil {
		return nil, fmt.Errorf("phc: measure against the host (%v): %w", m.method, err)
	}
	if _, err := m.RateBoundPPB(); err != nil {
		return nil, err
	}
	return m, nil
}

// OpenMap opens the PHC at path read-only for measuring; Close closes it.
func OpenMap(path string, o MapOptions) (*Map, error) {
	dev := o.Dev
	if dev == nil {
		dev = realDevice{}
	}
	fd, caps, err := openDevice(path, dev)
	if err != nil {
		return nil, err
	}
	m, err := NewMap(fd, caps, o)
	if err != nil {
		dev.Close(fd)
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m.own = true
	return m, nil
}

// Method is how the map measures.
func (m *Map) Method() Method { return m.method }

// Close closes the device if OpenMap opened it.
func (m *Map) Close() error {
	if m.own {
		return m.o.Dev.Close(m.fd)
	}
	return nil
}

func ptpNS(t unix.PtpClockTime) int64 { return t.Sec*1e9 + int64(t.Nsec) }

// Read measures the PHC against CLOCK_MONOTONIC_RAW once.
func (m *Map) Read() (Reading, error) {
	var r Reading
	switch m.method {
	case Precise:
		v, err := m.o.Dev.SysOffsetPrecise(m.fd)
		if err != nil {
			return r, fmt.Errorf("PTP_SYS_OFFSET_PRECISE: %w", err)
		}
		raw := ptpNS(v.Monoraw)
		r = Reading{RawLo: raw, PHC: ptpNS(v.Device), RawHi: raw}
	case Extended:
		v, err := m.o.Dev.SysOffsetExtended(m.fd, unix.CLOCK_MONOTONIC_RAW, m.o.Samples)
		if err != nil {
			return r, fmt.Errorf("PTP_SYS_OFFSET_EXTENDED: %w", err)
		}
		n := min(int(v.Samples), len(v.Ts))
		best := int64(math.MaxInt64)
		for i := range n {
			lo, p, hi := ptpNS(v.Ts[i][0]), ptpNS(v.Ts[i][1]), ptpNS(v.Ts[i][2])
			if hi >= lo && hi-lo < best {
				best, r = hi-lo, Reading{RawLo: lo, PHC: p, RawHi: hi}
			}
		}
		if best == math.MaxInt64 {
			return r, fmt.Errorf("PTP_SYS_OFFSET_EXTENDED: no ordered sample in %d", n)
		}
	case User:
		best := int64(math.MaxInt64)
		for range 4 {
			var ts unix.Timespec
			lo := m.o.Raw()
			if err := m.o.Adj.ClockGettime(m.id, &ts); err != nil {
				return r, fmt.Errorf("clock_gettime(PHC): %w", err)
			}
			hi := m.o.Raw()
			if hi >= lo && hi-lo < best {
				best, r = hi-lo, Reading{RawLo: lo, PHC: ts.Nano(), RawHi: hi}
			}
			if best <= m.o.MaxGapNS {
				break
			}
		}
	}
	if r.RawHi < r.RawLo || r.RawHi-r.RawLo > m.o.MaxGapNS {
		return r, fmt.Errorf("PHC bracket [%d, %d] wider than %d ns", r.RawLo, r.RawHi, m.o.MaxGapNS)
	}
	return r, nil
}

// RateBoundPPB bounds |rate(PHC)/rate(raw) − 1|: the PHC's frequency
// correction, read now (the daemon's servo or another program may have
// just changed it), plus both oscillators' tolerance.
func (m *Map) RateBoundPPB() (float64, error) {
	var tx unix.Timex // modes = 0: read only
	if _, err := m.o.Adj.ClockAdjtime(m.id, &tx); err != nil {
		return 0, fmt.Errorf("phc: clock_adjtime(PHC, modes=0): %w", err)
	}
	f := math.Abs(float64(tx.Freq) / 65.536)
	m.mu.Lock()
	if m.hadAdjust && m.o.Raw()-m.freqRaw <= maxStampAgeNS {
		f = math.Max(f, m.freqPPB)
	}
	m.mu.Unlock()
	return f + 2*m.o.OscPPB, nil
}

// maxStampAgeNS: an older stamp (or one from further in the future) is
// refused: the PHC was stepped, or the stamp is from another clock.
const maxStampAgeNS = 1_000_000_000

// RawSpan returns the raw instants between which a PHC stamp was taken,
// from a fresh reading: the reading's bracket moved back by the stamp's
// age in PHC time, scaled by the extreme relative rates.
func (m *Map) RawSpan(stampNS int64) (lo, hi int64, ok bool) {
	rate, err := m.RateBoundPPB()
	if err != nil {
		return 0, 0, false
	}
	r, err := m.Read()
	if err != nil {
		return 0, 0, false
	}
	m.mu.Lock()
	stepped := m.stepRaw != 0 && r.RawLo-m.stepRaw <= maxStampAgeNS
	m.mu.Unlock()
	if stepped {
		return 0, 0, false
	}
	return Span(r, stampNS, rate)
}

// Span is RawSpan for a given reading and rate bound (ppb).
func Span(r Reading, stampNS int64, rateBoundPPB float64) (lo, hi int64, ok bool) {
	age := r.PHC - stampNS
	if age > maxStampAgeNS || age < -maxStampAgeNS {
		return 0, 0, false
	}
	rho := rateBoundPPB * 1e-9
	a := float64(age)
	// Raw time elapsed over age PHC nanoseconds lies between a·(1−ρ) and
	// a·(1+ρ) (for either sign of a, as an interval).
	e1, e2 := a*(1-rho), a*(1+rho)
	least, most := math.Min(e1, e2), math.Max(e1, e2)
	lo = r.RawLo - int64(math.Ceil(most)) - 1
	hi = r.RawHi - int64(math.Floor(least)) + 1
	return lo, hi, true
}

// RxToClock converts a hardware receive stamp to the caller's clock,
// late but never early (the bound counts on it).
func (m *Map) RxToClock(stampNS int64) (int64, bool) {
	_, hi, ok := m.RawSpan(stampNS)
	if !ok {
		return 0, false
	}
	return m.o.AtRaw(hi), true
}

// TxToClock converts a hardware transmit stamp, early but never late.
func (m *Map) TxToClock(stampNS int64) (int64, bool) {
	lo, _, ok := m.RawSpan(stampNS)
	if !ok {
		return 0, false
	}
	return m.o.AtRaw(lo), true
}
