package engine

import (
	"encoding/binary"
	"math"
	"sort"
	"testing"

	"github.com/facebook/time/ptp/protocol"

	"github.com/meridiantime/meridian/discipline"
	"github.com/meridiantime/meridian/truetime"
)

// world is an in-memory network of one client engine and several
// grandmaster engines, each with its own virtual clock: a clock reads true
// time plus its offset (ns). Links have a fixed delay per direction; the
// kernel's transmit stamp is txLag after the engine's pre-send reading (the
// datagram leaves then). Everything is exact integer ns: what the engines
// measure can be compared with what was injected, exactly.
type world struct {
	t     *testing.T
	T     int64 // true time
	cl    *Client
	clOff int64
	// clRate is the client clock's rate error (−200e-6: 200 ppm slow).
	clRate float64
	ms     []*mnode
	q      []delivery
	txLag  int64
	// clientTx, masterTx: report transmit stamps (else the client keeps
	// its pre-send reading and the master times out every Follow_Up).
	clientTx, masterTx bool
	// lateTx: the client's transmit stamp is reported only after the
	// Delay_Resp has arrived (a slow error queue).
	lateTx    bool
	pendingTx int64
	// tamper may change or drop (return false) a datagram in flight.
	tamper func(d *delivery) bool

	samples []discipline.Sample
	sampleT []int64 // true time each sample was delivered
	sent    []delivery
}

type mnode struct {
	m     *Master
	off   int64
	down  int64 // master → client delay
	up    int64 // client → master delay
	alive bool
}

type delivery struct {
	at       int64 // true arrival time
	toMaster int   // master index; -1: the client
	from     int   // for the client: which master
	event    bool
	data     []byte
}

var clientPeer = Peer{IP: [16]byte{15: 2}, Port: 320}

const trueStart = int64(1_790_000_000) * 1e9

func newWorld(t *testing.T, ccfg ClientConfig, clOff int64, masters ...*mnode) *world {
	ccfg.Servers = len(masters)
	w := &world{t: t, T: trueStart, clOff: clOff, ms: masters, clientTx: true, masterTx: true}
	w.cl = NewClient(ccfg, w.T+clOff)
	for _, m := range masters {
		m.alive = true
		m.m.Step(w.T+m.off, Input{Kind: InputEstimate, Status: truetime.Synchronized, EpsNS: 2_000})
		w.flushMaster(0, m)
	}
	w.flushClient()
	return w
}

// local is the client's clock reading at true time T.
func (w *world) local(T int64) int64 {
	return T + w.clOff + int64(w.clRate*float64(T-trueStart))
}

// trueAt is the true time at which the client's clock reads l (the first
// ns at or after it).
func (w *world) trueAt(l int64) int64 {
	T := trueStart + int64(float64(l-w.clOff-trueStart)/(1+w.clRate))
	for w.local(T) < l {
		T++
	}
	return T
}

func (w *world) flushClient() {
	for {
		rd := w.cl.Ready()
		w.samples = append(w.samples, rd.Samples...)
		for range rd.Samples {
			w.sampleT = append(w.sampleT, w.T)
		}
		var txNS int64
		for _, d := range rd.Send {
			m := w.ms[d.Server]
			dl := delivery{at: w.T + w.txLag + m.up, toMaster: d.Server, event: d.Event, data: append([]byte(nil), d.Data...)}
			w.send(dl)
			if d.Event {
				txNS = w.local(w.T + w.txLag)
			}
		}
		w.cl.Advance()
		if txNS != 0 && w.lateTx {
			w.pendingTx = txNS
			return
		}
		if txNS == 0 || !w.clientTx {
			return
		}
		w.cl.Step(w.local(w.T), Input{Kind: InputTxStamp, TxNS: txNS})
	}
}

