package engine

import (
	"errors"
	"math"
	"testing"
	"time"
)

const t0 = int64(1_790_000_000) * 1e9

// reply answers request req as an honest server whose clock is serverOff
// ahead of the client's, stamping receive at rx and transmit 10 µs later
// (both in the client's time).
func reply(req []byte, rxClientNS, serverOffNS int64, stratum uint8, refID uint32) []byte {
	q, _ := DecodeHeader(req)
	h := Header{Version: 4, Mode: ModeServer, Stratum: stratum, RefID: refID, Origin: q.Transmit,
		Receive: ToNTP(rxClientNS + serverOffNS), Transmit: ToNTP(rxClientNS + serverOffNS + 10_000)}
	b := make([]byte, HeaderLen)
	h.Encode(b)
	return b
}

// The engine sends when its deadline comes and not before, turns the reply
// into a sample whose offset is the server's (within NTP's timestamp
// rounding), takes a better t1 from a transmit stamp, and stops on DENY.
// It is driven only through Step: it has no clock to read.
func TestEngineCycle(t *testing.T) {
	e := New(ClientConfig{exactPolls: true, Poll: 4 * time.Second}, 1, t0+1e9)
	e.Step(t0, Input{Kind: InputTick})
	if rd := e.Ready(); rd.Send != nil || rd.DeadlineNS != t0+1e9 {
		t.Fatalf("before the deadline: %+v", rd)
	}
	e.Step(t0+1e9, Input{Kind: InputTick})
	rd := e.Ready()
	if len(rd.Send) != HeaderLen || rd.DeadlineNS != t0+5e9 {
		t.Fatalf("at the deadline: send %d bytes, next %d", len(rd.Send), rd.DeadlineNS)
	}
	req := append([]byte(nil), rd.Send...)
	e.Advance()
	// The kernel says the request left 20 µs after the user-space stamp.
	e.Step(t0+1e9+50_000, Input{Kind: InputTxStamp, TxNS: t0 + 1e9 + 20_000})
	e.Advance()
	// 100 µs each way from the kernel's t1, server 3 ms ahead: the offset
	// is +3 ms (with the user-space t1, 20 µs earlier, it would be 10 µs
	// off).
	const off = 3_000_000
	rx := t0 + 1e9 + 20_000 + 100_000
	e.Step(rx+10_000+100_000, Input{Kind: InputDatagram, Datagram: reply(req, rx, off, 1, 0x47505300), RxNS: rx + 10_000 + 100_000})
	rd = e.Ready()
	if len(rd.Samples) != 1 || len(rd.Rejected) != 0 {
		t.Fatalf("want one sample: %+v", rd)
	}
	s := rd.Samples[0]
	if s.T1NS != t0+1e9+20_000 {
		t.Fatalf("t1 %d: the transmit stamp was not used", s.T1NS)
	}
	if got := s.OffsetNS(); got < off-2 || got > off+2 {
		t.Fatalf("offset %.1f ns, want %d", got, off)
	}
	e.Advance()
	if rd := e.Ready(); len(rd.Samples) != 0 {
		t.Fatalf("Advance kept samples: %+v", rd)
	}
	// A replayed reply is rejected (no request outstanding).
	e.Step(rx+300_000, Input{Kind: InputDatagram, Datagram: reply(req, rx, off, 1, 0), RxNS: rx + 300_000})
	if rd := e.Ready(); len(rd.Rejected) != 1 || !errors.Is(rd.Rejected[0], ErrNotPending) {
		t.Fatalf("replay: %+v", rd)
	}
	e.Advance()
	// Next poll; the server says DENY: the engine stops and sends no more.
	e.Step(t0+5e9, Input{Kind: InputTick})
	req = append([]byte(nil), e.Ready().Send...)
	e.Advance()
	e.Step(t0+5e9+200_000, Input{Kind: InputDatagram, Datagram: reply(req, t0+5e9+100_000, off, StratumKoD, KissDENY), RxNS: t0 + 5e9 + 200_000})
	if rd := e.Ready(); !errors.Is(rd.Stopped, ErrKissStop) {
		t.Fatalf("DENY: %+v", rd)
	}
	e.Advance()
	e.Step(t0+100e9, Input{Kind: InputTick})
	if rd := e.Ready(); rd.Send != nil {
		t.Fatal("a stopped engine sent a request")
	}
}

