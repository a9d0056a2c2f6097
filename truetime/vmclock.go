package truetime

import (
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// VMClock (Linux include/uapi/linux/vmclock-abi.h): a page the hypervisor
// shares with the guest. Meridian reads only what signals a disruption:
//
//	offset  field
//	0       magic u32 0x4b4c4356 ("VCLK")
//	4       size u32
//	8       version u16
//	12      seq_count u32 (odd while the hypervisor updates the page)
//	16      disruption_marker u64 (changes on live migration)
//	24      flags u64 (bit 8: vm_generation_counter present)
//	104     vm_generation_counter u64 (changes on a snapshot restore)
const (
	vmclockMagic      = 0x4b4c4356
	vmclockSeqOff     = 12
	vmclockMarkerOff  = 16
	vmclockFlagsOff   = 24
	vmclockGenOff     = 104
	vmclockMinSize    = 112
	vmclockFlagGen    = 1 << 8
	vmclockMaxRetries = 1000
)

// vmClock is a read-only mapping of the VMClock page; a nil *vmClock (no
// device) reads marker 0.
type vmClock struct{ data []byte }

// openVMClock maps path ("" → /dev/vmclock0, "-" → none). A missing or
// unreadable device, or one with the wrong magic, gives nil: the check is
// then the boottime comparison alone.
func openVMClock(path string) *vmClock {
	if path == "-" {
		return nil
	}
	if path == "" {
		path = defaultVMClock
	}
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	data, err := unix.Mmap(int(f.Fd()), 0, os.Getpagesize(), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil
	}
	if *(*uint32)(unsafe.Pointer(&data[0])) != vmclockMagic {
		_ = unix.Munmap(data)
		return nil
	}
	return &vmClock{data: data}
}

func (v *vmClock) close() {
	if v != nil {
		_ = unix.Munmap(v.data)
	}
}

// marker folds the disruption marker and (when present) the VM generation
// counter into one non-zero word that changes when either changes; 0 when
// there is no device or the page never settles.
func (v *vmClock) marker() uint64 {
	if v == nil {
		return 0
	}
	seq := (*uint32)(unsafe.Pointer(&v.data[vmclockSeqOff]))
	for try := 0; try < vmclockMaxRetries; try++ {
		s1 := atomic.LoadUint32(seq)
		if s1&1 != 0 {
			continue
		}
		dm := atomic.LoadUint64((*uint64)(unsafe.Pointer(&v.data[vmclockMarkerOff])))
		flags := atomic.LoadUint64((*uint64)(unsafe.Pointer(&v.data[vmclockFlagsOff])))
		var gen uint64
		if flags&vmclockFlagGen != 0 && *(*uint32)(unsafe.Pointer(&v.data[4])) >= vmclockMinSize {
			gen = atomic.LoadUint64((*uint64)(unsafe.Pointer(&v.data[vmclockGenOff])))
		}
		if atomic.LoadUint32(seq) == s1 {
			return (dm*0x9e3779b97f4a7c15 ^ gen*0xc2b2ae3d27d4eb4f) | 1
		}
	}
	return 0
}
