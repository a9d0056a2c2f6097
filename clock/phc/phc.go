// Package phc disciplines a PTP hardware clock (/dev/ptpN) through its
// dynamic POSIX clock id, with the same clock_adjtime driver as package
// system. There is no PHC on the development machines: tests run through a
// fake device at the open/ioctl boundary and a fake Adjtimer.
package phc

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/clock/system"
)

// Device is the boundary to the character device.
type Device interface {
	Open(path string) (fd int, err error)
	MaxAdjPPB(fd int) (int32, error) // PTP_CLOCK_GETCAPS max_adj
	Close(fd int) error
}

type realDevice struct{}

func (realDevice) Open(path string) (int, error) {
	return unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
}
func (realDevice) MaxAdjPPB(fd int) (int32, error) {
	caps, err := unix.IoctlPtpClockGetcaps(fd)
	if err != nil {
		return 0, err
	}
	return caps.Max_adj, nil
}
func (realDevice) Close(fd int) error { return unix.Close(fd) }

// ClockID converts an open PHC file descriptor to its dynamic clock id
// (the kernel's FD_TO_CLOCKID).
func ClockID(fd int) int32 { return int32((^fd)<<3 | 3) }

// Clock is a disciplined PHC.
type Clock struct {
	*system.Clock
	dev  Device
	fd   int
	path string
}

// Open opens the PHC at path (e.g. /dev/ptp0). Nil dev/adj use the real
// device and system calls.
func Open(path string, dev Device, adj system.Adjtimer) (*Clock, error) {
	if dev == nil {
		dev = realDevice{}
	}
	fd, err := dev.Open(path)
	if err != nil {
		return nil, fmt.Errorf("phc: open %s: %w", path, err)
	}
	maxAdj, err := dev.MaxAdjPPB(fd)
	if err != nil {
		dev.Close(fd)
		return nil, fmt.Errorf("phc: %s: PTP_CLOCK_GETCAPS: %w", path, err)
	}
	if maxAdj <= 0 {
		dev.Close(fd)
		return nil, fmt.Errorf("phc: %s reports max_adj %d ppb: cannot be disciplined", path, maxAdj)
	}
	return &Clock{Clock: system.NewClockID(adj, ClockID(fd), float64(maxAdj)), dev: dev, fd: fd, path: path}, nil
}

// SetSync is a no-op: a PHC has no kernel sync status.
func (c *Clock) SetSync(bool, int64, int64) error { return nil }

// Close releases the device.
func (c *Clock) Close() error { return c.dev.Close(c.fd) }
