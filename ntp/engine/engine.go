package engine

import (
	"errors"
	"time"

	"github.com/meridiantime/meridian/discipline"
)

// Engine is one NTP source as a pure state machine, in the shape of etcd
// raft: the driver feeds it inputs with Step, reads what to do from Ready,
// does it, and calls Advance. It never reads a clock, sleeps or touches a
// socket: the daemon drives it from a UDP socket and timers (Source), the
// simulator from simulated links and true time. Both therefore run the same
// request building, reply validation and poll schedule.
//
// All times are readings of the disciplined clock, in ns.
type Engine struct {
	c     *Client
	next  int64 // local reading at which the next request is due
	req   [HeaderLen]byte
	ready Ready
}

// InputKind says what happened.
type InputKind int

const (
	// InputTick: a timer fired (or the driver just wants the engine to look
	// at the time). A request goes out when the poll is due.
	InputTick InputKind = iota
	// InputDatagram: a datagram arrived, received at RxNS.
	InputDatagram
	// InputTxStamp: the kernel or NIC reported when the last request left
	// (TxNS), a better t1 than the reading taken before the send.
	InputTxStamp
	// InputPollAdvice: the discipline's filter asks for poll interval
	// PollNS (its SourceReport.PollTargetNS; 0 withdraws the advice).
	InputPollAdvice
)

// Input is one event for Step.
type Input struct {
	Kind     InputKind
	Datagram []byte // InputDatagram; the engine does not keep it
	RxNS     int64  // InputDatagram: receive stamp
	TxNS     int64  // InputTxStamp: transmit stamp
	PollNS   int64  // InputPollAdvice: advised poll interval
}

// Ready is what the driver must do after Step.
type Ready struct {
	// Send is a request to transmit now, nil when none. It aliases the
	// engine's buffer: valid until Advance.
	Send []byte
	// Samples are validated exchanges for the discipline.
	Samples []discipline.Sample
	// Interleaved says, for each sample, that it came from an interleaved
	// reply: its exchange is the previous one (sent one poll earlier).
	Interleaved []bool
	// Unsampled counts valid replies that gave no sample (ErrNoSample: an
	// interleaved reply completing an exchange already sampled).
	Unsampled int
	// Rejected are replies that failed validation (for counters and logs).
	Rejected []error
	// Stopped is non-nil once the server told us to stop (DENY, RSTR).
	Stopped error
	// DeadlineNS is the local reading at which the engine wants a tick.
	DeadlineNS int64
}

// New returns an engine whose first request is due at nowNS.
func New(cfg ClientConfig, seed uint64, nowNS int64) *Engine {
	e := &Engine{c: NewClient(cfg, seed), next: nowNS}
	e.ready.DeadlineNS = nowNS
	return e
}

// Client exposes the underlying validator (reach, poll) for status.
func (e *Engine) Client() *Client { return e.c }

// Step feeds one input observed at local reading nowNS.
func (e *Engine) Step(nowNS int64, in Input) {
	switch in.Kind {
	case InputTick:
		if e.c.Stopped() != nil || nowNS < e.next {
			break
		}
		n := e.c.Request(e.req[:], nowNS) // t1 read before the send: early, never late
		e.ready.Send = e.req[:n]
		e.next = nowNS + int64(e.c.jittered(e.c.NextInterval())/time.Nanosecond)
	case InputDatagram:
		s, err := e.c.Response(in.Datagram, in.RxNS)
		switch {
		case errors.Is(err, ErrNoSample):
			e.ready.Unsampled++
		case err != nil:
			e.ready.Rejected = append(e.ready.Rejected, err)
		default:
			e.ready.Samples = append(e.ready.Samples, s)
			e.ready.Interleaved = append(e.ready.Interleaved, e.c.LastInterleaved())
		}
	case InputTxStamp:
		e.c.SetT1(in.TxNS)
	case InputPollAdvice:
		e.c.Advise(time.Duration(in.PollNS))
	}
	e.ready.Stopped = e.c.Stopped()
	e.ready.DeadlineNS = e.next
}

// Ready returns what the driver must do now.
func (e *Engine) Ready() Ready { return e.ready }

// Advance acknowledges the last Ready: its request was sent and its
// samples taken.
func (e *Engine) Advance() {
	e.ready.Send = nil
	e.ready.Samples = e.ready.Samples[:0]
	e.ready.Interleaved = e.ready.Interleaved[:0]
	e.ready.Unsampled = 0
	e.ready.Rejected = e.ready.Rejected[:0]
}
