package sim

import (
	"errors"
	"math"

	"github.com/facebook/time/ptp/protocol"

	"github.com/meridiantime/meridian/discipline"
	ptpengine "github.com/meridiantime/meridian/ptp/engine"
	"github.com/meridiantime/meridian/truetime"
)

// A PTP source is a grandmaster engine (ptp/engine.Master) serving the
// source's clock, and the host runs a unicast client engine
// (ptp/engine.Client) for it: the same engines meridiand's PTP port and
// grandmaster run, over the simulated link. Transmit and receive stamps are
// exact clock readings at the instant a datagram leaves or arrives, as a
// NIC's hardware stamps are to within their resolution; the link's jitter
// is the rest of the noise.

// ptpNode is one PTP source's two engines and their timers.
type ptpNode struct {
	cl *ptpengine.Client
	m  *ptpengine.Master
	// Timer tokens: only the newest scheduled timer event of each engine
	// fires (a new deadline supersedes the pending one).
	clTok, mTok uint64
	// gen is the host's step generation at the oldest host stamp of the
	// exchange in progress (the Delay_Req's send or the Sync's receipt):
	// a sample spanning a step is stale.
	gen    uint64
	genSet bool
	lie    bool // the grandmaster lied when it stamped the newest Sync
}

// hostPeer is the host's address as the grandmaster sees it.
var hostPeer = ptpengine.Peer{IP: [16]byte{10: 0xff, 11: 0xff, 12: 10, 15: 1}, Port: 320}

// logInterval is log2 of a period in seconds, rounded, within PTP's range.
func logInterval(s float64) protocol.LogInterval {
	return protocol.LogInterval(max(-7, min(6, int(math.Round(math.Log2(s))))))
}

// newPTP sets up source i's engines; the client's first tick is due at
// once.
func (r *runner) newPTP(i int) *ptpNode {
	s := r.sc.Sources[i]
	l := logInterval(s.PollS)
	n := &ptpNode{
		cl: ptpengine.NewClient(ptpengine.ClientConfig{
			Servers:     1,
			Identity:    protocol.PortIdentity{ClockIdentity: 0x4d45524944494148, PortNumber: 1},
			LogAnnounce: 0, LogSync: l, LogDelayReq: l,
		}, r.h.clk.NowNS()),
		m: ptpengine.NewMaster(ptpengine.MasterConfig{
			Identity:       protocol.ClockIdentity(0x5352430000000000 | uint64(i)),
			MinLogInterval: -7,
		}),
	}
	t := refTime{r: r, src: i}
	// Advertise what the scenario says the source's error is within.
	eps := int64(s.RootDispersionUS*1e3) + int64(s.RootDelayUS*1e3)/2
	n.m.Step(t.clockNS(), ptpengine.Input{Kind: ptpengine.InputEstimate, Status: truetime.Synchronized, EpsNS: eps, Stratum: s.Stratum})
	return n
}

// ptpTimer schedules engine timer kind (evPoll: the client, evPTPMaster:
// the grandmaster) of source i at clock reading deadlineNS, given the
// clock's reading nowNS.
func (r *runner) ptpTimer(i int, kind evKind, deadlineNS, nowNS int64) {
	n := r.h.ptp[i]
	tok := &n.clTok
	if kind == evPTPMaster {
		tok = &n.mTok
	}
	*tok++
	wait := deadlineNS - nowNS
	if deadlineNS == math.MaxInt64 || wait > int64(24*3600*1e9) {
		return // nothing scheduled (a grandmaster without clients): a datagram wakes it
	}
	r.push(&event{at: r.now + max(wait, 1000), kind: kind, src: i, tok: *tok})
}

// ptpClientTick fires the client's timer (stale tokens are ignored).
func (r *runner) ptpClientTick(e *event) error {
	n := r.h.ptp[e.src]
	if e.tok != n.clTok {
		return nil
	}
	n.cl.Step(r.h.clk.NowNS(), ptpengine.Input{Kind: ptpengine.InputTick})
	return r.ptpFlushClient(e.src)
}