// The discipline's poll advice moves an adaptive poll one factor of two at
// a time, within MinPoll..MaxPoll: shorter at once, longer after four good
// replies; a fixed poll ignores it.
func TestPollAdviceMovesAdaptivePoll(t *testing.T) {
	now := t0
	exchange := func(e *Engine) {
		t.Helper()
		now = max(now, e.Ready().DeadlineNS)
		e.Step(now, Input{Kind: InputTick})
		req := append([]byte(nil), e.Ready().Send...)
		e.Advance()
		if req == nil {
			t.Fatal("no request at the deadline")
		}
		e.Step(now+100_000, Input{Kind: InputDatagram, Datagram: reply(req, now+50_000, 0, 1, 0), RxNS: now + 100_000})
		if rd := e.Ready(); len(rd.Samples) != 1 {
			t.Fatalf("no sample: %+v", rd)
		}
		e.Advance()
	}
	e := New(ClientConfig{exactPolls: true, MinPoll: time.Second, MaxPoll: 64 * time.Second}, 1, t0)
	e.Step(now, Input{Kind: InputPollAdvice, PollNS: int64(10 * time.Second)})
	var polls []time.Duration
	for range 16 {
		exchange(e)
		polls = append(polls, e.Client().Poll())
	}
	if got := e.Client().Poll(); got != 8*time.Second {
		t.Fatalf("poll after advice of 10 s: %v (history %v), want 8 s (doubling stops below twice the advice)", got, polls)
	}
	e.Step(now, Input{Kind: InputPollAdvice, PollNS: int64(3 * time.Second)})
	exchange(e)
	if got := e.Client().Poll(); got != 4*time.Second {
		t.Fatalf("poll after advice of 3 s: %v, want one halving to 4 s", got)
	}
	exchange(e)
	if got := e.Client().Poll(); got != 2*time.Second {
		t.Fatalf("poll after a second reply: %v, want 2 s", got)
	}

	fixed := New(ClientConfig{exactPolls: true, Poll: 16 * time.Second}, 2, t0)
	fixed.Step(now, Input{Kind: InputPollAdvice, PollNS: int64(time.Second)})
	exchange(fixed)
	if fixed.Client().Poll() != 16*time.Second {
		t.Fatalf("a fixed poll moved to %v on advice", fixed.Client().Poll())
	}
}

// Polls are spread within ±PollJitter of the poll, around it on average,
// and not at one phase: a poll-long periodic disturbance meets the requests
// at every phase, not always at the same one.
func TestPollsSpread(t *testing.T) {
	const poll = 16 * time.Second
	e := New(ClientConfig{Poll: poll}, 7, t0)
	now := int64(t0)
	var sum float64
	phases := map[int]bool{}
	const n = 2000
	for i := 0; i < n; i++ {
		e.Step(now, Input{Kind: InputTick})
		if e.Ready().Send == nil {
			t.Fatalf("poll %d: no request at its deadline", i)
		}
		e.Advance()
		next := e.Ready().DeadlineNS
		iv := time.Duration(next - now)
		if lo, hi := poll-time.Duration(PollJitter*float64(poll)), poll+time.Duration(PollJitter*float64(poll)); iv < lo || iv > hi {
			t.Fatalf("poll %d: interval %v outside [%v, %v]", i, iv, lo, hi)
		}
		sum += float64(iv)
		phases[int((next-t0)%int64(poll)*10/int64(poll))] = true
		now = next
	}
	if mean := sum / n; math.Abs(mean-float64(poll)) > 0.01*float64(poll) {
		t.Fatalf("mean interval %v, want %v within 1%%", time.Duration(mean), poll)
	}
	if len(phases) < 10 {
		t.Fatalf("requests met only %d of 10 phases of the poll", len(phases))
	}
	// The test knob turns the spread off: the same check must fail then.
	e = New(ClientConfig{Poll: poll, exactPolls: true}, 7, t0)
	e.Step(t0, Input{Kind: InputTick})
	e.Advance()
	if got := e.Ready().DeadlineNS - t0; got != int64(poll) {
		t.Fatalf("exact polls: interval %v", time.Duration(got))
	}
}
