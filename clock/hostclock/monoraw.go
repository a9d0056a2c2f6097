package hostclock

import "golang.org/x/sys/unix"

// ReadPathInfo says how this process reads the host's clocks.
type ReadPathInfo struct {
	// Method is "vdso" (the kernel's __vdso_clock_gettime, called without
	// cgo and without a system call) or "syscall" (clock_gettime(2)).
	Method string
	// StackUseBytes is the vDSO's stack use measured at start (the deepest
	// of the clocks read), and FrameBytes the stack each call reserves.
	StackUseBytes, FrameBytes int
	// Reason explains a system-call path or the larger frame; empty on the
	// normal path.
	Reason string
}

// ReadPath reports how the clocks are read; meridiand logs it at start and
// exports it as meridian_clock_read_path.
func ReadPath() ReadPathInfo { return vdso.path }

func syscallNS(id int32) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(id, &ts); err != nil {
		// CLOCK_MONOTONIC_RAW and CLOCK_BOOTTIME exist on every kernel Go
		// supports (2.6.39+): a failure here is a broken kernel.
		panic("hostclock: clock_gettime(" + itoa(int(id)) + "): " + err.Error())
	}
	return ts.Nano()
}

func itoa(n int) string {
	if n < 0 {
		return "-" + itoa(-n)
	}
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

// MonoRawNS reads CLOCK_MONOTONIC_RAW through the vDSO (no system call, no
// cgo; see ReadPath). CLOCK_MONOTONIC_RAW is never slewed by NTP daemons,
// so it is the only safe base for the virtual clock; Go's time.Now is
// CLOCK_MONOTONIC, which another daemon may slew by up to 500 ppm.
func MonoRawNS() int64 { return clockNS(unix.CLOCK_MONOTONIC_RAW) }

// BootNS reads CLOCK_BOOTTIME through the vDSO. Unlike CLOCK_MONOTONIC_RAW
// it keeps counting while the system is suspended.
func BootNS() int64 { return clockNS(unix.CLOCK_BOOTTIME) }

// RealtimeNS reads CLOCK_REALTIME through the vDSO.
func RealtimeNS() int64 { return clockNS(unix.CLOCK_REALTIME) }

// RawBootNS reads CLOCK_MONOTONIC_RAW and then CLOCK_BOOTTIME. A publisher
// stamps with this order: a preemption between the reads makes the
// boottime stamp late, which can only hide a suspend gap a reader computes
// from it, never invent one.
func RawBootNS() (raw, boot int64) {
	return clockPairNS(unix.CLOCK_MONOTONIC_RAW, unix.CLOCK_BOOTTIME)
}

// RawBootRawNS brackets a CLOCK_BOOTTIME read between two
// CLOCK_MONOTONIC_RAW reads: the raw clock at the boottime instant lies in
// [raw0, raw1] however long the thread was preempted between the reads. A
// publisher compares two such brackets to bound a suspend gap from below.
func RawBootRawNS() (raw0, boot, raw1 int64) {
	raw0, boot = clockPairNS(unix.CLOCK_MONOTONIC_RAW, unix.CLOCK_BOOTTIME)
	return raw0, boot, clockNS(unix.CLOCK_MONOTONIC_RAW)
}

// BootRawNS reads CLOCK_BOOTTIME and then CLOCK_MONOTONIC_RAW: the
// reader's order, for the same reason as RawBootNS (a late raw reading
// shrinks the apparent gap).
func BootRawNS() (raw, boot int64) {
	boot, raw = clockPairNS(unix.CLOCK_BOOTTIME, unix.CLOCK_MONOTONIC_RAW)
	return raw, boot
}

// RawWallToMonoNS reads CLOCK_MONOTONIC_RAW, then CLOCK_MONOTONIC_COARSE
// and CLOCK_REALTIME_COARSE, and returns the raw reading and the coarse
// difference w2m = monotonic − realtime: the kernel's wall_to_monotonic
// offset, exactly, when both coarse reads fell within one tick (both come
// from the same timekeeping update). It moves when the kernel injects
// sleep time at a resume (by the sleep's length), when CLOCK_REALTIME is
// set or stepped and at a leap second — never with NTP slewing, which
// moves both clocks alike; across a tick between the two reads it comes
// out one tick off. Coarse clocks are read without the time counter, so
// the three reads cost little more than one: the shared-memory reader's
// fast way to know that no suspend happened since a publish. The raw
// reading comes first: a resume after it can only make w2m differ.
func RawWallToMonoNS() (raw, w2m int64) {
	raw, mono, real := clockTripleNS(unix.CLOCK_MONOTONIC_RAW, unix.CLOCK_MONOTONIC_COARSE, unix.CLOCK_REALTIME_COARSE)
	return raw, mono - real
}

// WallToMonoNS returns the kernel's wall_to_monotonic offset (see
// RawWallToMonoNS), read until both coarse clocks come from one tick.
// ok is false when ten tries straddled a tick (a system too loaded to
// say): the caller then records none.
func WallToMonoNS() (w2m int64, ok bool) {
	for range 10 {
		m0, real, m1 := clockTripleNS(unix.CLOCK_MONOTONIC_COARSE, unix.CLOCK_REALTIME_COARSE, unix.CLOCK_MONOTONIC_COARSE)
		if m0 == m1 {
			return m0 - real, true
		}
	}
	return 0, false
}
