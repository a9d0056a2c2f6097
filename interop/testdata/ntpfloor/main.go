// Command ntpfloor is the socket API's floor for an NTP server's packet
// load, for `meridian-bench ntp-server`: it answers each NTP client request
// with a well-formed mode-4 reply (stratum 1, the request's transmit
// timestamp as origin, one CLOCK_REALTIME read per batch as receive and
// transmit timestamps) using blocking recvmmsg/sendmmsg batches of 64 on
// one socket from one locked thread — no rate limit, no client log, no
// kernel timestamps, no error bound. Its replies per CPU-second are what
// the kernel alone costs on this path: the limit meridiand is measured
// against. It is a benchmark fixture, never a time server: its time is
// this host's clock read once per batch, and it claims a synchronization it
// does not have. It binds loopback or private addresses only.
//
// With --rx-stamps it also asks the kernel for a software receive stamp of
// every datagram (SO_TIMESTAMPNS, as meridiand's server does) and takes
// each one with its datagram, without using it: the floor of a server whose
// receive timestamps come from the kernel, which is what the replies of a
// server that is not allowed wrong timestamps cost.
//
//	ntpfloor [--rx-stamps] ADDR:PORT
package main

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const batch = 64

type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// mmsg makes the call without telling the Go runtime (RawSyscall6): the
// one goroutine may block in recvmmsg holding the only P, and no runtime
// thread is woken to take it over — what a C responder would cost.
func mmsg(trap uintptr, fd int, h []mmsghdr, flags int) (int, unix.Errno) {
	n, _, e := unix.RawSyscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&h[0])), uintptr(len(h)), uintptr(flags), 0, 0)
	return int(n), e
}

func main() {
	args := os.Args[1:]
	rxStamps := len(args) == 2 && args[0] == "--rx-stamps"
	if rxStamps {
		args = args[1:]
	}
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: ntpfloor [--rx-stamps] ADDR:PORT")
		os.Exit(2)
	}
	ap, err := netip.ParseAddrPort(args[0])
	if err != nil || !ap.Addr().Is4() || !(ap.Addr().IsLoopback() || ap.Addr().IsPrivate()) {
		fmt.Fprintf(os.Stderr, "ntpfloor: %q: want an IPv4 loopback or private ADDR:PORT (a benchmark fixture, never a server)\n", args[0])
		os.Exit(2)
	}
	runtime.GOMAXPROCS(1)
	runtime.LockOSThread()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
		if rxStamps {
			err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
		}
	}
	if err == nil {
		err = unix.Bind(fd, &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ntpfloor:", err)
		os.Exit(1)
	}
	serve(fd, rxStamps)
}

// ntpTime converts Unix nanoseconds to a 64-bit NTP timestamp.
func ntpTime(unixNS int64) uint64 {
	sec := uint64(unixNS/1e9) + 2_208_988_800
	return sec<<32 | (uint64(unixNS%1e9)<<32)/1e9
}

func serve(fd int, rxStamps bool) {
	var (
		oob  [batch][128]byte
		rh   [batch]mmsghdr
		sh   [batch]mmsghdr
		riov [batch]unix.Iovec
		siov [batch]unix.Iovec
		rbuf [batch][512]byte
		sbuf [batch][48]byte
		from [batch]unix.RawSockaddrInet4
	)
	for i := range rh {
		riov[i].Base = &rbuf[i][0]
		riov[i].SetLen(len(rbuf[i]))
		rh[i].hdr.Iov, rh[i].hdr.Iovlen = &riov[i], 1
		rh[i].hdr.Name = (*byte)(unsafe.Pointer(&from[i]))
		if rxStamps {
			rh[i].hdr.Control = &oob[i][0]
		}
		siov[i].Base = &sbuf[i][0]
		siov[i].SetLen(48)
		sh[i].hdr.Iov, sh[i].hdr.Iovlen = &siov[i], 1
		sbuf[i][1], sbuf[i][3] = 1, 0xec // stratum 1, precision 2^-20
		copy(sbuf[i][12:16], "LOCL")
	}
	for {
		for i := range rh {
			rh[i].hdr.Namelen = unix.SizeofSockaddrInet4
			if rxStamps {
				rh[i].hdr.SetControllen(len(oob[i]))
			}
		}
		n, e := mmsg(unix.SYS_RECVMMSG, fd, rh[:], unix.MSG_WAITFORONE)
		if e != 0 || n <= 0 {
			continue
		}
		now := ntpTime(time.Now().UnixNano())
		k := 0
		for i := range n {
			req := rbuf[i][:rh[i].n]
			if len(req) < 48 || req[0]&7 != 3 || from[i].Port == 0 {
				continue // not a client request
			}
			r := &sbuf[k]
			r[0] = req[0]&0x38 | 4 // LI 0, the request's version, mode 4
			r[2] = req[2]          // poll
			binary.BigEndian.PutUint64(r[16:], now)
			copy(r[24:32], req[40:48]) // origin = the request's transmit
			binary.BigEndian.PutUint64(r[32:], now)
			binary.BigEndian.PutUint64(r[40:], now)
			sh[k].hdr.Name, sh[k].hdr.Namelen = rh[i].hdr.Name, rh[i].hdr.Namelen
			k++
		}
		for off := 0; off < k; {
			m, e := mmsg(unix.SYS_SENDMMSG, fd, sh[off:k], 0)
			if e != 0 {
				off++ // skip the entry the kernel refused
				continue
			}
			off += m
		}
	}
}
