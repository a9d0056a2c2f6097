package ptp

import (
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/internal/mmsg"
)

// batchMax is how many datagrams one sendmmsg(2) carries.
const batchMax = 64

// batchSender sends a worker's datagrams for one socket with sendmmsg:
// one system call per batchMax datagrams, every buffer allocated once. The
// datagrams themselves are not copied: each entry points into the
// engine's buffer, valid until the engine's Advance.
type batchSender struct {
	rc    syscall.RawConn
	v6    bool
	hdrs  [batchMax]mmsg.Hdr
	iov   [batchMax]unix.Iovec
	names [batchMax]unix.RawSockaddrInet6 // an IPv4 sockaddr fits in it
	sent  [batchMax]bool                  // entry i went out
	n     int
	next  int // entries done (sent or failed): resumes after EAGAIN
	send  func(fd uintptr) bool
}

func newBatchSender(rc syscall.RawConn, v6 bool) *batchSender {
	b := &batchSender{rc: rc, v6: v6}
	// sendmmsg stops at the first entry it cannot send: it returns the
	// count before it, or the entry's error when it is the first. That
	// entry is marked failed and skipped; the rest still go out.
	b.send = func(fd uintptr) bool {
		for b.next < b.n {
			k, e := mmsg.Send(fd, b.hdrs[b.next:b.n], 0)
			switch e {
			case 0:
				for i := b.next; i < b.next+k; i++ {
					b.sent[i] = true
				}
				b.next += k
			case unix.EAGAIN:
				return false // wait for writability, resume at b.next
			case unix.EINTR:
			default:
				b.sent[b.next] = false
				b.next++
			}
		}
		return true
	}
	return b
}

// add queues data for dst; the caller sends when full.
func (b *batchSender) add(data []byte, dst netip.AddrPort) {
	i := b.n
	b.n++
	b.iov[i].Base = &data[0]
	b.iov[i].SetLen(len(data))
	h := &b.hdrs[i].Msghdr
	h.Iov, h.Iovlen = &b.iov[i], 1
	h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
	port := dst.Port()
	a := dst.Addr()
	if !b.v6 && a.Is4() {
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&b.names[i]))
		*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		h.Namelen = unix.SizeofSockaddrInet4
		return
	}
	// An IPv6 socket, or an IPv6 peer on an IPv4 socket (the kernel
	// refuses that entry alone).
	sa := &b.names[i]
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(port>>8), byte(port)
	h.Namelen = unix.SizeofSockaddrInet6
}

func (b *batchSender) full() bool { return b.n == batchMax }

// flush sends the queued datagrams; afterwards sent[:n] says which went
// out, until reset.
func (b *batchSender) flush() error {
	for i := range b.n {
		b.sent[i] = false
	}
	b.next = 0
	if b.n == 0 {
		return nil
	}
	return b.rc.Write(b.send)
}

func (b *batchSender) reset() { b.n = 0 }
