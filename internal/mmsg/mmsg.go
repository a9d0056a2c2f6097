// Package mmsg wraps recvmmsg(2) and sendmmsg(2) for batched UDP I/O through
// sockets a caller owns, without allocating per call.
//
// Recv and Send pass MSG_DONTWAIT and so never block, which is what lets
// them use RawSyscall6: no entersyscall/exitsyscall, and — what matters —
// a batch whose system call runs longer than the runtime's 20 µs sysmon
// tick (a sendmmsg of 32 replies on loopback takes ~60 µs, delivery
// included) is not taken for a blocked thread, so the runtime does not
// hand its P to another thread and wake it, twice per batch. RecvWait is
// the one call that blocks, and says so to the runtime.
package mmsg

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Hdr is struct mmsghdr (linux/amd64 and arm64 layout).
type Hdr struct {
	Msghdr unix.Msghdr
	Len    uint32
	_      [4]byte
}

// Recv receives up to len(msgs) datagrams without blocking.
func Recv(fd uintptr, msgs []Hdr, flags int) (int, syscall.Errno) {
	n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), uintptr(flags|unix.MSG_DONTWAIT), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

// Send sends len(msgs) datagrams; it returns how many went out.
func Send(fd uintptr, msgs []Hdr, flags int) (int, syscall.Errno) {
	n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), uintptr(flags|unix.MSG_DONTWAIT), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

// RecvWait receives up to len(msgs) datagrams on a blocking socket: it
// waits for the first (MSG_WAITFORONE) and takes the others already
// queued. Datagrams already queued (a server under load) are taken with
// Recv, without telling the runtime; only an empty queue makes it wait
// through Syscall6, which tells the runtime it may block, so the thread's
// P is handed on while it waits.
func RecvWait(fd uintptr, msgs []Hdr, flags int) (int, syscall.Errno) {
	if n, e := Recv(fd, msgs, flags); e != unix.EAGAIN {
		return n, e
	}
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), uintptr(flags|unix.MSG_WAITFORONE), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}