func (w *world) flushMaster(i int, m *mnode) {
	for {
		rd := m.m.Ready()
		var tx []uint64
		for _, d := range rd.Send {
			if d.Peer != clientPeer {
				w.t.Fatalf("master %d sent to %v", i, d.Peer)
			}
			w.send(delivery{at: w.T + w.txLag + m.down, toMaster: -1, from: i, event: d.Event, data: append([]byte(nil), d.Data...)})
			if d.Event {
				tx = append(tx, d.TxID)
			}
		}
		m.m.Advance()
		if len(tx) == 0 || !w.masterTx {
			return
		}
		for _, id := range tx {
			m.m.Step(w.T+m.off, Input{Kind: InputTxStamp, TxID: id, TxNS: w.T + w.txLag + m.off})
		}
	}
}

func (w *world) send(d delivery) {
	w.sent = append(w.sent, d)
	if w.tamper != nil && !w.tamper(&d) {
		return
	}
	w.enqueue(d)
}

func (w *world) enqueue(d delivery) {
	i := sort.Search(len(w.q), func(k int) bool { return w.q[k].at > d.at })
	w.q = append(w.q, delivery{})
	copy(w.q[i+1:], w.q[i:])
	w.q[i] = d
}

// run advances true time by durNS, processing every event in order.
func (w *world) run(durNS int64) {
	end := w.T + durNS
	for steps := 0; ; steps++ {
		if steps > 10_000_000 {
			w.t.Fatal("world: no progress")
		}
		next, who := int64(math.MaxInt64), -2
		if d := w.cl.Ready().DeadlineNS; d != math.MaxInt64 && w.trueAt(d) < next {
			next, who = w.trueAt(d), -1
		}
		for i, m := range w.ms {
			if d := m.m.Ready().DeadlineNS; m.alive && d != math.MaxInt64 && d-m.off < next {
				next, who = d-m.off, i
			}
		}
		if len(w.q) > 0 && w.q[0].at <= next {
			next, who = w.q[0].at, -3
		}
		if next > end {
			w.T = end
			return
		}
		w.T = max(w.T, next)
		switch {
		case who == -1:
			w.cl.Step(w.local(w.T), Input{Kind: InputTick})
			w.flushClient()
		case who >= 0:
			m := w.ms[who]
			m.m.Step(w.T+m.off, Input{Kind: InputTick})
			w.flushMaster(who, m)
		default:
			d := w.q[0]
			w.q = w.q[1:]
			if d.toMaster < 0 {
				w.cl.Step(w.local(w.T), Input{Kind: InputDatagram, Server: d.from, Event: d.event, Datagram: d.data, RxNS: w.local(w.T)})
				w.flushClient()
				if w.pendingTx != 0 && msgType(d.data) == protocol.MessageDelayResp {
					w.cl.Step(w.local(w.T), Input{Kind: InputTxStamp, TxNS: w.pendingTx})
					w.pendingTx = 0
					w.flushClient()
				}
			} else if m := w.ms[d.toMaster]; m.alive {
				m.m.Step(w.T+m.off, Input{Kind: InputDatagram, Peer: clientPeer, Event: d.event, Datagram: d.data, RxNS: w.T + m.off})
				w.flushMaster(d.toMaster, m)
			}
		}
	}
}

// msgType of a datagram in flight.
func msgType(b []byte) protocol.MessageType { return protocol.SdoIDAndMsgType(b[0]).MsgType() }

// addCorrection adds ns to a message's correctionField, as a transparent
// clock does for its residence time.
func addCorrection(b []byte, ns int64) {
	c := int64(binary.BigEndian.Uint64(b[8:]))
	binary.BigEndian.PutUint64(b[8:], uint64(c+ns<<16))
}

func gmConfig(id protocol.ClockIdentity) MasterConfig {
	return MasterConfig{Identity: id, MinLogInterval: -4}
}

func clientConfig() ClientConfig {
	return ClientConfig{Identity: protocol.PortIdentity{ClockIdentity: 0x1122334455667788, PortNumber: 1}}
}
