package ntp

import (
	"encoding/binary"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/hwts"
	"github.com/meridiantime/meridian/internal/mmsg"
)

// Kernel transmit stamps of the server's replies (interleaved mode; see
// xleave.go). Only the replies whose stamp the table awaits ask for one,
// with an SO_TIMESTAMPING control message on that datagram (txGenFlags):
// a stamp costs the kernel a clone of the datagram on the error queue, a
// wake-up of the socket and a read to drain it, which a reply to a basic
// client would pay for nothing. With SOF_TIMESTAMPING_OPT_ID set on the
// socket the kernel numbers the datagrams that ask for a stamp 0, 1, 2,
// ... (a datagram that does not ask takes no number) and reports each
// stamp on the socket's error queue with that number; OPT_TSONLY leaves
// the payload out. Each worker (one socket) keeps a ring of the stamped
// replies it sent by that number and, after every batch and whenever the
// error queue wakes the socket, drains the queue with one recvmmsg and
// moves each stamp into the table.
//
// A send the kernel refuses may or may not have used a number (EPERM from
// a firewall does, routing errors do not): after any refused entry the
// worker restarts the numbering (SO_TIMESTAMPING off and on again resets
// the counter to 0) rather than risk pairing a reply with another's stamp.
//
// Time domains: a software stamp is CLOCK_REALTIME; it is moved to the
// served clock by its age, reading the served clock BEFORE CLOCK_REALTIME,
// so a delay between the reads makes the result early, never late (what a
// transmit stamp must be). A hardware stamp is the NIC's PHC time: used
// only through Server.HardwareTxToServed, which the caller sets when it
// can map the PHC to the served clock; otherwise dropped.

const (
	txRing      = 256     // replies awaiting their stamp, per worker (power of two)
	txOobLen    = 256     // SCM_TIMESTAMPING (64) + IP(V6)_RECVERR (≤ 64), with slack
	optRxFilter = 0x20000 // SOF_TIMESTAMPING_OPT_RX_FILTER (Linux 6.12): no RX stamps from this setting
	// maxServerHoldNS bounds a stamp's distance after the request's
	// receive: a stamp further away belongs to something else.
	maxServerHoldNS = int64(time.Second)
)

type txPending struct {
	id   uint32
	used bool
	addr ipWords
	rx   uint64 // the reply's receive timestamp, as sent (the table's key with addr)
	rxNS int64
}

type txStamper struct {
	ring   [txRing]txPending
	nextID uint32
	resync bool // a send failed: numbering uncertain
	// queued says stamps may wait on the error queue: a stamped reply
	// went out since the last drain that found the queue empty. Software
	// stamps are queued before sendmmsg returns, so after such a drain
	// none is on its way; hardware stamps come later: with hw it stays
	// set. Without it the worker makes no error-queue read at all.
	queued bool
	msgs   [batchSize]mmsg.Hdr
	iov    [batchSize]unix.Iovec
	bufs   [batchSize][16]byte
	oobs   [batchSize][txOobLen]byte
	hw     bool            // the socket asks for hardware stamps too
	cmsg   [txCmsgLen]byte // asks for one datagram's stamp (read only by the kernel)

	idShift uint32 // test knob: pair each stamp with another reply (negative control of the pairing)
}

func newTxStamper(hw bool) *txStamper {
	t := &txStamper{hw: hw, cmsg: txCmsg(hw)}
	for i := range t.msgs {
		t.iov[i].Base = &t.bufs[i][0]
		t.iov[i].SetLen(len(t.bufs[i]))
		t.msgs[i].Msghdr.Iov = &t.iov[i]
		t.msgs[i].Msghdr.Iovlen = 1
		t.msgs[i].Msghdr.Control = &t.oobs[i][0]
	}
	return t
}

// txFlags are the SO_TIMESTAMPING flags of a server socket in interleaved
// mode: report software (and raw hardware) stamps, numbered, without the
// payload. They generate none: each reply that needs its transmit stamp
// asks for it (txGenFlags; receive stamps come from SO_TIMESTAMPNS).
func txFlags(hw bool) int {
	f := unix.SOF_TIMESTAMPING_SOFTWARE | unix.SOF_TIMESTAMPING_OPT_ID | unix.SOF_TIMESTAMPING_OPT_TSONLY
	if hw {
		f |= unix.SOF_TIMESTAMPING_RAW_HARDWARE
	}
	return f
}

// txGenFlags are the flags of the per-datagram SO_TIMESTAMPING control
// message of a reply whose transmit stamp the table awaits.
func txGenFlags(hw bool) uint32 {
	f := uint32(unix.SOF_TIMESTAMPING_TX_SOFTWARE)
	if hw {
		f |= unix.SOF_TIMESTAMPING_TX_HARDWARE
	}
	return f
}

// txCmsgLen is CMSG_SPACE(4): one SO_TIMESTAMPING control message.
const txCmsgLen = unix.SizeofCmsghdr + 8

// txCmsg builds the control message that asks the kernel for one
// datagram's transmit stamp.
func txCmsg(hw bool) [txCmsgLen]byte {
	var b [txCmsgLen]byte
	binary.NativeEndian.PutUint64(b[0:], unix.SizeofCmsghdr+4) // CMSG_LEN(4)
	binary.NativeEndian.PutUint32(b[8:], unix.SOL_SOCKET)
	binary.NativeEndian.PutUint32(b[12:], unix.SO_TIMESTAMPING)
	binary.NativeEndian.PutUint32(b[unix.SizeofCmsghdr:], txGenFlags(hw))
	return b
}

