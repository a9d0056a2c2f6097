// Package hwts turns on SO_TIMESTAMPING for a socket and reads the stamps:
// hardware (NIC) where the interface supports it, else kernel software
// stamps, else user-space stamps taken by the caller — and reports which one
// every stamp came from.
//
// RX stamps come from SCM_TIMESTAMPING control messages; TX stamps from the
// socket's error queue (MSG_ERRQUEUE), matched to the datagram by
// SOF_TIMESTAMPING_OPT_ID. A TX stamp that is late or never comes (common on
// real NICs under load) is waited for only briefly: the caller then keeps its
// user-space stamp.
//
// Every system call goes through Sys, so the hardware path is tested with a
// fake at that boundary (no NIC here has hardware stamping); the software
// path is tested on loopback and veth.
//
// Time domains: software stamps are CLOCK_REALTIME; hardware stamps are the
// NIC's PHC time. Socket.RxToClock and TxToClock convert both to the
// caller's clock: software stamps by their age, hardware stamps through a
// HardwareClock that measures the PHC against the host (package clock/phc),
// each widened on the side the bound tolerates.
package hwts

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Mode is the configured timestamping mode.
type Mode int

const (
	Auto Mode = iota
	Hardware
	Software
)

// ParseMode parses auto|hardware|software ("" is auto).
func ParseMode(s string) (Mode, error) {
	switch s {
	case "", "auto":
		return Auto, nil
	case "hardware":
		return Hardware, nil
	case "software":
		return Software, nil
	}
	return Auto, fmt.Errorf("hwts: unknown timestamping mode %q (want auto, hardware or software)", s)
}

// Source says where a stamp came from.
type Source int

const (
	SourceUser Source = iota
	SourceSoftware
	SourceHardware
)

func (s Source) String() string {
	return [...]string{"user", "software", "hardware"}[s]
}

// Stamp is one timestamp, ns in its source's time domain.
type Stamp struct {
	NS     int64
	Source Source
}

// Sys is the system-call boundary.
type Sys interface {
	SetsockoptInt(fd, level, opt, value int) error
	TSInfo(ifname string) (*unix.EthtoolTsInfo, error)
	SetHwTstamp(ifname string, cfg *unix.HwTstampConfig) error
	Recvmsg(fd int, p, oob []byte, flags int) (n, oobn, recvflags int, err error)
}

type realSys struct{}

func (realSys) SetsockoptInt(fd, level, opt, value int) error {
	return unix.SetsockoptInt(fd, level, opt, value)
}

func ioctlFD() (int, error) { return unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0) }

func (realSys) TSInfo(ifname string) (*unix.EthtoolTsInfo, error) {
	fd, err := ioctlFD()
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	return unix.IoctlGetEthtoolTsInfo(fd, ifname)
}

func (realSys) SetHwTstamp(ifname string, cfg *unix.HwTstampConfig) error {
	fd, err := ioctlFD()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.IoctlSetHwTstamp(fd, ifname, cfg)
}

func (realSys) Recvmsg(fd int, p, oob []byte, flags int) (int, int, int, error) {
	n, oobn, rf, _, err := unix.Recvmsg(fd, p, oob, flags)
	return n, oobn, rf, err
}

// RealSys returns the real system calls.
func RealSys() Sys { return realSys{} }

const (
	hwFlags = unix.SOF_TIMESTAMPING_TX_HARDWARE | unix.SOF_TIMESTAMPING_RX_HARDWARE | unix.SOF_TIMESTAMPING_RAW_HARDWARE
	swFlags = unix.SOF_TIMESTAMPING_TX_SOFTWARE | unix.SOF_TIMESTAMPING_RX_SOFTWARE | unix.SOF_TIMESTAMPING_SOFTWARE
	optBits = unix.SOF_TIMESTAMPING_OPT_ID | unix.SOF_TIMESTAMPING_OPT_TSONLY
)

// HardwareClock converts a NIC's hardware stamps (its PHC's time) to the
// caller's clock: receive stamps late but never early, transmit stamps
// early but never late, as the bound needs. *phc.Map implements it.
type HardwareClock interface {
	RxToClock(stampNS int64) (int64, bool)
	TxToClock(stampNS int64) (int64, bool)
}

