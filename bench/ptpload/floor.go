package ptpload

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/internal/mmsg"
)

// FloorUsage is Floor's argument list.
const FloorUsage = "ADDR EVENT_PORT GENERAL_PORT CLIENT_EVENT_PORT CLIENT_GENERAL_PORT"

// Floor is the kernel's floor for a PTP grandmaster's packet load: bound
// to ADDR's two ports, it answers Gen's clients with the datagrams a
// grandmaster sends — a grant for each request TLV, and per Delay_Req a
// Sync, a Follow_Up and a Delay_Resp — from recvmmsg/sendmmsg batches of
// 64, with no PTP logic, no clock reads and no transmit stamps. Its CPU
// time per client-second is what the kernel alone costs on this path.
// args are FloorUsage's; it returns only on bad arguments or a failed
// bind, and serves until the process ends.
func Floor(args []string) error {
	if len(args) != 5 {
		return fmt.Errorf("ptpload: floor: %d arguments, want 5: %s", len(args), FloorUsage)
	}
	a, err := netip.ParseAddr(args[0])
	if err != nil || !a.Is4() {
		return fmt.Errorf("ptpload: floor: ADDR %q: want an IPv4 address", args[0])
	}
	var p [4]int
	for i, name := range []string{"EVENT_PORT", "GENERAL_PORT", "CLIENT_EVENT_PORT", "CLIENT_GENERAL_PORT"} {
		v, err := strconv.Atoi(args[1+i])
		if err != nil || v < 1 || v > 65535 {
			return fmt.Errorf("ptpload: floor: %s %q: want a port 1…65535", name, args[1+i])
		}
		p[i] = v
	}
	ev, err := floorListen(a, p[0])
	if err != nil {
		return err
	}
	gen, err := floorListen(a, p[1])
	if err != nil {
		unix.Close(ev)
		return err
	}
	go floorServe(gen, gen, p[3], p[2], true)
	floorServe(ev, gen, p[3], p[2], false)
	return nil
}

// floorMmsg is a blocking recvmmsg or sendmmsg (mmsg never blocks).
func floorMmsg(trap uintptr, fd int, h []mmsg.Hdr, flags int) (int, unix.Errno) {
	n, _, e := unix.Syscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&h[0])), uintptr(len(h)), uintptr(flags), 0, 0)
	return int(n), e
}

func floorListen(a netip.Addr, port int) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		return -1, fmt.Errorf("ptpload: floor: socket: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: a.As4(), Port: port}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("ptpload: floor: bind %v:%d: %w", a, port, err)
	}
	return fd, nil
}

// floorServe receives on in; general requests get a grant back on out, event
// requests (Delay_Req) a Sync on the event socket and a Follow_Up and a
// Delay_Resp on out.
func floorServe(in, out, clientGen, clientEv int, general bool) {
	var rh [batch]mmsg.Hdr
	var riov [batch]unix.Iovec
	var rbuf [batch][256]byte
	var from [batch]unix.RawSockaddrInet4
	var sh [3 * batch]mmsg.Hdr
	var siov [3 * batch]unix.Iovec
	var sbuf [3 * batch][128]byte
	var to [3 * batch]unix.RawSockaddrInet4
	for i := range rh {
		riov[i].Base, riov[i].Len = &rbuf[i][0], 256
		rh[i].Msghdr.Iov, rh[i].Msghdr.Iovlen = &riov[i], 1
		rh[i].Msghdr.Name, rh[i].Msghdr.Namelen = (*byte)(unsafe.Pointer(&from[i])), unix.SizeofSockaddrInet4
	}
	for i := range sh {
		siov[i].Base = &sbuf[i][0]
		sh[i].Msghdr.Iov, sh[i].Msghdr.Iovlen = &siov[i], 1
		sh[i].Msghdr.Name, sh[i].Msghdr.Namelen = (*byte)(unsafe.Pointer(&to[i])), unix.SizeofSockaddrInet4
	}
	port := func(sa *unix.RawSockaddrInet4, v int) {
		b := (*[2]byte)(unsafe.Pointer(&sa.Port))
		b[0], b[1] = byte(v>>8), byte(v)
	}
	for {
		for i := range rh {
			rh[i].Msghdr.Namelen = unix.SizeofSockaddrInet4
		}
		n, e := floorMmsg(unix.SYS_RECVMMSG, in, rh[:], unix.MSG_WAITFORONE)
		if e != 0 {
			continue
		}
		var evN, genN int
		for i := range n {
			m := rbuf[i][:rh[i].Len]
			if general {
				if len(m) < 44 {
					continue
				}
				// A grant per request TLV (type 4, length 6) → type 5, length 8.
				j := genN
				b := sbuf[j][:]
				copy(b, m[:44])
				k := 44
				for off := 44; off+10 <= len(m) && k+12 <= len(b); off += 10 {
					binary.BigEndian.PutUint16(b[k:], 5)
					binary.BigEndian.PutUint16(b[k+2:], 8)
					b[k+4], b[k+5] = m[off+4], 0
					copy(b[k+6:k+10], m[off+6:off+10])
					b[k+10], b[k+11] = 0, 0
					k += 12
				}
				binary.BigEndian.PutUint16(b[2:], uint16(k))
				siov[j].SetLen(k)
				to[j] = from[i]
				port(&to[j], clientGen)
				genN++
				continue
			}
			// Delay_Req: Sync (event), Follow_Up and Delay_Resp (general).
			for t, typ := range []byte{0x0, 0x8, 0x9} {
				j := 3*i + t
				sbuf[j][0] = typ
				siov[j].SetLen(44)
				to[j] = from[i]
				if t == 0 {
					port(&to[j], clientEv)
				} else {
					port(&to[j], clientGen)
				}
			}
			evN++
		}
		if general {
			floorSend(out, sh[:genN])
			continue
		}
		// Syncs on the event socket, then the general messages.
		var evh, genh [2 * batch]mmsg.Hdr
		var ne, ng int
		for i := range evN {
			evh[ne] = sh[3*i]
			ne++
			genh[ng], genh[ng+1] = sh[3*i+1], sh[3*i+2]
			ng += 2
		}
		floorSend(in, evh[:ne])
		floorSend(out, genh[:ng])
	}
}

func floorSend(fd int, h []mmsg.Hdr) {
	for len(h) > 0 {
		n, e := floorMmsg(unix.SYS_SENDMMSG, fd, h, 0)
		if e != 0 || n <= 0 {
			return
		}
		h = h[n:]
	}
}