// enableTxStamps turns on transmit stamps on fd; it returns false when the
// kernel refuses them (the server then answers in basic mode only).
func enableTxStamps(fd int, hw bool) bool {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPING, txFlags(hw)|optRxFilter) == nil {
		return true
	}
	// Before Linux 6.12: no RX filter; SCM_TIMESTAMPING then also comes with
	// every datagram (oobLen has room for it next to SCM_TIMESTAMPNS).
	return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPING, txFlags(hw)) == nil
}

// add remembers the next stamped datagram the socket sent successfully.
// Datagrams sent without asking for a stamp take no number.
func (t *txStamper) add(addr ipWords, rx uint64, rxNS int64) {
	id := t.nextID
	t.nextID++
	t.ring[id%txRing] = txPending{id: id, used: true, addr: addr, rx: rx, rxNS: rxNS}
	t.queued = true
}

// drain reads the error queue of fd and stores the stamps in the table.
// It does not block or allocate.
func (t *txStamper) drain(fd uintptr, s *Server) {
	for {
		for i := range t.msgs {
			t.msgs[i].Msghdr.SetControllen(txOobLen)
			t.msgs[i].Msghdr.Name = nil
			t.msgs[i].Msghdr.Namelen = 0
		}
		n, e := mmsg.Recv(fd, t.msgs[:], unix.MSG_ERRQUEUE)
		if e != 0 || n == 0 {
			t.queued = t.hw
			return
		}
		now, realtime := s.clockPair()
		for i := 0; i < n; i++ {
			t.stamp(t.oobs[i][:t.msgs[i].Msghdr.Controllen], now, realtime, s)
		}
		if n < len(t.msgs) {
			t.queued = t.hw
			return
		}
	}
}

// stamp pairs one error-queue message with the reply it stamps and stores
// the stamp in the table. now (the served clock) must have been read
// before realtime (CLOCK_REALTIME), both after the stamp was taken.
func (t *txStamper) stamp(oob []byte, now, realtime int64, s *Server) {
	ns, hw, id, ok := parseTxStamp(oob)
	if !ok {
		return
	}
	id += t.idShift
	p := &t.ring[id%txRing]
	if !p.used || p.id != id {
		return // not ours to pair (after a resync, or overwritten in the ring)
	}
	p.used = false
	var tx int64
	if hw {
		if s.HardwareTxToServed == nil {
			return
		}
		if tx, ok = s.HardwareTxToServed(ns); !ok {
			return
		}
	} else if tx, ok = hwts.TxToClock(now, realtime, ns); !ok {
		return
	}
	if !s.xt.noStampCheck && (tx < p.rxNS || tx-p.rxNS > maxServerHoldNS) {
		s.txStampsBad.Add(1)
		return
	}
	if s.xt.setTx(p.addr, p.rx, tx) {
		s.txStamps.Add(1)
	}
}

// restart resets the kernel's numbering after a failed send: the queued
// stamps are read and discarded (a software stamp is queued before the
// send returns), then SO_TIMESTAMPING is turned off and on again.
func (t *txStamper) restart(fd uintptr, s *Server) {
	for i := range t.ring {
		t.ring[i].used = false // the numbers are uncertain: pair nothing
	}
	t.drain(fd, s) // discards the queued stamps
	_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPING, 0)
	enableTxStamps(int(fd), t.hw)
	t.nextID = 0
	t.resync = false
	s.txResyncs.Add(1)
}

// parseTxStamp reads one error-queue message: the stamp (software, or raw
// hardware) and its OPT_ID. It does not allocate.
func parseTxStamp(oob []byte) (ns int64, hw bool, id uint32, ok bool) {
	const hdr = unix.SizeofCmsghdr
	var haveStamp, haveID bool
	for len(oob) >= hdr {
		l := int(binary.NativeEndian.Uint64(oob[0:8]))
		if l < hdr || l > len(oob) {
			break
		}
		level := int32(binary.NativeEndian.Uint32(oob[8:12]))
		typ := int32(binary.NativeEndian.Uint32(oob[12:16]))
		d := oob[hdr:l]
		switch {
		case level == unix.SOL_SOCKET && typ == unix.SCM_TIMESTAMPING && len(d) >= 48:
			ts := func(i int) int64 {
				return int64(binary.NativeEndian.Uint64(d[16*i:]))*1e9 + int64(binary.NativeEndian.Uint64(d[16*i+8:]))
			}
			if h := ts(2); h != 0 {
				ns, hw, haveStamp = h, true, true
			} else if sw := ts(0); sw != 0 {
				ns, hw, haveStamp = sw, false, true
			}
		case (level == unix.SOL_IP && typ == unix.IP_RECVERR) || (level == unix.SOL_IPV6 && typ == unix.IPV6_RECVERR):
			// struct sock_extended_err: errno u32, origin u8, type u8, code u8, pad u8, info u32, data u32.
			if len(d) >= 16 && d[4] == unix.SO_EE_ORIGIN_TIMESTAMPING && binary.NativeEndian.Uint32(d[8:12]) == unix.SCM_TSTAMP_SND {
				id, haveID = binary.NativeEndian.Uint32(d[12:16]), true
			}
		}
		step := (l + 7) &^ 7
		if step > len(oob) {
			break
		}
		oob = oob[step:]
	}
	return ns, hw, id, haveStamp && haveID
}

// clockPair reads the served clock and then CLOCK_REALTIME for converting
// transmit stamps (hwts.TxToClock): a delay between the two reads makes a stamp
// early, never late; a pair held up between the reads is read again
// (hwts.ClockPair).
func (s *Server) clockPair() (now, realtime int64) {
	_, now, realtime = hwts.ClockPair(s.servedNS)
	return now, realtime
}

// servedNS is the served clock now: the TrueTime midpoint, or the local
// reading while unsynchronized (as the replies' timestamps are).
func (s *Server) servedNS() int64 {
	var p served
	return p.read(s.ts)
}
