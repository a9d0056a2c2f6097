package ntp

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/hwts"
	"github.com/meridiantime/meridian/internal/mmsg"
	"github.com/meridiantime/meridian/ntp/engine"
)

// Batched server I/O: recvmmsg/sendmmsg on a blocking socket the worker
// owns, outside Go's network poller (see detach), so one wake-up and two
// system calls serve up to batchSize requests, with every buffer allocated
// once per worker (the loop does not allocate).

const batchSize = 64

type batchIO struct {
	rx, tx   [batchSize]mmsg.Hdr
	names    [batchSize]unix.RawSockaddrInet6
	rxIov    [batchSize]unix.Iovec
	txIov    [batchSize]unix.Iovec
	bufs     [batchSize][1500]byte
	resps    [batchSize][engine.HeaderLen]byte
	oobs     [batchSize][oobLen]byte
	verdicts [batchSize]Verdict // of each tx entry
	xl       [batchSize]xlOut   // of each tx entry: its table entry, if any
	ts       *txStamper         // nil: no kernel TX stamps (basic mode only)
	n, nTx   int
	sent     int // tx entries done (sent or failed): resumes after EAGAIN
	errno    syscall.Errno
	failed   func(e syscall.Errno) // counts one entry the kernel refused
	sendFunc func(fd uintptr) bool
	now      served             // the served clock, read once per batch after its receive
	readNow  func() int64       // reads it into now (allocated once)
	late     served             // the served clock read again just before sendmmsg
	rxNS     [batchSize]int64   // of each tx entry: its request's receive timestamp
	from     [batchSize]ipWords // of each request: its sender, for the client log
	rv       [batchSize]Verdict // of each request: what answer said
	t        tally              // the batch's counts, flushed before and after the send
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
	// sendmmsg stops at the first entry it cannot send: it returns the
	// count before it, or the entry's error when it is the first. A failed
	// entry is counted and skipped, and the rest of the batch is sent: one
	// bad destination must not cost the others their replies.
	b.sendFunc = func(fd uintptr) bool {
		for b.sent < b.nTx {
			n, e := mmsg.Send(fd, b.tx[b.sent:b.nTx], 0)
			switch e {
			case 0:
				b.sent += n
			case unix.EAGAIN:
				return false // wait for writability, resume at b.sent
			case unix.EINTR:
			default:
				b.failed(e)
				b.verdicts[b.sent] = verdictFailed
				b.sent++
			}
		}
		return true
	}
	return b
}

// verdictFailed marks a tx entry the kernel refused (not counted as sent).
const verdictFailed Verdict = 0xff

// addrOf decodes the sender of message i without allocating, as a
// netip.AddrPort and as words (wordsOf of its address, read from the
// socket address itself).
func (b *batchIO) addrOf(i int) (netip.AddrPort, ipWords) {
	sa := &b.names[i]
	switch sa.Family {
	case unix.AF_INET:
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(s4.Addr), ntohs(s4.Port)),
			ipWords{lo: v4Mapped | uint64(binary.BigEndian.Uint32(s4.Addr[:]))}
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), ntohs(sa.Port)),
			ipWords{binary.BigEndian.Uint64(sa.Addr[:8]), binary.BigEndian.Uint64(sa.Addr[8:])}
	}
	return netip.AddrPort{}, ipWords{}
}

// ntohs reads a port stored in network byte order.
func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// recv waits for requests: it blocks until one comes (or the socket's
// receive timeout, or Close) and takes up to batchSize of them. Under load
// requests are already queued, and mmsg.RecvWait takes them without
// telling the runtime: a receive that runs past sysmon's tick is then not
// taken for a blocked thread whose P must be handed on.
func (b *batchIO) recv(fd uintptr) {
	for i := range b.rx {
		b.rx[i].Msghdr.Namelen = unix.SizeofSockaddrInet6
		b.rx[i].Msghdr.SetControllen(oobLen)
	}
	b.n, b.errno = mmsg.RecvWait(fd, b.rx[:], 0)
}

// send sends the batch's replies, waiting for room in the socket's send
// buffer if it is full; it gives up when the socket is closed.
func (b *batchIO) send(sk *sock) error {
	fd := uintptr(sk.fd)
	for !b.sendFunc(fd) {
		if sk.closed.Load() {
			return net.ErrClosed
		}
		pfd := []unix.PollFd{{Fd: int32(sk.fd), Events: unix.POLLOUT}}
		_, _ = unix.Poll(pfd, int(sk.wake.Milliseconds()))
	}
	return nil
}

// batchWorker serves one socket with recvmmsg/sendmmsg until it is closed.
func (s *Server) batchWorker(sk *sock) {
	b := newBatchIO()
	b.failed = s.sendFailed
	if s.xt != nil {
		b.ts = newTxStamper(s.HardwareTxToServed != nil)
		b.ts.idShift = s.testIDShift
	}
	fd := uintptr(sk.fd)
	for !sk.closed.Load() {
		b.recv(fd)
		if sk.closed.Load() {
			return
		}
		// Stamps still on the error queue — hardware ones come after the
		// send, while the worker may be blocked in recvmmsg, which they do
		// not wake — are taken before the requests that may ask for them.
		b.collectStamps(fd, s)
		if b.errno != 0 || b.n == 0 {
			continue // the receive timeout, EINTR, or an ICMP error (ECONNREFUSED): nothing to serve
		}
		if err := s.serveBatch(sk, b); err != nil {
			return
		}
	}
}

