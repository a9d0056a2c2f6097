package ptp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/hwts"
	"github.com/meridiantime/meridian/ptp/engine"
)

// Standard PTP ports (1588 Annex C): ptp4l always sends to these.
const (
	EventPort   = 319
	GeneralPort = 320
)

// DefaultTxTimeout is how long a transmit stamp is waited for. Real NICs
// take up to hundreds of ms under load; software stamps on veth take µs.
const DefaultTxTimeout = 10 * time.Millisecond

// socketBuffer is the receive and send buffer asked for each socket (a
// variable for the test that shrinks it).
var socketBuffer = 4 << 20

// stampGeneral is a test-only knob (negative control): timestamp the
// general sockets too, as this shell first did.
var stampGeneral = false

// oobLen fits one SCM_TIMESTAMPING control message (3 timespecs) and more.
const oobLen = 256

// listenUDP opens a UDP socket on addr with SO_REUSEPORT (so workers can
// share the port) and, for an event socket, timestamping as mode allows.
//
// General sockets get no timestamping: general messages need no stamps,
// and every send on a socket with TX stamping queues a stamp on its error
// queue, which counts against the receive buffer — unread, those stamps
// would fill it and the socket would drop every datagram it receives.
func listenUDP(addr netip.AddrPort, stamping hwts.Options, event bool) (*net.UDPConn, *hwts.Socket, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	network := "udp4"
	if addr.Addr().Is6() && !addr.Addr().Is4In6() {
		network = "udp6"
	}
	pc, err := lc.ListenPacket(context.Background(), network, addr.String())
	if err != nil {
		return nil, nil, fmt.Errorf("ptp: listen %s: %w", addr, err)
	}
	conn := pc.(*net.UDPConn)
	// Room for bursts (a grandmaster's clients renew and send Delay_Reqs
	// together); the kernel caps it at net.core.rmem_max.
	_ = conn.SetReadBuffer(socketBuffer)
	_ = conn.SetWriteBuffer(socketBuffer)
	if !event && !stampGeneral {
		return conn, nil, nil
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	st, err := hwts.EnableWith(rc, stamping)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("ptp: timestamping on %s: %w", addr, err)
	}
	return conn, st, nil
}

// rxNS is the receive time of a datagram on the clock's scale: the
// kernel's or NIC's stamp converted (st.RxToClock), else the user-space
// reading; both read after the datagram arrived: late, never early. A
// socket without timestamping (st nil) has only the user-space reading.
func rxNS(st *hwts.Socket, oob []byte, realtimeNS, nowNS int64) (int64, hwts.Source) {
	if st == nil {
		return nowNS, hwts.SourceUser
	}
	return st.RxToClock(oob, realtimeNS, nowNS)
}

// socketDrops is how many datagrams conn's socket has dropped since it
// opened, its receive buffer full (SO_MEMINFO's SK_MEMINFO_DROPS; one
// getsockopt). SO_RXQ_OVFL would carry it with each datagram, but kernels
// as recent as 6.18 do not attach it to UDP datagrams.
func socketDrops(conn *net.UDPConn) (uint32, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return 0, err
	}
	var info [unix.SK_MEMINFO_DROPS + 1]uint32
	var serr error
	if err := rc.Control(func(fd uintptr) {
		l := uint32(unsafe.Sizeof(info))
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&l)), 0)
		if e != 0 {
			serr = e
		} else if l < uint32(unsafe.Sizeof(info)) {
			serr = fmt.Errorf("SO_MEMINFO: %d bytes, want %d", l, unsafe.Sizeof(info))
		}
	}); err != nil {
		return 0, err
	}
	return info[unix.SK_MEMINFO_DROPS], serr
}

// udp6Pad appends the two octets 1588 Annex E adds to a message over
// UDPv6 (so a checksum-neutral edit of the PDU stays possible); receivers
// read messageLength and ignore them. d aliases an engine buffer of
// MaxDatagram bytes, which has room.
func udp6Pad(d []byte, v6 bool) []byte {
	if !v6 {
		return d
	}
	return append(d, 0, 0)
}

// peerOf names a client by its IP (the engine's Peer); the port is not
// part of it: a client's event and general messages come from two ports.
func peerOf(a netip.Addr) engine.Peer {
	return engine.Peer{IP: a.Unmap().As16()}
}

// addrOf is the IP of a Peer, IPv4 when it is one.
func addrOf(p engine.Peer) netip.Addr { return netip.AddrFrom16(p.IP).Unmap() }

// skfNetOff makes a classic BPF load relative to the network header.
const skfNetOff = -0x100000

// steerByAddress attaches to conn's SO_REUSEPORT group a classic BPF
// program that picks the group's socket number (source address mod n) for
// every datagram. Given to both the event and the general group, it sends
// a client's Delay_Reqs (from its port 319) and its signaling (from 320)
// to the same worker, the one holding its grants; the kernel's own hash
// of the 4-tuple would split them.
func steerByAddress(conn *net.UDPConn, n int, v6 bool) error {
	off := int32(skfNetOff + 12) // IPv4 source address
	if v6 {
		off = skfNetOff + 20 // the last 32 bits of the IPv6 source address
	}
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: uint32(off)},
		{Code: unix.BPF_ALU | unix.BPF_MOD | unix.BPF_K, K: uint32(n)},
		{Code: unix.BPF_RET | unix.BPF_A},
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF,
			&unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]})
	}); err != nil {
		return err
	}
	return serr
}
