package engine

import (
	"errors"
	"testing"
	"time"
)

// xserver is an honest interleaved server whose clock is off ahead of the
// client's. It stamps receive on arrival and reads its basic transmit
// timestamp 10 µs later, but the reply really leaves q later still (a
// batch in front of it): a basic sample is off by −q/2, an interleaved one
// exact. It keeps the receive timestamp and the real departure of its last
// reply, as our server's table does.
type xserver struct {
	off, q  int64
	lastRx  uint64
	lastTx  int64 // server clock
	has     bool
	replies int
}

const oneWay = 100_000

// answer replies to req, which arrived at client time rxC; it returns the
// reply and its arrival at the client (client time).
func (s *xserver) answer(req []byte, rxC int64) ([]byte, int64) {
	q, _ := DecodeHeader(req)
	rx := ToNTP(rxC + s.off)
	basicTx := rxC + s.off + 10_000
	depart := basicTx + s.q
	h := Header{Version: 4, Mode: ModeServer, Stratum: 2, RefID: 0x0a000001, RootDelay: 3, RootDisp: 4,
		Origin: q.Transmit, Receive: rx, Transmit: ToNTP(basicTx)}
	if s.has && q.Origin != 0 && q.Origin == s.lastRx && q.Receive != q.Transmit {
		h.Origin, h.Transmit = q.Receive, ToNTP(s.lastTx)
	}
	s.lastRx, s.lastTx, s.has = rx, depart, true
	s.replies++
	b := make([]byte, HeaderLen)
	h.Encode(b)
	return b, depart - s.off + oneWay
}

// xpoll runs one poll at client time at: request, kernel transmit stamp
// 5 µs after the user-space reading, and (unless lost) the reply. It
// returns the request and what the engine made of the reply.
func xpoll(t *testing.T, e *Engine, s *xserver, at int64, lostRequest, lostReply bool) ([]byte, Ready) {
	t.Helper()
	e.Step(at, Input{Kind: InputTick})
	req := append([]byte(nil), e.Ready().Send...)
	if len(req) != HeaderLen {
		t.Fatalf("no request at %d", at)
	}
	e.Advance()
	t1 := at + 5_000
	e.Step(at+20_000, Input{Kind: InputTxStamp, TxNS: t1})
	e.Advance()
	if lostRequest {
		return req, Ready{}
	}
	reply, t4 := s.answer(req, t1+oneWay)
	if lostReply {
		return req, Ready{}
	}
	e.Step(t4, Input{Kind: InputDatagram, Datagram: reply, RxNS: t4})
	rd := e.Ready()
	rd.Samples = append(rd.Samples[:0:0], rd.Samples...)
	rd.Interleaved = append(rd.Interleaved[:0:0], rd.Interleaved...)
	rd.Rejected = append(rd.Rejected[:0:0], rd.Rejected...)
	e.Advance()
	return req, rd
}

const (
	xoff = 3_000_000 // server ahead by 3 ms
	xq   = 400_000   // basic transmit timestamps 400 µs early
)

