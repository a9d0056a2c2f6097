package hostclock

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Implemented in vdso_amd64.s.

//go:noescape
func vdsoCallSmall(fn uintptr, clockid int32, ts *unix.Timespec) int32

//go:noescape
func vdsoCallLarge(fn uintptr, clockid int32, ts *unix.Timespec) int32

//go:noescape
func vdsoCall2Small(fn uintptr, id0, id1 int32, ts0, ts1 *unix.Timespec)

//go:noescape
func vdsoCall3Small(fn uintptr, id0, id1, id2 int32, ts0, ts1, ts2 *unix.Timespec)

func vdsoStackDepth(fn uintptr, clockid int32, ts *unix.Timespec) uintptr

const (
	// smallFrameBytes is vdsoCallSmall's frame; the small frame is chosen
	// only when the vDSO measurably uses at most smallFrameMaxUse of it.
	smallFrameBytes  = 1024
	smallFrameMaxUse = 256
	largeFrameBytes  = 16384
	vdsoSymbol       = "__vdso_clock_gettime"
	vdsoVersion      = "LINUX_2.6"
	atSysinfoEHDR    = 33
	maxVDSOImage     = 1 << 20
)

// vdso is the process's clock reader, chosen once at start by loadVDSO.
var vdso = loadVDSO(auxvValue(atSysinfoEHDR))

type vdsoReader struct {
	fn    uintptr // __vdso_clock_gettime, or 0: the system call
	large bool    // use the large frame
	path  ReadPathInfo
}

func auxvValue(key uintptr) uintptr {
	auxv, err := unix.Auxv()
	if err != nil {
		return 0
	}
	for _, kv := range auxv {
		if kv[0] == key {
			return kv[1]
		}
	}
	return 0
}

// bytesAt views n bytes of this process's memory at addr (the vDSO image,
// mapped read-only by the kernel for the life of the process).
func bytesAt(addr uintptr, n uint64) []byte {
	p := *(*unsafe.Pointer)(unsafe.Pointer(&addr))
	return unsafe.Slice((*byte)(p), n)
}

func loadVDSO(base uintptr) vdsoReader {
	fallback := func(why string) vdsoReader {
		return vdsoReader{path: ReadPathInfo{Method: "syscall", Reason: why}}
	}
	if base == 0 {
		return fallback("the kernel maps no vDSO (no AT_SYSINFO_EHDR in the auxiliary vector)")
	}
	// The vDSO is at least one page: its first 4096 bytes are mapped.
	first := bytesAt(base, 4096)
	phEnd, loadSize, err := elfHeaderSize(first)
	if err != nil || phEnd > 4096 || loadSize > maxVDSOImage {
		return fallback(fmt.Sprintf("vDSO image not understood: %v (program headers end at %d, image %d bytes)", err, phEnd, loadSize))
	}
	img := bytesAt(base, loadSize)
	sym, err := findELFSymbol(img, vdsoSymbol, vdsoVersion)
	if err != nil {
		return fallback(fmt.Sprintf("vDSO: %v", err))
	}
	fn := base + uintptr(sym.Offset)
	// Measure the stack the vDSO uses for each clock we read, on a painted
	// 16 KiB frame, and check that it reads the clock it is asked for.
	var depth uintptr
	for _, id := range []int32{unix.CLOCK_MONOTONIC_RAW, unix.CLOCK_BOOTTIME, unix.CLOCK_REALTIME, unix.CLOCK_MONOTONIC_COARSE, unix.CLOCK_REALTIME_COARSE} {
		before := syscallNS(id)
		var ts unix.Timespec
		d := vdsoStackDepth(fn, id, &ts)
		after := syscallNS(id)
		if got := ts.Nano(); got < before || got > after {
			return fallback(fmt.Sprintf("vDSO %s read clock %d as %d, outside the system call's [%d, %d]", vdsoSymbol, id, got, before, after))
		}
		depth = max(depth, d)
	}
	r := vdsoReader{fn: fn, path: ReadPathInfo{Method: "vdso", StackUseBytes: int(depth), FrameBytes: smallFrameBytes}}
	probes := stackProbes(img)
	if depth > smallFrameMaxUse || probes > 0 {
		r.large = true
		r.path.FrameBytes = largeFrameBytes
		r.path.Reason = fmt.Sprintf("the vDSO used %d bytes of stack and holds %d stack-probe or large-frame instructions: calls reserve %d bytes", depth, probes, largeFrameBytes)
	}
	return r
}

