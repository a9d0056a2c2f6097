// Package mmsg wraps recvmmsg(2) and sendmmsg(2) for batched UDP I/O through
// a syscall.RawConn, without allocating per call.
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
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), uintptr(flags|unix.MSG_DONTWAIT), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

// Send sends len(msgs) datagrams; it returns how many went out.
func Send(fd uintptr, msgs []Hdr, flags int) (int, syscall.Errno) {
	n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), uintptr(flags|unix.MSG_DONTWAIT), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}
