package ntp

import (
	"encoding/binary"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/hwts"
)

// Kernel receive timestamps. With SO_TIMESTAMPNS the kernel stamps each
// datagram (CLOCK_REALTIME) when it arrives, before the process wakes up.
// Meridian's clock is not CLOCK_REALTIME, so a stamp is used only for the
// packet's age: rx = clockNow − (realtimeNow − kernelStamp). Over the
// microseconds of an age, the two clocks' rates differ by nothing
// measurable, and the wake-up latency (tens of µs on a loaded host, which
// would bias offsets by half of it) drops out.

// oobLen fits one SCM_TIMESTAMPNS control message (32 bytes) and, on
// kernels without SOF_TIMESTAMPING_OPT_RX_FILTER, the SCM_TIMESTAMPING one
// (64) that interleaved mode's TX-stamp setting then adds to every datagram.
const oobLen = 128

func enableRxTimestamps(c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// kernelRxNS extracts the SCM_TIMESTAMPNS stamp from control data without
// allocating.
func kernelRxNS(oob []byte) (int64, bool) {
	const hdr = unix.SizeofCmsghdr
	for len(oob) >= hdr {
		l := int(binary.NativeEndian.Uint64(oob[0:8]))
		level := int32(binary.NativeEndian.Uint32(oob[8:12]))
		typ := int32(binary.NativeEndian.Uint32(oob[12:16]))
		if l < hdr || l > len(oob) {
			return 0, false
		}
		if level == unix.SOL_SOCKET && typ == unix.SCM_TIMESTAMPNS && l >= hdr+16 {
			sec := int64(binary.NativeEndian.Uint64(oob[hdr:]))
			nsec := int64(binary.NativeEndian.Uint64(oob[hdr+8:]))
			return sec*1e9 + nsec, true
		}
		step := (l + 7) &^ 7
		if step > len(oob) {
			return 0, false
		}
		oob = oob[step:]
	}
	return 0, false
}

// rxAt converts a kernel stamp to the served clock. realtimeNS must be read
// BEFORE nowNS (the served clock's reading): a delay between the two reads
// then makes the result late, never early. That order is what keeps the
// NTP bound valid: a receive stamp may be late (the exchange looks longer),
// never early (it would shrink δ below the truth). Transmit stamps are the
// mirror image: read before sending, so they may be early, never late.
func rxAt(realtimeNS, nowNS int64, oob []byte) int64 {
	k, ok := kernelRxNS(oob)
	if !ok {
		return nowNS
	}
	t, _ := hwts.RxToClock(realtimeNS, nowNS, k) // a stepped host clock: the user-space stamp
	return t
}
