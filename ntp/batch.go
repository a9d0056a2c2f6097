package ntp

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/internal/mmsg"
)

// Batched server I/O: recvmmsg/sendmmsg through the socket's RawConn, so
// one wake-up and two system calls serve up to batchSize requests, with
// every buffer allocated once per worker (the loop does not allocate).

const batchSize = 32

type batchIO struct {
	rx, tx   [batchSize]mmsg.Hdr
	names    [batchSize]unix.RawSockaddrInet6
	rxIov    [batchSize]unix.Iovec
	txIov    [batchSize]unix.Iovec
	bufs     [batchSize][1500]byte
	resps    [batchSize][headerLen]byte
	oobs     [batchSize][oobLen]byte
	n, nTx   int
	errno    syscall.Errno
	recvFunc func(fd uintptr) bool
	sendFunc func(fd uintptr) bool
}

func newBatchIO() *batchIO {
	b := &batchIO{}
	for i := range b.rx {
		b.rxIov[i].Base = &b.bufs[i][0]
		b.rxIov[i].SetLen(len(b.bufs[i]))
		b.rx[i].Msghdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		b.rx[i].Msghdr.Iov = &b.rxIov[i]
		b.rx[i].Msghdr.Iovlen = 1
		b.rx[i].Msghdr.Control = &b.oobs[i][0]
	}
	b.recvFunc = func(fd uintptr) bool {
		for i := range b.rx {
			b.rx[i].Msghdr.Namelen = unix.SizeofSockaddrInet6
			b.rx[i].Msghdr.SetControllen(oobLen)
		}
		n, e := mmsg.Recv(fd, b.rx[:], 0)
		if e == unix.EAGAIN {
			return false // wait for readability
		}
		b.n, b.errno = n, e
		return true
	}
	b.sendFunc = func(fd uintptr) bool {
		sent := 0
		for sent < b.nTx {
			n, e := mmsg.Send(fd, b.tx[sent:b.nTx], 0)
			if e == unix.EAGAIN {
				return false
			}
			if e != 0 {
				b.errno = e
				return true
			}
			sent += n
		}
		b.errno = 0
		return true
	}
	return b
}

// addrOf decodes the sender of message i without allocating.
func (b *batchIO) addrOf(i int) netip.Addr {
	sa := &b.names[i]
	switch sa.Family {
	case unix.AF_INET:
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrFrom4(s4.Addr)
	case unix.AF_INET6:
		return netip.AddrFrom16(sa.Addr).Unmap()
	}
	return netip.Addr{}
}

// batchWorker serves one socket with recvmmsg/sendmmsg.
func (s *Server) batchWorker(c *net.UDPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		s.worker(c)
		return
	}
	lim := newLimiter(s.limit, s.seed)
	b := newBatchIO()
	for {
		if err := rc.Read(b.recvFunc); err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Warn("ntp server read", "err", err)
			}
			return
		}
		if b.errno != 0 {
			continue // e.g. ECONNREFUSED from an ICMP error: nothing to serve
		}
		realtime := time.Now().UnixNano() // before the clock read: see rxAt
		now := s.ts.LocalNS()
		if iv, err := s.ts.Now(); err == nil {
			now = iv.MidNS()
		}
		b.nTx = 0
		for i := 0; i < b.n; i++ {
			m := &b.rx[i]
			rxNS := rxAt(realtime, now, b.oobs[i][:m.Msghdr.Controllen])
			rl, _ := s.handle(lim, b.bufs[i][:m.Len], b.resps[i][:], rxNS, b.addrOf(i))
			if rl == 0 {
				continue
			}
			t := &b.tx[b.nTx]
			b.txIov[b.nTx].Base = &b.resps[i][0]
			b.txIov[b.nTx].SetLen(rl)
			t.Msghdr.Name = m.Msghdr.Name
			t.Msghdr.Namelen = m.Msghdr.Namelen
			t.Msghdr.Iov = &b.txIov[b.nTx]
			t.Msghdr.Iovlen = 1
			b.nTx++
		}
		if b.nTx == 0 {
			continue
		}
		if err := rc.Write(b.sendFunc); err != nil {
			return
		}
		if b.errno != 0 {
			s.writeErrs.Add(uint64(b.nTx))
		}
	}
}
