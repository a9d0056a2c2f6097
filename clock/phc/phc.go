// Package phc disciplines a PTP hardware clock (/dev/ptpN) through its
// dynamic POSIX clock id, with the same clock_adjtime driver as package
// system. There is no PHC on the development machines: tests run through a
// fake device at the open/ioctl boundary and a fake Adjtimer.
package phc

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/clock/system"
)

// Device is the boundary to the character device: open, close and the
// PTP ioctls this package uses.
type Device interface {
	Open(path string) (fd int, err error)
	Caps(fd int) (unix.PtpClockCaps, error) // PTP_CLOCK_GETCAPS2
	// SysOffsetPrecise is PTP_SYS_OFFSET_PRECISE2: a cross-timestamp taken
	// by the hardware (device, realtime and monotonic-raw at one instant).
	SysOffsetPrecise(fd int) (unix.PtpSysOffsetPrecise, error)
	// SysOffsetExtended is PTP_SYS_OFFSET_EXTENDED2 with n (≤ 25) samples,
	// each a device reading between two readings of clockID (kernels
	// before 6.12 accept only CLOCK_REALTIME and fail with EINVAL).
	SysOffsetExtended(fd int, clockID int32, n int) (unix.PtpSysOffsetExtended, error)
	Close(fd int) error
}

type realDevice struct{}

func (realDevice) Open(path string) (int, error) {
	return unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
}
func (realDevice) Caps(fd int) (unix.PtpClockCaps, error) {
	caps, err := unix.IoctlPtpClockGetcaps(fd)
	if err != nil {
		return unix.PtpClockCaps{}, err
	}
	return *caps, nil
}
func (realDevice) SysOffsetPrecise(fd int) (unix.PtpSysOffsetPrecise, error) {
	v, err := unix.IoctlPtpSysOffsetPrecise(fd)
	if err != nil {
		return unix.PtpSysOffsetPrecise{}, err
	}
	return *v, nil
}
func (realDevice) SysOffsetExtended(fd int, clockID int32, n int) (unix.PtpSysOffsetExtended, error) {
	v := unix.PtpSysOffsetExtended{Samples: uint32(n), Clockid: clockID}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.PTP_SYS_OFFSET_EXTENDED2, uintptr(unsafe.Pointer(&v)))
	if errno != 0 {
		return v, errno
	}
	return v, nil
}
func (realDevice) Close(fd int) error { return unix.Close(fd) }

// RealDevice returns the real device calls.
func RealDevice() Device { return realDevice{} }

// ClockID converts an open PHC file descriptor to its dynamic clock id
// (the kernel's FD_TO_CLOCKID).
func ClockID(fd int) int32 { return int32((^fd)<<3 | 3) }

// Clock is a disciplined PHC.
type Clock struct {
	*system.Clock
	dev  Device
	fd   int
	path string
	caps unix.PtpClockCaps
}

// Open opens the PHC at path (e.g. /dev/ptp0). Nil dev/adj use the real
// device and system calls.
func Open(path string, dev Device, adj system.Adjtimer) (*Clock, error) {
	if dev == nil {
		dev = realDevice{}
	}
	fd, caps, err := openDevice(path, dev)
	if err != nil {
		return nil, err
	}
	maxAdj := caps.Max_adj
	if maxAdj <= 0 {
		dev.Close(fd)
		return nil, fmt.Errorf("phc: %s reports max_adj %d ppb: cannot be disciplined", path, maxAdj)
	}
	return &Clock{Clock: system.NewClockID(adj, ClockID(fd), float64(maxAdj)), dev: dev, fd: fd, path: path, caps: caps}, nil
}

// openDevice opens the PHC at path and reads its capabilities (closing it
// again when that fails).
func openDevice(path string, dev Device) (int, unix.PtpClockCaps, error) {
	fd, err := dev.Open(path)
	if err != nil {
		return 0, unix.PtpClockCaps{}, fmt.Errorf("phc: open %s: %w", path, err)
	}
	caps, err := dev.Caps(fd)
	if err != nil {
		dev.Close(fd)
		return 0, unix.PtpClockCaps{}, fmt.Errorf("phc: %s: PTP_CLOCK_GETCAPS: %w", path, err)
	}
	return fd, caps, nil
}

// FD is the open device's descriptor (for a Map on the same device).
func (c *Clock) FD() int { return c.fd }

// Caps is what PTP_CLOCK_GETCAPS reported at Open.
func (c *Clock) Caps() unix.PtpClockCaps { return c.caps }

// SetSync is a no-op: a PHC has no kernel sync status.
func (c *Clock) SetSync(bool, int64, int64) error { return nil }

// Close releases the device.
func (c *Clock) Close() error { return c.dev.Close(c.fd) }
