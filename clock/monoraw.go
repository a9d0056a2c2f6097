package clock

/*
#include <time.h>
static long long meridian_monoraw(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
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