// collectStamps reads the transmit stamps waiting on the error queue, or
// restarts the numbering after a failed send.
func (b *batchIO) collectStamps(fd uintptr, s *Server) {
	switch {
	case b.ts == nil:
	case b.ts.resync:
		b.ts.restart(fd, s)
	case b.ts.queued:
		b.ts.drain(fd, s)
	}
}

// serveBatch answers the b.n requests in b.rx and sends the replies.
//
// The clocks are read once per batch, after recvmmsg returned: CLOCK_REALTIME
// and then the served clock (hwts.ClockPair), which converts each request's
// kernel receive stamp by its age (rxAt: late, never early). The served
// clock is read once more just before sendmmsg (stampLate) for the transmit
// timestamp of every basic reply in the batch — later than each request's
// receive, earlier than each reply's send (early, never late).
func (s *Server) serveBatch(sk *sock, b *batchIO) error {
	s.buildBatch(sk, b)
	if b.nTx == 0 {
		return nil
	}
	b.stampLate(s)
	b.sent = 0
	if err := b.send(sk); err != nil {
		return err
	}
	for j, v := range b.verdicts[:b.nTx] {
		if v == verdictFailed {
			// A refused datagram that asked for a stamp may have taken a
			// number; one that did not ask takes none.
			if b.tx[j].Msghdr.Control != nil {
				b.ts.resync = true
			}
			continue
		}
		b.t.sent(v)
		if b.ts != nil && b.xl[j].rec {
			x := &b.xl[j]
			b.ts.add(x.addr, x.rx, x.rxNS)
		}
	}
	s.flush(&b.t)
	// Software stamps are queued before sendmmsg returns: collect them
	// now, before the clients' next requests.
	b.collectStamps(uintptr(sk.fd), s)
	return nil
}

// buildBatch reads the clocks, answers the b.n requests in b.rx into
// b.tx[:b.nTx], and logs and counts them: all of a batch's work but the
// system calls.
func (s *Server) buildBatch(sk *sock, b *batchIO) {
	mono := monoNS()
	if b.readNow == nil {
		b.readNow = func() int64 { return b.now.read(s.ts) }
	}
	b.now.est = s.ts.Estimate()
	realtime, now, _ := hwts.ClockPair(b.readNow)
	b.now.iv.EarliestNS += s.testTxShiftNS
	b.now.iv.LatestNS += s.testTxShiftNS
	b.now.prepare()
	b.nTx = 0
	for i := 0; i < b.n; i++ {
		m := &b.rx[i]
		rxNS := rxAt(realtime, now, b.oobs[i][:m.Msghdr.Controllen])
		from, w := b.addrOf(i)
		rl, v := s.answer(s.lim, b.bufs[i][:m.Len], b.resps[i][:], rxNS, mono, from, w, &b.xl[b.nTx], &b.now, &b.t)
		b.from[i], b.rv[i] = w, v
		if rl == 0 {
			continue
		}
		b.verdicts[b.nTx] = v
		b.rxNS[b.nTx] = rxNS
		t := &b.tx[b.nTx]
		b.txIov[b.nTx].Base = &b.resps[i][0]
		b.txIov[b.nTx].SetLen(rl)
		t.Msghdr.Name = m.Msghdr.Name
		t.Msghdr.Namelen = m.Msghdr.Namelen
		t.Msghdr.Iov = &b.txIov[b.nTx]
		t.Msghdr.Iovlen = 1
		t.Msghdr.Control, t.Msghdr.Controllen = nil, 0
		if b.ts != nil && (b.xl[b.nTx].rec || s.testStampAll) { // the table awaits this reply's transmit stamp
			t.Msghdr.Control = &b.ts.cmsg[0]
			t.Msghdr.SetControllen(txCmsgLen)
		}
		b.nTx++
	}
	// The log and the request counters before the replies go out: a
	// client that has its reply finds itself counted.
	sk.clog.recordBatch(b.from[:b.n], b.rv[:b.n], mono)
	s.flush(&b.t)
}

// stampLate reads the served clock again, after the batch's replies are
// built and just before they are sent, and moves the transmit timestamp of
// every synchronized basic reply to it. A transmit timestamp read at the
// batch's receive is early by the whole batch's work; a client's offset is
// biased by half of that (its response leg looks longer than it is), and
// its delay by all of it. The stamp stays early, never late: it is read
// before sendmmsg. Interleaved replies carry a kernel stamp, KoD and
// unsynchronized replies the receive time: they are left alone. If a new
// estimate was published between the two reads, or the clock is no longer
// synchronized, every reply keeps its first reading (stratum, leap, root
// delay and dispersion come from that estimate and must agree with it).
func (b *batchIO) stampLate(s *Server) {
	b.late.est = s.ts.Estimate()
	if b.now.err != nil || b.late.est != b.now.est {
		return
	}
	b.late.read(s.ts)
	if b.late.err != nil {
		return
	}
	b.late.iv.EarliestNS += s.testTxShiftNS
	b.late.iv.LatestNS += s.testTxShiftNS
	// The transmit timestamp and dispersion are encoded once for the
	// batch; a reply whose request came in after mid keeps its receive.
	b.late.midNS = max(b.late.iv.MidNS(), b.now.midNS)
	b.late.midNTP = engine.ToNTP(b.late.midNS)
	disp := engine.NSToShort(max(0, b.late.iv.EpsNS()-b.late.est.RootDelayNS/2))
	for j, v := range b.verdicts[:b.nTx] {
		if v.kind() != Reply || v&(flagXleave|flagUnsync) != 0 {
			continue
		}
		r := (*[engine.HeaderLen]byte)(unsafe.Pointer(b.txIov[j].Base))
		engine.PatchTransmit(r[:], b.late.transmit(b.rxNS[j]), disp)
	}
}
