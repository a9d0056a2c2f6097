// Command ptpfloor is the kernel's floor for a PTP grandmaster's packet
// load, for BenchmarkPTPGrandmasterLoad: it answers the benchmark's
// clients with the same datagrams a grandmaster sends — a grant for each
// request, and per Delay_Req a Sync, a Follow_Up and a Delay_Resp — with
// recvmmsg/sendmmsg batches of 64 and no PTP logic, no clock reads and no
// transmit stamps. Its CPU time per client-second is what the kernel alone
// costs on this path.
//
//	ptpfloor ADDR EVENT_PORT GENERAL_PORT CLIENT_EVENT_PORT CLIENT_GENERAL_PORT
package main

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

const batch = 64

type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

func mmsg(trap uintptr, fd int, h []mmsghdr, flags int) (int, unix.Errno) {
	n, _, e := unix.Syscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&h[0])), uintptr(len(h)), uintptr(flags), 0, 0)
	return int(n), e
}

func listen(a netip.Addr, port int) int {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		panic(err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: a.As4(), Port: port}); err != nil {
		panic(err)
	}
	return fd
}

func main() {
	if len(os.Args) != 6 {
		fmt.Fprintln(os.Stderr, "usage: ptpfloor ADDR EVENT_PORT GENERAL_PORT CLIENT_EVENT_PORT CLIENT_GENERAL_PORT")
		os.Exit(2)
	}
	a := netip.MustParseAddr(os.Args[1])
	p := make([]int, 4)
	for i := range p {
		p[i], _ = strconv.Atoi(os.Args[2+i])
	}
	ev, gen := listen(a, p[0]), listen(a, p[1])
	go serve(gen, gen, p[3], p[2], true)
	serve(ev, gen, p[3], p[2], false)
}

// serve receives on in; general requests get a grant back on out, event
// requests (Delay_Req) a Sync on the event socket and a Follow_Up and a
// Delay_Resp on out.
func serve(in, out, clientGen, clientEv int, general bool) {
	var rh [batch]mmsghdr
	var riov [batch]unix.Iovec
	var rbuf [batch][256]byte
	var from [batch]unix.RawSockaddrInet4
	var sh [3 * batch]mmsghdr
	var siov [3 * batch]unix.Iovec
	var sbuf [3 * batch][128]byte
	var to [3 * batch]unix.RawSockaddrInet4
	for i := range rh {
		riov[i].Base, riov[i].Len = &rbuf[i][0], 256
		rh[i].hdr.Iov, rh[i].hdr.Iovlen = &riov[i], 1
		rh[i].hdr.Name, rh[i].hdr.Namelen = (*byte)(unsafe.Pointer(&from[i])), unix.SizeofSockaddrInet4
	}
	for i := range sh {
		siov[i].Base = &sbuf[i][0]
		sh[i].hdr.Iov, sh[i].hdr.Iovlen = &siov[i], 1
		sh[i].hdr.Name, sh[i].hdr.Namelen = (*byte)(unsafe.Pointer(&to[i])), unix.SizeofSockaddrInet4
	}
	port := func(sa *unix.RawSockaddrInet4, v int) {
		b := (*[2]byte)(unsafe.Pointer(&sa.Port))
		b[0], b[1] = byte(v>>8), byte(v)
	}
	for {
		for i := range rh {
			rh[i].hdr.Namelen = unix.SizeofSockaddrInet4
		}
		n, e := mmsg(unix.SYS_RECVMMSG, in, rh[:], unix.MSG_WAITFORONE)
		if e != 0 {
			continue
		}
		var evN, genN int
		for i := range n {
			m := rbuf[i][:rh[i].n]
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
			send(out, sh[:genN])
			continue
		}
		// Syncs on the event socket, then the general messages.
		var evh, genh [2 * batch]mmsghdr
		var ne, ng int
		for i := range evN {
			evh[ne] = sh[3*i]
			ne++
			genh[ng], genh[ng+1] = sh[3*i+1], sh[3*i+2]
			ng += 2
		}
		send(in, evh[:ne])
		send(out, genh[:ng])
	}
}

func send(fd int, h []mmsghdr) {
	for len(h) > 0 {
		n, e := mmsg(unix.SYS_SENDMMSG, fd, h, 0)
		if e != 0 || n <= 0 {
			return
		}
		h = h[n:]
	}
}
