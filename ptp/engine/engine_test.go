package engine

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/facebook/time/ptp/protocol"

	"github.com/meridiantime/meridian/truetime"
)

const (
	masterOff = int64(2_500_000) // master clock − true time
	clientOff = int64(-700_000)  // client clock − true time
	injected  = masterOff - clientOff
)

func oneMaster(up, down int64) *mnode {
	return &mnode{m: NewMaster(gmConfig(0xaa)), off: masterOff, up: up, down: down}
}

func checkAll(t *testing.T, w *world, min int, wantOff float64, wantDelay int64) {
	t.Helper()
	if len(w.samples) < min {
		t.Fatalf("%d samples, want ≥ %d (client %+v, master %+v)", len(w.samples), min, w.cl.Counters(), w.ms[0].m.Counters())
	}
	for i, s := range w.samples {
		if s.OffsetNS() != wantOff || s.DelayNS() != wantDelay {
			t.Fatalf("sample %d: offset %.1f ns delay %d ns, want %.1f and %d", i, s.OffsetNS(), s.DelayNS(), wantOff, wantDelay)
		}
	}
}

// A client and a grandmaster through a symmetric link, clocks 3.2 ms apart:
// after the negotiation every sample's offset is the injected offset and its
// delay the round trip, exactly. The t1..t4 mapping is checked against the
// virtual clocks directly: t1 is the client's reading when the Delay_Req
// left (the kernel's TX stamp), t2 the master's when it arrived, t3 the
// master's when the Sync left, t4 the client's when it arrived — so the
// discipline's θ and δ formulas are PTP's offsetFromMaster (negated) and
// twice its meanPathDelay.
func TestClientMeasuresInjectedOffsetExactly(t *testing.T) {
	const up, down, lag = 40_000, 40_000, 15_000
	w := newWorld(t, clientConfig(), clientOff, oneMaster(up, down))
	w.txLag = lag
	w.run(30e9)
	checkAll(t, w, 20, float64(injected), up+down)
	for i, s := range w.samples {
		if s.T2NS-s.T1NS != injected+up || s.T4NS-s.T3NS != down-injected {
			t.Fatalf("sample %d: t2−t1 %d, t4−t3 %d: want %d and %d", i, s.T2NS-s.T1NS, s.T4NS-s.T3NS, injected+up, down-injected)
		}
		// The Delay_Req left right behind the Sync it is paired with: t1
		// is the Sync's arrival reading t4 plus the TX stamp's lag, and
		// the sample is made when the Delay_Resp arrives, a round trip
		// (and the master's send lag) after t1.
		if s.T1NS-s.T4NS != lag {
			t.Fatalf("sample %d: t1 − t4 = %d, want the TX lag %d", i, s.T1NS-s.T4NS, int64(lag))
		}
		if s.T1NS+up+lag+down != w.sampleT[i]+clientOff {
			t.Fatalf("sample %d: delivered at reading %d, want t1 + round trip = %d", i, w.sampleT[i]+clientOff, s.T1NS+up+lag+down)
		}
		if err := s.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	// Negotiated, not free-running: grants from the master, one stable
	// PortIdentity, exact messageLength and the unicast/two-step flags.
	if c := w.ms[0].m.Counters(); c.Clients != 1 || c.Grants != 3 || c.TxTimeouts != 0 {
		t.Fatalf("master counters %+v", c)
	}
	checkWire(t, w)
}

// checkWire: every datagram either engine sent has messageLength equal to
// its length, version 2, the unicast flag, Sync also TwoStep, and the
// client always uses its one PortIdentity.
func checkWire(t *testing.T, w *world) {
	t.Helper()
	for _, d := range w.sent {
		var h protocol.Header
		if err := decodeHeader(d.data, &h); err != nil {
			t.Fatal(err)
		}
		if int(h.MessageLength) != len(d.data) || h.Version&0xf != 2 || h.FlagField&protocol.FlagUnicast == 0 {
			t.Fatalf("%v: length %d of %d, version %#x, flags %#x", h.MessageType(), h.MessageLength, len(d.data), h.Version, h.FlagField)
		}
		if h.MessageType() == protocol.MessageSync && h.FlagField&protocol.FlagTwoStep == 0 {
			t.Fatal("Sync without TwoStep")
		}
		if d.toMaster >= 0 && h.SourcePortIdentity != w.cl.cfg.Identity {
			t.Fatalf("client sent %v as %v", h.MessageType(), h.SourcePortIdentity)
		}
	}
}

// Negative controls for the transmit stamps. Without the client's TX
// stamp its t1 is the pre-send reading, lag early: the offset is off by
// lag/2 and the delay by lag. Without the master's, no Follow_Up goes out
// and no sample is made (counted as TX stamp timeouts).
func TestTxStampsMatter(t *testing.T) {
	const up, down, lag = 40_000, 40_000, 15_000
	w := newWorld(t, clientConfig(), clientOff, oneMaster(up, down))
	w.txLag, w.clientTx = lag, false
	w.run(20e9)
	checkAll(t, w, 10, float64(injected)+lag/2, up+down+lag)

	w = newWorld(t, clientConfig(), clientOff, oneMaster(up, down))
	w.txLag, w.masterTx = lag, false
	w.run(20e9)
	if len(w.samples) != 0 || w.ms[0].m.Counters().TxTimeouts == 0 {
		t.Fatalf("no master TX stamps: %d samples, %+v", len(w.samples), w.ms[0].m.Counters())
	}
}

// A transmit stamp that is reported only after the Delay_Resp came (a slow
// error queue) still replaces the pre-send reading: samples stay exact.
func TestLateTxStamp(t *testing.T) {
	const up, down, lag = 40_000, 40_000, 15_000
	w := newWorld(t, clientConfig(), clientOff, oneMaster(up, down))
	w.txLag, w.lateTx = lag, true
	w.run(20e9)
	checkAll(t, w, 10, float64(injected), up+down)
}

// With path asymmetry the offset is off by exactly (up − down)/2, as
// physics demands, and the error stays within half the measured delay
// (what the bound adds).
func TestAsymmetryShiftsOffsetByHalf(t *testing.T) {
	const up, down = 20_000, 80_000
	w := newWorld(t, clientConfig(), clientOff, oneMaster(up, down))
	w.run(20e9)
	checkAll(t, w, 10, float64(injected)+float64(up-down)/2, up+down)
	for _, s := range w.samples {
		if e := s.OffsetNS() - float64(injected); e < -float64(s.DelayNS())/2 || e > float64(s.DelayNS())/2 {
			t.Fatalf("offset error %.0f beyond δ/2 = %d", e, s.DelayNS()/2)
		}
	}
}

// A transparent clock on the path adds its residence time to the
// correctionField of Sync (7 µs) and Delay_Req (3 µs, echoed in
// Delay_Resp): the client takes both out and measures the link alone,
// exactly. Negative control: a client that ignores correctionField is off
// by (3 − 7)/2 µs and sees the residence times as delay.
func TestCorrectionFieldApplied(t *testing.T) {
	const up, down, rSync, rReq = 30_000, 30_000, 7_000, 3_000
	tc := func(d *delivery) bool {
		switch msgType(d.data) {
		case protocol.MessageSync:
			d.at += rSync
			addCorrection(d.data, rSync)
		case protocol.MessageDelayReq:
			d.at += rReq
			addCorrection(d.data, rReq)
		}
		return true
	}
	w := newWorld(t, clientConfig(), clientOff, oneMaster(up, down))
	w.tamper = tc
	w.run(20e9)
	checkAll(t, w, 10, float64(injected), up+down)

	w = newWorld(t, clientConfig(), clientOff, oneMaster(up, down))
	w.tamper = tc
	w.cl.ignoreCorrection = true
	w.run(20e9)
	checkAll(t, w, 10, float64(injected)+float64(rReq-rSync)/2, up+down+rSync+rReq)
}

// The PTP timescale is TAI: the client subtracts the master's
// currentUtcOffset (36 s here, flagged valid) and measures the offset
// exactly; an ARB master's time is taken as it is. Negative control: with
// UTC_OFF_VALID cleared in flight the client falls back to its default
// (37 s), takes the master for a second behind — the flag is what it reads.
func TestTimescale(t *testing.T) {
	cfg := gmConfig(0xaa)
	cfg.UTCOffsetS = 36
	w := newWorld(t, clientConfig(), clientOff, &mnode{m: NewMaster(cfg), off: masterOff, up: 1000, down: 1000})
	w.run(15e9)
	checkAll(t, w, 5, float64(injected), 2000)

	cfg.ARB = true
	w = newWorld(t, clientConfig(), clientOff, &mnode{m: NewMaster(cfg), off: masterOff, up: 1000, down: 1000})
	w.run(15e9)
	checkAll(t, w, 5, float64(injected), 2000)

	cfg.ARB = false
	w = newWorld(t, clientConfig(), clientOff, &mnode{m: NewMaster(cfg), off: masterOff, up: 1000, down: 1000})
	w.tamper = func(d *delivery) bool {
		if msgType(d.data) == protocol.MessageAnnounce {
			f := binary.BigEndian.Uint16(d.data[6:]) &^ protocol.FlagCurrentUtcOffsetValid
			binary.BigEndian.PutUint16(d.data[6:], f)
		}
		return true
	}
	w.run(15e9)
	checkAll(t, w, 5, float64(injected)-1e9, 2000)
}

// Lost Syncs, Follow_Ups and Delay_Resps (sequence gaps) cost samples,
// never correctness; a duplicated Follow_Up is rejected as a sequence
// error, not turned into a second sample.
func TestSequenceGapsTolerated(t *testing.T) {
	n := map[protocol.MessageType]int{}
	w := newWorld(t, clientConfig(), clientOff, oneMaster(10_000, 10_000))
	w.tamper = func(d *delivery) bool {
		mt := msgType(d.data)
		n[mt]++
		switch mt {
		case protocol.MessageSync:
			return n[mt]%3 != 0
		case protocol.MessageFollowUp:
			if n[mt]%5 == 0 {
				dup := *d
				dup.data = append([]byte(nil), d.data...)
				dup.at += 1000
				w.enqueue(dup) // delivered 1 µs after the original
			}
			return n[mt]%4 != 0
		case protocol.MessageDelayResp:
			return n[mt]%5 != 0
		}
		return true
	}
	w.run(60e9)
	checkAll(t, w, 20, float64(injected), 20_000)
	if w.cl.Counters().Samples != uint64(len(w.samples)) {
		t.Fatal("counter and samples disagree")
	}
}

// Negotiation as ptp4l does it: grants renewed at ¾ of their duration; a
// refused rate (duration 0) is retried with a doubling backoff and gives
// no samples.
func TestRenewalAndRefusal(t *testing.T) {
	cc := clientConfig()
	cc.DurationS = 8
	w := newWorld(t, cc, clientOff, oneMaster(10_000, 10_000))
	w.run(40e9)
	var annReq []int64
	for _, d := range w.sent {
		if d.toMaster >= 0 && msgType(d.data) == protocol.MessageSignaling {
			var s signaling
			if err := decodeSignaling(d.data, &s); err != nil {
				t.Fatal(err)
			}
			for _, tl := range s.TLVs {
				if tl.Type == protocol.TLVRequestUnicastTransmission && tl.MsgType == protocol.MessageAnnounce {
					annReq = append(annReq, d.at)
				}
			}
		}
	}
	if len(annReq) < 5 {
		t.Fatalf("announce requests at %v", annReq)
	}
	for i := 1; i < len(annReq); i++ {
		// ¾ of 8 s after the grant came back (one round trip after the request)
		if gap := annReq[i] - annReq[i-1]; gap != 6e9+20_000 {
			t.Fatalf("renewal %d after %d ns, want 6 s (¾ of 8 s) + the round trip", i, gap)
		}
	}
	if len(w.samples) < 20 || w.cl.Counters().Refusals != 0 {
		t.Fatalf("%d samples, %+v", len(w.samples), w.cl.Counters())
	}

	// The master grants nothing faster than 1 s; the client asks 8 Sync/s.
	cc = clientConfig()
	cc.LogSync = -3
	cfg := gmConfig(0xaa)
	cfg.MinLogInterval = 0
	w = newWorld(t, cc, clientOff, &mnode{m: NewMaster(cfg), off: masterOff, up: 10_000, down: 10_000})
	w.run(40e9)
	var syncReq []int64
	for _, d := range w.sent {
		if d.toMaster >= 0 && msgType(d.data) == protocol.MessageSignaling {
			var s signaling
			_ = decodeSignaling(d.data, &s)
			for _, tl := range s.TLVs {
				if tl.MsgType == protocol.MessageSync {
					syncReq = append(syncReq, d.at)
				}
			}
		}
	}
	if len(w.samples) != 0 || w.cl.Counters().Refusals < 3 || w.ms[0].m.Counters().DeniedRate < 3 {
		t.Fatalf("refused rate: %d samples, client %+v master %+v", len(w.samples), w.cl.Counters(), w.ms[0].m.Counters())
	}
	for i := 2; i < len(syncReq); i++ {
		g1, g2 := syncReq[i-1]-syncReq[i-2], syncReq[i]-syncReq[i-1]
		if g2 != min(2*g1, maxBackoffNS) {
			t.Fatalf("retries at %v: not a doubling backoff", syncReq)
		}
	}
}

// The BMCA picks the better of two grandmasters (priority1 100 over 128),
// samples come from it; when it falls silent its Announces time out, the
// client cancels its grants and moves to the other, whose offset it then
// measures exactly.
func TestBMCAFailover(t *testing.T) {
	a := gmConfig(0xaa)
	b := gmConfig(0xbb)
	b.Priority1 = 100
	const offB = -4_000_000
	w := newWorld(t, clientConfig(), clientOff,
		&mnode{m: NewMaster(a), off: masterOff, up: 5000, down: 5000},
		&mnode{m: NewMaster(b), off: offB, up: 5000, down: 5000})
	w.run(20e9)
	if w.cl.Selected() != 1 {
		t.Fatalf("selected %d, want 1 (priority1 100)", w.cl.Selected())
	}
	checkAll(t, w, 5, float64(offB-clientOff), 10_000)
	w.samples, w.sent = nil, nil
	w.ms[1].alive = false
	w.run(30e9)
	if w.cl.Selected() != 0 {
		t.Fatalf("after B died: selected %d", w.cl.Selected())
	}
	var canceled bool
	for _, d := range w.sent {
		if d.toMaster == 1 && msgType(d.data) == protocol.MessageSignaling {
			var s signaling
			_ = decodeSignaling(d.data, &s)
			canceled = canceled || (len(s.TLVs) > 0 && s.TLVs[0].Type == protocol.TLVCancelUnicastTransmission)
		}
	}
	if !canceled {
		t.Fatal("no CANCEL sent to the master that was left")
	}
	checkAll(t, w, 5, float64(injected), 10_000)
}

// Compare follows 1588's order: priority1, class, accuracy, variance,
// priority2, identity; same grandmaster: steps removed, then sender.
func TestCompareOrder(t *testing.T) {
	base := Dataset{Priority1: 128, Quality: protocol.ClockQuality{ClockClass: 6, ClockAccuracy: 0x21, OffsetScaledLogVariance: 0x4e5d}, Priority2: 128, GMIdentity: 5}
	worse := []func(*Dataset){
		func(d *Dataset) { d.Priority1 = 129; d.Quality.ClockClass = 0; d.GMIdentity = 4 },
		func(d *Dataset) { d.Quality.ClockClass = 7; d.Quality.ClockAccuracy = 0; d.GMIdentity = 4 },
		func(d *Dataset) {
			d.Quality.ClockAccuracy = 0x22
			d.Quality.OffsetScaledLogVariance = 0
			d.GMIdentity = 4
		},
		func(d *Dataset) { d.Quality.OffsetScaledLogVariance = 0x4e5e; d.Priority2 = 0; d.GMIdentity = 4 },
		func(d *Dataset) { d.Priority2 = 129; d.GMIdentity = 1 },
		func(d *Dataset) { d.GMIdentity = 6 },
	}
	for i, f := range worse {
		d := base
		f(&d)
		if Compare(base, d) != -1 || Compare(d, base) != 1 {
			t.Fatalf("case %d: %+v not worse than %+v", i, d, base)
		}
	}
	far := base
	far.StepsRemoved = 1
	far.Sender.ClockIdentity = 0
	if Compare(base, far) != -1 {
		t.Fatal("same grandmaster: fewer steps removed must win")
	}
	if Compare(base, base) != 0 {
		t.Fatal("equal datasets")
	}
}

// The grandmaster's stratum reaches the client's samples as in NTP: a
// grandmaster at stratum 3 advertises stepsRemoved 2 and its client's
// samples have stratum 3 (the discipline adds one for the client's own).
func TestStratumThroughStepsRemoved(t *testing.T) {
	m := oneMaster(1000, 1000)
	w := newWorld(t, clientConfig(), clientOff, m)
	m.m.Step(w.T+m.off, Input{Kind: InputEstimate, Status: truetime.Synchronized, EpsNS: 2000, Stratum: 3})
	w.run(10e9)
	checkAll(t, w, 3, float64(injected), 2000)
	for _, s := range w.samples {
		if s.Stratum != 3 {
			t.Fatalf("sample stratum %d, want 3", s.Stratum)
		}
	}
}

// A client configured for domain 24 ignores a master in domain 0 (its
// grants and Announces are dropped and counted); both in 24 work.
func TestDomain(t *testing.T) {
	cc := clientConfig()
	cc.Domain = 24
	w := newWorld(t, cc, clientOff, oneMaster(1000, 1000))
	w.run(10e9)
	if len(w.samples) != 0 || w.ms[0].m.Counters().DroppedDomain == 0 {
		t.Fatalf("domain mismatch: %d samples, %+v", len(w.samples), w.ms[0].m.Counters())
	}
	cfg := gmConfig(0xaa)
	cfg.Domain = 24
	w = newWorld(t, cc, clientOff, &mnode{m: NewMaster(cfg), off: masterOff, up: 1000, down: 1000})
	w.run(10e9)
	checkAll(t, w, 3, float64(injected), 2000)
}

// clockClass 248 (unsynchronized) gives no samples unless the client
// accepts it (ptp4l's free-running default); the Announce still counts.
func TestUnsynchronizedMaster(t *testing.T) {
	m := NewMaster(gmConfig(0xaa)) // no estimate: 248
	w := &world{t: t, T: trueStart, clOff: clientOff, ms: []*mnode{{m: m, off: masterOff, up: 1000, down: 1000, alive: true}}, clientTx: true, masterTx: true}
	cc := clientConfig()
	cc.Servers = 1
	w.cl = NewClient(cc, w.T+clientOff)
	w.flushClient()
	w.run(10e9)
	if len(w.samples) != 0 || w.cl.Counters().Rejected == 0 {
		t.Fatalf("248 master: %d samples, %+v", len(w.samples), w.cl.Counters())
	}
	w.cl.cfg.AcceptDefaultClass = true
	w.run(10e9)
	checkAll(t, w, 3, float64(injected), 2000)
}

// A master's CANCEL of the Sync grant is acknowledged; the client stops
// sending Delay_Reqs, asks again after its backoff, and measures again
// once granted.
func TestClientAcknowledgesCancel(t *testing.T) {
	w := newWorld(t, clientConfig(), clientOff, oneMaster(10_000, 10_000))
	w.run(5e9)
	h := protocol.Header{FlagField: protocol.FlagUnicast, SourcePortIdentity: protocol.PortIdentity{ClockIdentity: 0xaa, PortNumber: 1}}
	cancel := encodeSignaling(make([]byte, MaxDatagram), h, w.cl.cfg.Identity,
		[]unicastTLV{{Type: protocol.TLVCancelUnicastTransmission, MsgType: protocol.MessageSync}})
	w.sent, w.samples = nil, nil
	w.enqueue(delivery{at: w.T, toMaster: -1, from: 0, data: cancel})
	w.run(1)
	if st := w.cl.Server(0, w.T+clientOff); st.SyncGranted {
		t.Fatal("Sync grant still held after the master's CANCEL")
	}
	var ack, rerequest int64
	w.run(10e9)
	for _, d := range w.sent {
		if d.toMaster != 0 || msgType(d.data) != protocol.MessageSignaling {
			continue
		}
		var s signaling
		_ = decodeSignaling(d.data, &s)
		for _, tl := range s.TLVs {
			switch {
			case tl.Type == protocol.TLVAcknowledgeCancelUnicastTransmission && tl.MsgType == protocol.MessageSync && ack == 0:
				ack = d.at
			case tl.Type == protocol.TLVRequestUnicastTransmission && tl.MsgType == protocol.MessageSync && rerequest == 0:
				rerequest = d.at
			}
		}
	}
	if ack == 0 || rerequest-ack < int64(minBackoffNS)-int64(100_000) {
		t.Fatalf("ACK_CANCEL at %d, new request at %d", ack, rerequest)
	}
	checkAll(t, w, 5, float64(injected), 20_000)
	for _, d := range w.sent {
		if d.toMaster == 0 && msgType(d.data) == protocol.MessageDelayReq && d.at > ack && d.at < rerequest {
			t.Fatal("a Delay_Req between the CANCEL and the new request")
		}
	}
}

// A master that was unreachable for five minutes is asked again within
// maxLostBackoffNS once it answers: unanswered requests back off to 8 s at
// most, not to the 64 s a refusing master gets (with silence doubling to
// 64 s, a random world with 25 % loss went nine minutes with two samples).
// Samples resume within 15 s (the backoff, two Announces to qualify, the
// grants and one Sync/Delay_Req pairing).
func TestResumesSoonAfterSilence(t *testing.T) {
	w := newWorld(t, clientConfig(), clientOff, oneMaster(10_000, 10_000))
	w.run(10e9)
	if len(w.samples) == 0 {
		t.Fatalf("no samples before the silence: %+v", w.cl.Counters())
	}
	w.ms[0].alive = false
	w.run(300e9)
	w.samples, w.sampleT = nil, nil
	back := w.T
	w.ms[0].alive = true
	w.run(60e9)
	if len(w.sampleT) == 0 {
		t.Fatalf("no sample within 60 s of the master's return (client %+v)", w.cl.Counters())
	}
	if after := time.Duration(w.sampleT[0] - back); after > 15*time.Second {
		t.Fatalf("first sample %v after the master answered again, want ≤ 15 s", after)
	}
}

// A client clock 200 ppm slow (within any oscillator's tolerance) with
// Syncs 2 s apart and a 60 µs round trip: each Delay_Req is sent right
// behind a Sync and paired with it, so the rate error acts over the
// microseconds between them, not over a Sync interval, and every
// exchange makes a sample whose δ is the round trip. Paired with the next
// Sync instead, δ would come out ~400 µs short (negative), and the
// discipline would reject every sample as impossible.
func TestSlowClockLongSyncIntervalKeepsSamples(t *testing.T) {
	const up, down = 30_000, 30_000
	cc := clientConfig()
	cc.LogSync, cc.LogDelayReq = 1, 1
	w := newWorld(t, cc, clientOff, oneMaster(up, down))
	w.clRate = -200e-6
	w.run(120e9)
	c := w.cl.Counters()
	if c.Rejected != 0 || len(w.samples) < 50 || uint64(len(w.samples)) < c.DelayReqs-1 {
		t.Fatalf("%d samples of %d Delay_Reqs, %d rejected: want one per exchange", len(w.samples), c.DelayReqs, c.Rejected)
	}
	for i, s := range w.samples {
		if d := s.DelayNS(); d < up+down-100 || d > up+down+100 {
			t.Fatalf("sample %d: δ %d ns, want the round trip %d ± 100", i, d, up+down)
		}
		if err := s.Validate(); err != nil {
			t.Fatal(err)
		}
	}
}