// ptpFlushClient sends what the client wants sent, reports the Delay_Req's
// transmit stamp, hands samples to the loop and reschedules its timer.
func (r *runner) ptpFlushClient(i int) error {
	n := r.h.ptp[i]
	for {
		now := r.h.clk.NowNS()
		rd := n.cl.Ready()
		for _, smp := range rd.Samples {
			if err := r.ptpSample(i, smp); err != nil {
				return err
			}
		}
		var txNS int64
		for _, d := range rd.Send {
			r.res.Requests++
			if d.Event {
				txNS = now // the Delay_Req leaves now: its stamp is exact
				r.ptpNoteGen(n)
			}
			if dl, ok := r.link(i, true); ok {
				r.push(&event{at: r.now + dl, kind: evAtSrv, src: i, ptp: true, evPort: d.Event, pkt: append([]byte(nil), d.Data...)})
			}
		}
		deadline := rd.DeadlineNS
		n.cl.Advance()
		if txNS == 0 {
			r.ptpTimer(i, evPoll, deadline, now)
			return nil
		}
		n.cl.Step(now, ptpengine.Input{Kind: ptpengine.InputTxStamp, TxNS: txNS})
	}
}

// ptpNoteGen records the generation at a host stamp of the exchange in
// progress, keeping the oldest.
func (r *runner) ptpNoteGen(n *ptpNode) {
	if !n.genSet {
		n.gen, n.genSet = r.h.loop.Gen(), true
	}
}

// ptpSample hands one sample to the loop, as meridiand's PTP port does.
func (r *runner) ptpSample(i int, smp discipline.Sample) error {
	n := r.h.ptp[i]
	gen := n.gen
	if !n.genSet {
		gen = r.h.loop.Gen()
	}
	n.genSet = false
	err := r.h.loop.AddSample(r.sc.Sources[i].Name, smp, gen)
	if errors.Is(err, discipline.ErrStaleSample) {
		return nil
	}
	if err != nil {
		return err
	}
	r.hasSample[i], r.newestLies[i] = true, n.lie
	if !n.lie || r.res.Mode == TruthReference {
		r.noteSampleMin(smp)
	}
	return nil
}

// ptpHostReceive hands a datagram from the grandmaster to the client.
func (r *runner) ptpHostReceive(e *event) error {
	n := r.h.ptp[e.src]
	if e.evPort {
		n.lie = e.lie // a Sync: what its origin stamp says
		r.ptpNoteGen(n)
	}
	n.cl.Step(r.h.clk.NowNS(), ptpengine.Input{Kind: ptpengine.InputDatagram, Server: 0, Event: e.evPort, Datagram: e.pkt, RxNS: r.h.clk.NowNS()})
	return r.ptpFlushClient(e.src)
}

// ptpServe hands a datagram from the host to the grandmaster.
func (r *runner) ptpServe(e *event) {
	t := refTime{r: r, src: e.src}
	now := t.clockNS()
	r.h.ptp[e.src].m.Step(now, ptpengine.Input{Kind: ptpengine.InputDatagram, Peer: hostPeer, Event: e.evPort, Datagram: e.pkt, RxNS: now})
	r.ptpFlushMaster(e.src)
}

// ptpMasterTick fires the grandmaster's timer.
func (r *runner) ptpMasterTick(e *event) {
	n := r.h.ptp[e.src]
	if e.tok != n.mTok {
		return
	}
	n.m.Step(refTime{r: r, src: e.src}.clockNS(), ptpengine.Input{Kind: ptpengine.InputTick})
	r.ptpFlushMaster(e.src)
}

// ptpFlushMaster sends what the grandmaster wants sent, reports its Syncs'
// transmit stamps and reschedules its timer.
func (r *runner) ptpFlushMaster(i int) {
	n := r.h.ptp[i]
	s := r.sc.Sources[i]
	t := refTime{r: r, src: i}
	for {
		now := t.clockNS()
		rd := n.m.Ready()
		lie := s.lies(float64(sourceErrorNS(s, float64(r.now-startTrueNS)/1e9)) / 1e6)
		var txIDs []uint64
		for _, d := range rd.Send {
			if d.TxID != 0 {
				txIDs = append(txIDs, d.TxID)
			}
			if dl, ok := r.link(i, false); ok {
				r.push(&event{at: r.now + dl, kind: evAtHost, src: i, ptp: true, evPort: d.Event, lie: lie, pkt: append([]byte(nil), d.Data...)})
			}
		}
		deadline := rd.DeadlineNS
		n.m.Advance()
		if len(txIDs) == 0 {
			r.ptpTimer(i, evPTPMaster, deadline, now)
			return
		}
		for _, id := range txIDs {
			n.m.Step(now, ptpengine.Input{Kind: ptpengine.InputTxStamp, TxID: id, TxNS: now})
		}
	}
}
