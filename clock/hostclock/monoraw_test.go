package hostclock

import (
	"testing"

	"golang.org/x/sys/unix"
)

func sys(id int32) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(id, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

// The vDSO pair reads the clocks it names: each value lies between system
// call reads of the same clock taken before and after it.
func TestRawBootReadTheNamedClocks(t *testing.T) {
	for _, read := range []struct {
		name string
		f    func() (int64, int64)
	}{{"RawBootNS", RawBootNS}, {"BootRawNS", BootRawNS}} {
		for i := 0; i < 100; i++ {
			r0, b0 := sys(unix.CLOCK_MONOTONIC_RAW), sys(unix.CLOCK_BOOTTIME)
			raw, boot := read.f()
			r1, b1 := sys(unix.CLOCK_MONOTONIC_RAW), sys(unix.CLOCK_BOOTTIME)
			if raw < r0 || raw > r1 || boot < b0 || boot > b1 {
				t.Fatalf("%s: raw %d not in [%d, %d] or boot %d not in [%d, %d]", read.name, raw, r0, r1, boot, b0, b1)
			}
		}
	}
	for i := 0; i < 100; i++ {
		r0, b0 := sys(unix.CLOCK_MONOTONIC_RAW), sys(unix.CLOCK_BOOTTIME)
		raw0, boot, raw1 := RawBootRawNS()
		r1, b1 := sys(unix.CLOCK_MONOTONIC_RAW), sys(unix.CLOCK_BOOTTIME)
		if raw0 < r0 || raw1 < raw0 || raw1 > r1 || boot < b0 || boot > b1 {
			t.Fatalf("RawBootRawNS: %d %d %d outside [%d, %d] / [%d, %d]", raw0, boot, raw1, r0, r1, b0, b1)
		}
	}
	b0 := sys(unix.CLOCK_BOOTTIME)
	b := BootNS()
	if b1 := sys(unix.CLOCK_BOOTTIME); b < b0 || b > b1 {
		t.Fatalf("BootNS %d not in [%d, %d]", b, b0, b1)
	}
}

// The coarse difference is the kernel's wall_to_monotonic: CLOCK_MONOTONIC
// − CLOCK_REALTIME read precisely through system calls agrees with it to
// within the time between the reads. The fast read (raw first) gives the
// same value except across a tick, and its raw reading lies between system
// call reads of CLOCK_MONOTONIC_RAW.
func TestWallToMonoIsTheKernelsOffset(t *testing.T) {
	w, ok := WallToMonoNS()
	if !ok {
		t.Fatal("ten tries all straddled a tick")
	}
	m0 := sys(unix.CLOCK_MONOTONIC)
	r := sys(unix.CLOCK_REALTIME)
	m1 := sys(unix.CLOCK_MONOTONIC)
	if d := (m0+m1)/2 - r - w; d < -(m1-m0)-1000 || d > (m1-m0)+1000 {
		t.Fatalf("coarse wall_to_monotonic %d, precise %d: %d ns apart, reads %d ns apart", w, (m0+m1)/2-r, d, m1-m0)
	}
	same := 0
	for range 1000 {
		before := sys(unix.CLOCK_MONOTONIC_RAW)
		raw, w2 := RawWallToMonoNS()
		after := sys(unix.CLOCK_MONOTONIC_RAW)
		if raw < before || raw > after {
			t.Fatalf("raw %d outside the system calls' [%d, %d]", raw, before, after)
		}
		if w3, _ := WallToMonoNS(); w2 == w3 {
			same++
		}
	}
	if same < 900 {
		t.Fatalf("the fast read agreed with the careful one %d times of 1000", same)
	}
}