// RxRewriter is implemented by a Sys that stands in for a NIC (tests with
// a simulated PHC): it rewrites the control data a datagram arrived with,
// as the kernel would have delivered it from that NIC.
type RxRewriter interface {
	RewriteRx(oob []byte)
}

// Options configure EnableWith.
type Options struct {
	Interface string // "" when unknown (e.g. a loopback client): software at best
	Mode      Mode
	Sys       Sys // nil: the real system calls
	// PHC opens the converter for the interface's PTP hardware clock
	// (/dev/ptp<index>, index from ethtool's ts_info). Nil, or an error:
	// hardware stamps are not used (Auto falls back to software; Hardware
	// fails).
	PHC func(index int) (HardwareClock, error)
}

// Socket is a socket with timestamping enabled.
type Socket struct {
	rc     syscall.RawConn
	sys    Sys
	chosen Source
	hw     HardwareClock
	nextID uint32
	buf    []byte
	oob    []byte
}

// ErrNoHardware is returned in Hardware mode when the interface cannot stamp.
var ErrNoHardware = errors.New("hwts: interface has no hardware timestamping")

func hwCapable(info *unix.EthtoolTsInfo) bool {
	return info.So_timestamping&hwFlags == hwFlags && info.Phc_index >= 0 &&
		info.Tx_types&(1<<unix.HWTSTAMP_TX_ON) != 0 &&
		info.Rx_filters&(1<<unix.HWTSTAMP_FILTER_ALL) != 0
}

// Enable is EnableWith without a PHC: hardware stamps are never chosen.
func Enable(rc syscall.RawConn, ifname string, mode Mode, sys Sys) (*Socket, error) {
	return EnableWith(rc, Options{Interface: ifname, Mode: mode, Sys: sys})
}

// EnableWith turns on the best timestamping mode o.Mode allows for a
// socket bound to o.Interface. Hardware stamps are chosen only when the
// NIC stamps every packet and its PHC can be opened (o.PHC) to convert
// them. In Auto mode it falls back hardware → software → user and never
// fails for lack of support; Hardware and Software modes fail with a
// clear error.
func EnableWith(rc syscall.RawConn, o Options) (*Socket, error) {
	sys, ifname, mode := o.Sys, o.Interface, o.Mode
	if sys == nil {
		sys = realSys{}
	}
	s := &Socket{rc: rc, sys: sys, chosen: SourceUser, buf: make([]byte, 256), oob: make([]byte, 512)}
	set := func(flags int) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = sys.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPING, flags)
		}); err != nil {
			return err
		}
		return serr
	}
	if mode != Software && ifname != "" {
		info, err := sys.TSInfo(ifname)
		var hw HardwareClock
		var phcErr error
		if err == nil && hwCapable(info) {
			if o.PHC == nil {
				phcErr = errors.New("no PHC converter configured")
			} else {
				hw, phcErr = o.PHC(int(info.Phc_index))
			}
		}
		switch {
		case err == nil && hwCapable(info) && phcErr != nil:
			if mode == Hardware {
				return nil, fmt.Errorf("hwts: %s stamps in /dev/ptp%d, which cannot be read: %w", ifname, info.Phc_index, phcErr)
			}
		case err == nil && hwCapable(info):
			s.hw = hw
			cfg := unix.HwTstampConfig{Tx_type: unix.HWTSTAMP_TX_ON, Rx_filter: unix.HWTSTAMP_FILTER_ALL}
			if err := sys.SetHwTstamp(ifname, &cfg); err != nil {
				if mode == Hardware {
					return nil, fmt.Errorf("hwts: enable hardware stamps on %s: %w", ifname, err)
				}
			} else if err := set(hwFlags | optBits); err == nil {
				s.chosen = SourceHardware
				return s, nil
			} else if mode == Hardware {
				return nil, fmt.Errorf("hwts: SO_TIMESTAMPING (hardware) on %s: %w", ifname, err)
			}
		case mode == Hardware && err != nil:
			return nil, fmt.Errorf("hwts: query %s: %w", ifname, err)
		case mode == Hardware:
			return nil, fmt.Errorf("%w: %s (so_timestamping %#x)", ErrNoHardware, ifname, info.So_timestamping)
		}
	} else if mode == Hardware {
		return nil, fmt.Errorf("%w: no interface given", ErrNoHardware)
	}
	if err := set(swFlags | optBits); err != nil {
		if mode == Software {
			return nil, fmt.Errorf("hwts: SO_TIMESTAMPING (software): %w", err)
		}
		return s, nil // user-space stamps
	}
	s.chosen = SourceSoftware
	return s, nil
}