// stackProbes counts, anywhere in the image, the x86-64 encodings of
// "orq $0, disp(%rsp)" (a hardened compiler's stack probe, which touches
// memory without changing it, so the painted frame cannot see it) and of
// "subq $imm32, %rsp" with imm32 ≥ 512 (a frame too large for the small
// reservation). Data bytes may match too; a false match only costs the
// larger frame.
func stackProbes(img []byte) int {
	n := 0
	for i := 0; i+4 < len(img); i++ {
		if img[i] != 0x48 {
			continue
		}
		switch {
		case img[i+1] == 0x83 && img[i+2] == 0x0c && img[i+3] == 0x24 && img[i+4] == 0x00: // orq $0,(%rsp)
			n++
		case img[i+1] == 0x83 && img[i+2] == 0x4c && img[i+3] == 0x24 && i+5 < len(img) && img[i+5] == 0x00: // orq $0,d8(%rsp)
			n++
		case img[i+1] == 0x83 && img[i+2] == 0x8c && img[i+3] == 0x24 && i+8 < len(img) && img[i+8] == 0x00: // orq $0,d32(%rsp)
			n++
		case img[i+1] == 0x81 && img[i+2] == 0xec && i+6 < len(img) && le.Uint32(img[i+3:]) >= 512: // subq $imm32,%rsp
			n++
		}
	}
	return n
}

func clockNS(id int32) int64 {
	var ts unix.Timespec
	v := &vdso
	if v.fn != 0 {
		var rc int32
		if v.large {
			rc = vdsoCallLarge(v.fn, id, &ts)
		} else {
			rc = vdsoCallSmall(v.fn, id, &ts)
		}
		if rc == 0 {
			return ts.Sec*1e9 + ts.Nsec
		}
	}
	return syscallNS(id)
}

// clockPairNS reads id0 then id1.
func clockPairNS(id0, id1 int32) (int64, int64) {
	v := &vdso
	if v.fn != 0 && !v.large {
		// clock_gettime fills the timespec only on success: a sentinel
		// left in place means it failed.
		ts0 := unix.Timespec{Nsec: -1}
		ts1 := unix.Timespec{Nsec: -1}
		vdsoCall2Small(v.fn, id0, id1, &ts0, &ts1)
		if ts0.Nsec >= 0 && ts1.Nsec >= 0 {
			return ts0.Sec*1e9 + ts0.Nsec, ts1.Sec*1e9 + ts1.Nsec
		}
	}
	a := clockNS(id0)
	return a, clockNS(id1)
}

// clockTripleNS reads id0, id1 then id2.
func clockTripleNS(id0, id1, id2 int32) (int64, int64, int64) {
	v := &vdso
	if v.fn != 0 && !v.large {
		ts0 := unix.Timespec{Nsec: -1}
		ts1 := unix.Timespec{Nsec: -1}
		ts2 := unix.Timespec{Nsec: -1}
		vdsoCall3Small(v.fn, id0, id1, id2, &ts0, &ts1, &ts2)
		if ts0.Nsec >= 0 && ts1.Nsec >= 0 && ts2.Nsec >= 0 {
			return ts0.Sec*1e9 + ts0.Nsec, ts1.Sec*1e9 + ts1.Nsec, ts2.Sec*1e9 + ts2.Nsec
		}
	}
	a := clockNS(id0)
	b := clockNS(id1)
	return a, b, clockNS(id2)
}