// Field by field through lost packets: the first request is basic form
// (origin 0, a receive nonce); its reply gives a basic sample, off by −q/2;
// the next request echoes the server's receive timestamp as origin with a
// new receive nonce; the interleaved reply to it completes exchange 1,
// which was already sampled: no sample; the next completes exchange 2: an
// exact sample built from exchange 2's t1 (the kernel stamp), t2 and t4. A
// lost reply gives a basic reply next (the server holds a newer receive
// timestamp); a lost request still gives an interleaved reply for the
// last exchange answered.
func TestInterleavedClient(t *testing.T) {
	s := &xserver{off: xoff, q: xq}
	e := New(ClientConfig{exactPolls: true, Poll: time.Second, Interleaved: true}, 7, t0)
	at := t0
	next := func() int64 { at += 1e9; return at - 1e9 }
	checkBasic := func(rd Ready, what string) {
		t.Helper()
		if len(rd.Samples) != 1 || rd.Interleaved[0] {
			t.Fatalf("%s: want one basic sample: %+v", what, rd)
		}
		if got := rd.Samples[0].OffsetNS(); got < xoff-xq/2-2 || got > xoff-xq/2+2 {
			t.Fatalf("%s: basic offset %.0f, want %d (early t3)", what, got, xoff-xq/2)
		}
	}
	checkInterleaved := func(rd Ready, t1 int64, what string) {
		t.Helper()
		if len(rd.Samples) != 1 || !rd.Interleaved[0] {
			t.Fatalf("%s: want one interleaved sample: %+v", what, rd)
		}
		sm := rd.Samples[0]
		if got := sm.OffsetNS(); got < xoff-2 || got > xoff+2 {
			t.Fatalf("%s: interleaved offset %.0f, want %d", what, got, xoff)
		}
		if sm.T1NS != t1 || sm.DelayNS() < 2*oneWay-2 || sm.DelayNS() > 2*oneWay+10_000+xq+2 {
			t.Fatalf("%s: t1 %d (want %d), delay %d", what, sm.T1NS, t1, sm.DelayNS())
		}
		if sm.DelayNS() > 2*oneWay+10_000+2 {
			t.Fatalf("%s: delay %d still holds the server's queue", what, sm.DelayNS())
		}
	}
	// 1: basic form, basic reply.
	at1 := next()
	req, rd := xpoll(t, e, s, at1, false, false)
	q, _ := DecodeHeader(req)
	if q.Origin != 0 || q.Receive == 0 || q.Receive == q.Transmit || q.Transmit == 0 {
		t.Fatalf("first request: %+v", q)
	}
	checkBasic(rd, "exchange 1")
	// 2: interleaved form; the reply completes exchange 1: no sample.
	rx1 := s.lastRx
	at2 := next()
	req, rd = xpoll(t, e, s, at2, false, false)
	q, _ = DecodeHeader(req)
	if q.Origin != rx1 || q.Receive == 0 || q.Receive == q.Transmit {
		t.Fatalf("second request: %+v", q)
	}
	if len(rd.Samples) != 0 || len(rd.Rejected) != 0 || rd.Unsampled != 1 {
		t.Fatalf("exchange 1 completed twice: %+v", rd)
	}
	// 3: completes exchange 2 exactly, with exchange 2's kernel t1.
	_, rd = xpoll(t, e, s, next(), false, false)
	checkInterleaved(rd, at2+5_000, "exchange 2")
	// 4: the reply is lost. 5: the client echoes exchange 3's receive
	// timestamp; the server holds exchange 4's: a basic reply.
	xpoll(t, e, s, next(), false, true)
	_, rd = xpoll(t, e, s, next(), false, false)
	checkBasic(rd, "after a lost reply")
	// 6: the request is lost. 7: the server still holds exchange 5: an
	// interleaved reply completing exchange 5, already sampled: none.
	xpoll(t, e, s, next(), true, false)
	at7 := next()
	_, rd = xpoll(t, e, s, at7, false, false)
	if len(rd.Samples) != 0 || rd.Unsampled != 1 {
		t.Fatalf("after a lost request: %+v", rd)
	}
	// 8: completes exchange 7.
	_, rd = xpoll(t, e, s, next(), false, false)
	checkInterleaved(rd, at7+5_000, "exchange 7")
}

// Negative control: a client that took the interleaved reply for a basic
// one (test knob) would pair the previous reply's departure with this
// exchange: its offset is off by about a poll interval, which the check
// in TestInterleavedClient catches.
func TestInterleavedClientPairingNegativeControl(t *testing.T) {
	s := &xserver{off: xoff, q: xq}
	e := New(ClientConfig{exactPolls: true, Poll: time.Second, Interleaved: true}, 7, t0)
	e.c.setTestNoInterleavedOrigin()
	var bad int
	for i := int64(0); i < 4; i++ {
		_, rd := xpoll(t, e, s, t0+i*1e9, false, false)
		for _, sm := range rd.Samples {
			if got := sm.OffsetNS(); got < xoff-xq/2-2 || got > xoff+2 {
				bad++
			}
		}
		if len(rd.Rejected) > 0 {
			bad++ // a negative delay: Validate refused it
		}
	}
	if bad == 0 {
		t.Fatal("mispaired interleaved replies went unnoticed")
	}
}