// Chosen is the best stamp source the socket was set up for.
func (s *Socket) Chosen() Source { return s.chosen }

// RxToClock converts a datagram's receive stamp (in its control data oob)
// to the caller's clock: a software stamp by its age, with realtimeNS read
// BEFORE nowNS (the clock's reading) after the datagram arrived
// (ClockPair); a hardware stamp through the PHC. Without a usable stamp it
// returns nowNS. Every result is late, never early.
func (s *Socket) RxToClock(oob []byte, realtimeNS, nowNS int64) (int64, Source) {
	if rw, ok := s.sys.(RxRewriter); ok {
		rw.RewriteRx(oob)
	}
	st, ok := ParseRx(oob)
	switch {
	case !ok:
	case st.Source == SourceSoftware:
		if t, ok := RxToClock(realtimeNS, nowNS, st.NS); ok {
			return t, SourceSoftware
		}
	case st.Source == SourceHardware && s.hw != nil:
		if t, ok := s.hw.RxToClock(st.NS); ok && t <= nowNS {
			return t, SourceHardware
		}
	}
	return nowNS, SourceUser
}

// TxToClock waits up to wait for the transmit stamp of datagram id and
// converts it to the clock now reads: a software stamp by its age, a
// hardware stamp through the PHC; early, never late. ok is false when no
// stamp came in time or it could not be converted.
func (s *Socket) TxToClock(id uint32, wait time.Duration, now func() int64) (int64, Source, bool) {
	if s.chosen == SourceUser {
		return 0, SourceUser, false
	}
	st, ok := s.TxStamp(id, wait)
	if !ok || st.Source != s.chosen {
		return 0, SourceUser, false
	}
	if st.Source == SourceHardware {
		if s.hw == nil {
			return 0, SourceUser, false
		}
		t, ok := s.hw.TxToClock(st.NS)
		return t, SourceHardware, ok
	}
	_, n, after := ClockPair(now)
	t, ok := TxToClock(n, after, st.NS)
	return t, SourceSoftware, ok
}

// NextTxID returns the OPT_ID the kernel will give the next datagram sent;
// call it once per send, in send order.
func (s *Socket) NextTxID() uint32 {
	id := s.nextID
	s.nextID++
	return id
}

const hdr = unix.SizeofCmsghdr

// EachCmsg calls f with every control message in oob (level, type and
// its data, a slice of oob), without allocating.
func EachCmsg(oob []byte, f func(level, typ int32, data []byte)) {
	for len(oob) >= hdr {
		l := int(binary.NativeEndian.Uint64(oob[0:8]))
		if l < hdr || l > len(oob) {
			return
		}
		f(int32(binary.NativeEndian.Uint32(oob[8:12])), int32(binary.NativeEndian.Uint32(oob[12:16])), oob[hdr:l])
		step := (l + 7) &^ 7
		if step > len(oob) {
			return
		}
		oob = oob[step:]
	}
}

// stampFrom decodes struct scm_timestamping {timespec ts[3]}: ts[0] is the
// software stamp, ts[2] the raw hardware stamp.
func stampFrom(d []byte) (Stamp, bool) {
	if len(d) < 48 {
		return Stamp{}, false
	}
	ts := func(i int) int64 {
		sec := int64(binary.NativeEndian.Uint64(d[16*i:]))
		nsec := int64(binary.NativeEndian.Uint64(d[16*i+8:]))
		return sec*1e9 + nsec
	}
	if hw := ts(2); hw != 0 {
		return Stamp{NS: hw, Source: SourceHardware}, true
	}
	if sw := ts(0); sw != 0 {
		return Stamp{NS: sw, Source: SourceSoftware}, true
	}
	return Stamp{}, false
}

