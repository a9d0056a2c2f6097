package impair

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// OpenTAP creates the TAP device name (IFF_TAP|IFF_NO_PI: one Ethernet
// frame per read and write, no packet-info header) and returns its
// descriptor, non-blocking so that Close interrupts a read. The device
// lives as long as the descriptor: closing it deletes the device, in
// whichever namespace it was moved to.
func OpenTAP(name string) (*os.File, error) {
	if len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("impair: tap name %q: longer than %d bytes", name, unix.IFNAMSIZ-1)
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("impair: open /dev/net/tun for %s: %w", name, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("impair: tap name %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("impair: TUNSETIFF %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "tap:"+name), nil
}