// Anti-spoofing: once interleaving, a reply is accepted only with one of
// the outstanding request's two nonces as origin; the server's receive
// timestamp (which an attacker could predict), zero and the last request's
// nonces are refused; after the genuine reply, a replay is refused.
func TestInterleavedClientOriginCheck(t *testing.T) {
	s := &xserver{off: xoff, q: xq}
	e := New(ClientConfig{exactPolls: true, Poll: time.Second, Interleaved: true}, 9, t0)
	oldReq, _ := xpoll(t, e, s, t0, false, false)
	e.Step(t0+1e9, Input{Kind: InputTick})
	req := append([]byte(nil), e.Ready().Send...)
	e.Advance()
	q, _ := DecodeHeader(req)
	old, _ := DecodeHeader(oldReq)
	reply, t4 := s.answer(req, t0+1e9+oneWay)
	h, _ := DecodeHeader(reply)
	if h.Origin != q.Receive {
		t.Fatalf("the server did not interleave: %+v", h)
	}
	for _, forged := range []uint64{q.Origin, 0, old.Transmit, old.Receive, q.Receive + 1} {
		f := append([]byte(nil), reply...)
		h2 := h
		h2.Origin = forged
		h2.Encode(f)
		e.Step(t4, Input{Kind: InputDatagram, Datagram: f, RxNS: t4})
		if rd := e.Ready(); len(rd.Rejected) != 1 || !errors.Is(rd.Rejected[0], ErrOrigin) || rd.Unsampled != 0 {
			t.Fatalf("forged origin %x: %+v", forged, rd)
		}
		e.Advance()
	}
	e.Step(t4, Input{Kind: InputDatagram, Datagram: reply, RxNS: t4})
	if rd := e.Ready(); rd.Unsampled != 1 || len(rd.Rejected) != 0 {
		t.Fatalf("genuine reply: %+v", rd)
	}
	e.Advance()
	e.Step(t4+1, Input{Kind: InputDatagram, Datagram: reply, RxNS: t4 + 1})
	if rd := e.Ready(); len(rd.Rejected) != 1 || !errors.Is(rd.Rejected[0], ErrNotPending) {
		t.Fatalf("replay: %+v", rd)
	}
}

// After MaxInterleavedUnanswered requests without a valid reply, requests
// go out in basic form (origin 0) until one is answered; a server that
// answers only in basic mode gives basic samples throughout; without
// Interleaved, requests carry no origin or receive field at all.
func TestInterleavedClientFallbacks(t *testing.T) {
	s := &xserver{off: xoff, q: xq}
	e := New(ClientConfig{exactPolls: true, Poll: time.Second, Interleaved: true}, 3, t0)
	xpoll(t, e, s, t0, false, false)
	for i := int64(1); i <= MaxInterleavedUnanswered+1; i++ {
		req, _ := xpoll(t, e, s, t0+i*1e9, true, false)
		q, _ := DecodeHeader(req)
		if basicForm := q.Origin == 0; basicForm != (i > MaxInterleavedUnanswered) {
			t.Fatalf("request %d after the last answer: origin %x", i, q.Origin)
		}
	}
	// A basic-only server (it ignores the origin).
	b := &xserver{off: xoff, q: xq}
	e = New(ClientConfig{exactPolls: true, Poll: time.Second, Interleaved: true}, 4, t0)
	for i := int64(0); i < 5; i++ {
		e.Step(t0+i*1e9, Input{Kind: InputTick})
		req := append([]byte(nil), e.Ready().Send...)
		e.Advance()
		b.has = false
		reply, t4 := b.answer(req, t0+i*1e9+oneWay)
		e.Step(t4, Input{Kind: InputDatagram, Datagram: reply, RxNS: t4})
		if rd := e.Ready(); len(rd.Samples) != 1 || rd.Interleaved[0] {
			t.Fatalf("basic server, poll %d: %+v", i, rd)
		}
		e.Advance()
	}
	e = New(ClientConfig{exactPolls: true, Poll: time.Second}, 5, t0)
	for i := int64(0); i < 3; i++ {
		req, _ := xpoll(t, e, s, t0+i*1e9, false, false)
		if q, _ := DecodeHeader(req); q.Origin != 0 || q.Receive != 0 {
			t.Fatalf("basic client sent origin %x receive %x", q.Origin, q.Receive)
		}
	}
}