// ParseRx extracts the receive stamp from a datagram's control data.
func ParseRx(oob []byte) (Stamp, bool) {
	var st Stamp
	var ok bool
	EachCmsg(oob, func(level, typ int32, d []byte) {
		if level == unix.SOL_SOCKET && typ == unix.SCM_TIMESTAMPING && !ok {
			st, ok = stampFrom(d)
		}
	})
	return st, ok
}

// parseTx extracts (stamp, OPT_ID) from an error-queue message.
func parseTx(oob []byte) (Stamp, uint32, bool) {
	var st Stamp
	var id uint32
	var haveStamp, haveID bool
	EachCmsg(oob, func(level, typ int32, d []byte) {
		switch {
		case level == unix.SOL_SOCKET && typ == unix.SCM_TIMESTAMPING:
			st, haveStamp = stampFrom(d)
		case (level == unix.SOL_IP && typ == unix.IP_RECVERR) || (level == unix.SOL_IPV6 && typ == unix.IPV6_RECVERR):
			if len(d) >= 16 && d[4] == unix.SO_EE_ORIGIN_TIMESTAMPING {
				id, haveID = binary.NativeEndian.Uint32(d[12:16]), true
			}
		}
	})
	return st, id, haveStamp && haveID
}

// TxStamp waits up to wait for the transmit stamp of datagram id, polling
// the error queue without blocking. Stamps of earlier datagrams are
// discarded. ok is false when the stamp did not come in time.
func (s *Socket) TxStamp(id uint32, wait time.Duration) (Stamp, bool) {
	deadline := time.Now().Add(wait)
	for {
		var oobn int
		var rerr error
		if err := s.rc.Control(func(fd uintptr) {
			_, oobn, _, rerr = s.sys.Recvmsg(int(fd), s.buf, s.oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		}); err != nil {
			return Stamp{}, false
		}
		if rerr == nil {
			if st, got, ok := parseTx(s.oob[:oobn]); ok {
				if got == id {
					return st, true
				}
				if int32(got-id) > 0 {
					return Stamp{}, false // a later datagram's stamp: ours is lost
				}
				continue // an older datagram's late stamp
			}
			continue
		}
		if !errors.Is(rerr, unix.EAGAIN) || time.Now().After(deadline) {
			return Stamp{}, false
		}
		time.Sleep(20 * time.Microsecond)
	}
}

// MaxPairGapNS is the widest gap between the two CLOCK_REALTIME reads
// around another clock's reading that ClockPair accepts: wider means the
// thread was held up in between, which would bias a converted stamp by up
// to the gap.
const MaxPairGapNS = 10_000

// ClockPair reads CLOCK_REALTIME, now(), CLOCK_REALTIME again, retrying a
// few times while the two realtime reads are more than MaxPairGapNS apart
// (then the last try stands). Software stamps are CLOCK_REALTIME; a stamp is
// carried to now's clock by its age: a receive stamp with (before, n), so
// it may be late but never early, a transmit stamp with (n, after), so it
// may be early but never late.
func ClockPair(now func() int64) (before, n, after int64) {
	for range 4 {
		before = time.Now().UnixNano()
		n = now()
		after = time.Now().UnixNano()
		if after-before <= MaxPairGapNS {
			break
		}
	}
	return before, n, after
}

// maxStampAgeNS is the oldest software stamp converted: an older one (or
// one from the future) means CLOCK_REALTIME was stepped in between.
const maxStampAgeNS = int64(time.Second)

// RxToClock converts a software receive stamp (CLOCK_REALTIME) to another
// clock by its age: realtimeNS must be read BEFORE nowNS (that clock's
// reading), so a delay between the reads makes the result late, never
// early — what a receive stamp may be. ok is false for an age outside
// [0, 1 s] (a stepped host clock): keep the user-space reading then.
func RxToClock(realtimeNS, nowNS, stampNS int64) (int64, bool) {
	age := realtimeNS - stampNS
	if age < 0 || age > maxStampAgeNS {
		return nowNS, false
	}
	return nowNS - age, true
}

// TxToClock is the transmit-side mirror of RxToClock: nowNS must be read
// BEFORE realtimeNS, so the result may be early, never late.
func TxToClock(nowNS, realtimeNS, stampNS int64) (int64, bool) {
	return RxToClock(realtimeNS, nowNS, stampNS)
}
