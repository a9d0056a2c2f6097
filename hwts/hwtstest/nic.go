// Package hwtstest is a NIC with hardware timestamps for tests on machines
// without one: it stands at hwts's system-call boundary (hwts.Sys and
// hwts.RxRewriter), asks the kernel for software stamps on the real socket
// and hands them on as the raw hardware stamps a NIC would have taken, in
// the time of a simulated PHC (package phctest). The PHC's offset and
// crystal error are the test's to choose, so a stamp used without the PHC
// conversion is visibly wrong.
package hwtstest

import (
	"encoding/binary"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/clock/hostclock"
	"github.com/meridiantime/meridian/clock/phc"
	"github.com/meridiantime/meridian/clock/phc/phctest"
	"github.com/meridiantime/meridian/hwts"
)

// NIC is one simulated interface with PHC index Index.
type NIC struct {
	PHC   *phctest.PHC
	Index int
}

// New returns a NIC whose PHC reads the host's raw clock + offsetNS and
// gains oscPPB.
func New(index int, offsetNS int64, oscPPB float64, seed uint64) *NIC {
	return &NIC{PHC: phctest.New(hostclock.MonoRawNS, offsetNS, oscPPB, seed), Index: index}
}

const (
	hwFlags = unix.SOF_TIMESTAMPING_TX_HARDWARE | unix.SOF_TIMESTAMPING_RX_HARDWARE | unix.SOF_TIMESTAMPING_RAW_HARDWARE
	swFlags = unix.SOF_TIMESTAMPING_TX_SOFTWARE | unix.SOF_TIMESTAMPING_RX_SOFTWARE | unix.SOF_TIMESTAMPING_SOFTWARE
)

// SetsockoptInt asks the kernel for software stamps where hardware ones
// were asked for.
func (n *NIC) SetsockoptInt(fd, level, opt, v int) error {
	if level == unix.SOL_SOCKET && opt == unix.SO_TIMESTAMPING && v&hwFlags != 0 {
		v = v&^hwFlags | swFlags
	}
	return unix.SetsockoptInt(fd, level, opt, v)
}

// TSInfo reports a NIC that stamps every packet in /dev/ptp<Index>.
func (n *NIC) TSInfo(string) (*unix.EthtoolTsInfo, error) {
	return &unix.EthtoolTsInfo{
		So_timestamping: hwFlags | swFlags,
		Phc_index:       int32(n.Index),
		Tx_types:        1 << unix.HWTSTAMP_TX_ON,
		Rx_filters:      1 << unix.HWTSTAMP_FILTER_ALL,
	}, nil
}

// SetHwTstamp accepts the configuration.
func (n *NIC) SetHwTstamp(string, *unix.HwTstampConfig) error { return nil }

// Recvmsg reads the real socket and turns the error queue's software
// transmit stamps into hardware ones.
func (n *NIC) Recvmsg(fd int, p, oob []byte, flags int) (int, int, int, error) {
	m, oobn, rf, _, err := unix.Recvmsg(fd, p, oob, flags)
	if err == nil {
		// Raw read before realtime: the stamp's raw instant comes out early,
		// as a transmit stamp may be.
		raw := hostclock.MonoRawNS()
		n.rewrite(oob[:oobn], raw, time.Now().UnixNano())
	}
	return m, oobn, rf, err
}

// RewriteRx turns a datagram's software receive stamp into a hardware one.
func (n *NIC) RewriteRx(oob []byte) {
	// Realtime before raw: the stamp's raw instant comes out late, as a
	// receive stamp may be.
	rt := time.Now().UnixNano()
	n.rewrite(oob, hostclock.MonoRawNS(), rt)
}

// rewrite replaces ts[0] (software, CLOCK_REALTIME) of every
// SCM_TIMESTAMPING message by ts[2] (raw hardware) in PHC time: the PHC's
// reading at the raw instant the software stamp was taken.
func (n *NIC) rewrite(oob []byte, rawNow, realtimeNow int64) {
	hwts.EachCmsg(oob, func(level, typ int32, d []byte) {
		if level != unix.SOL_SOCKET || typ != unix.SCM_TIMESTAMPING || len(d) < 48 {
			return
		}
		sw := int64(binary.NativeEndian.Uint64(d[0:]))*1e9 + int64(binary.NativeEndian.Uint64(d[8:]))
		if sw != 0 {
			hw := n.PHC.At(rawNow - (realtimeNow - sw))
			clear(d[0:16])
			binary.NativeEndian.PutUint64(d[32:], uint64(hw/1e9))
			binary.NativeEndian.PutUint64(d[40:], uint64(hw%1e9))
		}
	})
}

// Opener returns the hwts.Options.PHC function for this NIC: it measures
// the simulated PHC through a phc.Map that converts to the clock atRaw
// reads (its reading at a CLOCK_MONOTONIC_RAW instant).
func (n *NIC) Opener(atRaw func(raw int64) int64) func(int) (hwts.HardwareClock, error) {
	return func(index int) (hwts.HardwareClock, error) {
		if index != n.Index {
			return nil, fmt.Errorf("hwtstest: no /dev/ptp%d (the NIC's PHC is %d)", index, n.Index)
		}
		return phc.OpenMap(fmt.Sprintf("/dev/ptp%d", index), phc.MapOptions{Dev: n.PHC, Adj: n.PHC, AtRaw: atRaw})
	}
}

// RealtimeAtRaw is the host's CLOCK_REALTIME + offNS at a raw instant (for
// clocks that read the host clock). Each conversion brackets a realtime
// read between two raw reads and keeps the tightest of a few brackets: a
// single (realtime, raw) pair is off by however long the thread was
// preempted between its reads (tens of microseconds under -race on a busy
// machine), which would move a receive stamp early and break the bound the
// test checks, an error of the fake and not of the code under test.
func RealtimeAtRaw(offNS int64) func(raw int64) int64 {
	return func(raw int64) int64 {
		rt, mid := realtimeRawPair()
		return rt + offNS - (mid - raw)
	}
}

// realtimeRawPair returns a CLOCK_REALTIME reading and the raw instant it
// was taken at, within half the tightest of eight brackets.
func realtimeRawPair() (rt, raw int64) {
	best := int64(-1)
	for range 8 {
		r0 := hostclock.MonoRawNS()
		t := hostclock.RealtimeNS()
		r1 := hostclock.MonoRawNS()
		if gap := r1 - r0; best < 0 || gap < best {
			best, rt, raw = gap, t, r0+gap/2
		}
		if best < 2000 {
			break
		}
	}
	return rt, raw
}
