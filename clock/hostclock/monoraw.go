package hostclock

/*
#include <time.h>
static long long meridian_monoraw(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
static long long meridian_ns(clockid_t id) {
	struct timespec ts;
	clock_gettime(id, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
typedef struct { long long raw, boot; } meridian_rawboot;
// Two vDSO reads in one cgo call. rawFirst chooses the order; see RawBootNS
// and BootRawNS for why the order matters.
typedef struct { long long raw0, boot, raw1; } meridian_rawbootraw;
static meridian_rawbootraw meridian_rawbootraw_read(void) {
	meridian_rawbootraw r;
	r.raw0 = meridian_ns(CLOCK_MONOTONIC_RAW);
	r.boot = meridian_ns(CLOCK_BOOTTIME);
	r.raw1 = meridian_ns(CLOCK_MONOTONIC_RAW);
	return r;
}
static meridian_rawboot meridian_rawboot_read(int rawFirst) {
	meridian_rawboot r;
	if (rawFirst) {
		r.raw = meridian_ns(CLOCK_MONOTONIC_RAW);
		r.boot = meridian_ns(CLOCK_BOOTTIME);
	} else {
		r.boot = meridian_ns(CLOCK_BOOTTIME);
		r.raw = meridian_ns(CLOCK_MONOTONIC_RAW);
	}
	return r;
}
*/
import "C"

// MonoRawNS reads CLOCK_MONOTONIC_RAW through libc, which uses the vDSO (no
// system call). CLOCK_MONOTONIC_RAW is never slewed by NTP daemons, so it is
// the only safe base for the virtual clock; Go's time.Now is CLOCK_MONOTONIC,
// which another daemon may slew by up to 500 ppm.
func MonoRawNS() int64 {
	return int64(C.meridian_monoraw())
}

// BootNS reads CLOCK_BOOTTIME through the vDSO. Unlike CLOCK_MONOTONIC_RAW
// it keeps counting while the system is suspended.
func BootNS() int64 { return int64(C.meridian_ns(C.CLOCK_BOOTTIME)) }

// RawBootNS reads CLOCK_MONOTONIC_RAW and then CLOCK_BOOTTIME in one cgo
// call (two vDSO reads). A publisher stamps with this order: a preemption
// between the reads makes the boottime stamp late, which can only hide a
// suspend gap a reader computes from it, never invent one.
func RawBootNS() (raw, boot int64) {
	r := C.meridian_rawboot_read(1)
	return int64(r.raw), int64(r.boot)
}

// RawBootRawNS brackets a CLOCK_BOOTTIME read between two
// CLOCK_MONOTONIC_RAW reads (one cgo call): the raw clock at the boottime
// instant lies in [raw0, raw1] however long the thread was preempted
// between the reads. A publisher compares two such brackets to bound a
// suspend gap from below.
func RawBootRawNS() (raw0, boot, raw1 int64) {
	r := C.meridian_rawbootraw_read()
	return int64(r.raw0), int64(r.boot), int64(r.raw1)
}

// BootRawNS reads CLOCK_BOOTTIME and then CLOCK_MONOTONIC_RAW in one cgo
// call: the reader's order, for the same reason as RawBootNS (a late raw
// reading shrinks the apparent gap).
func BootRawNS() (raw, boot int64) {
	r := C.meridian_rawboot_read(0)
	return int64(r.raw), int64(r.boot)
}
