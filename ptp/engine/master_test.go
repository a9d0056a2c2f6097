package engine

import (
	"math"
	"testing"

	"github.com/facebook/time/ptp/protocol"

	"github.com/meridiantime/meridian/truetime"
)

var clientID = protocol.PortIdentity{ClockIdentity: 0x0102030405060708, PortNumber: 1}

// requestMsg builds a client's Signaling message with tlvs, as a client
// engine would.
func requestMsg(domain uint8, tlvs ...unicastTLV) []byte {
	h := protocol.Header{DomainNumber: domain, FlagField: protocol.FlagUnicast, SourcePortIdentity: clientID, SequenceID: 7}
	return encodeSignaling(make([]byte, MaxDatagram), h, protocol.DefaultTargetPortIdentity, tlvs)
}

func req(t protocol.MessageType, log protocol.LogInterval, durS uint32) unicastTLV {
	return unicastTLV{Type: protocol.TLVRequestUnicastTransmission, MsgType: t, LogPeriod: log, Duration: durS}
}

func peer(n byte) Peer { return Peer{IP: [16]byte{15: n}} }

// grants returns the GRANT TLVs the master just sent to p.
func grants(t *testing.T, m *Master, p Peer) []unicastTLV {
	t.Helper()
	var out []unicastTLV
	for _, d := range m.Ready().Send {
		if d.Peer != p || msgType(d.Data) != protocol.MessageSignaling {
			continue
		}
		var s signaling
		if err := decodeSignaling(d.Data, &s); err != nil {
			t.Fatal(err)
		}
		if s.Target != clientID {
			t.Fatalf("grant addressed to %v", s.Target)
		}
		out = append(out, s.TLVs...)
	}
	m.Advance()
	return out
}

// The grandmaster grants within its limits: a rate faster than the
// minimum interval or slower than the maximum, a zero duration and an
// unsupported message type are refused (duration 0); a duration beyond
// the maximum is granted the maximum; a client beyond max_clients is
// refused; every refusal is counted. A freed slot (CANCEL) admits a new
// client.
func TestMasterGrantLimits(t *testing.T) {
	cfg := gmConfig(0xaa)
	cfg.MinLogInterval, cfg.MaxLogInterval, cfg.MaxDurationS, cfg.MaxClients = -3, 4, 300, 2
	m := NewMaster(cfg)
	now := trueStart
	step := func(p Peer, b []byte) []unicastTLV {
		m.Step(now, Input{Kind: InputDatagram, Peer: p, Datagram: b, RxNS: now})
		return grants(t, m, p)
	}
	g := step(peer(1), requestMsg(0,
		req(protocol.MessageSync, -4, 60),         // too fast
		req(protocol.MessageAnnounce, 5, 60),      // too slow
		req(protocol.MessageDelayResp, 0, 0),      // zero duration
		req(protocol.MessageManagement, 0, 60),    // not a unicast service
		req(protocol.MessageSync, -3, 1_000_000))) // clamped duration
	want := []uint32{0, 0, 0, 0, 300}
	if len(g) != len(want) {
		t.Fatalf("%d grants for 5 requests", len(g))
	}
	for i, w := range want {
		if g[i].Type != protocol.TLVGrantUnicastTransmission || g[i].Duration != w {
			t.Fatalf("grant %d: %+v, want duration %d", i, g[i], w)
		}
	}
	if g[4].LogPeriod != -3 || !g[4].Renewal {
		t.Fatalf("granted %+v", g[4])
	}
	step(peer(2), requestMsg(0, req(protocol.MessageAnnounce, 0, 60)))
	if g := step(peer(3), requestMsg(0, req(protocol.MessageAnnounce, 0, 60))); len(g) != 1 || g[0].Duration != 0 {
		t.Fatalf("third client with max_clients 2: %+v", g)
	}
	c := m.Counters()
	if c.Clients != 2 || c.DeniedRate != 2 || c.DeniedDuration != 1 || c.DeniedType != 1 || c.DeniedClients != 1 || c.Grants != 2 {
		t.Fatalf("counters %+v", c)
	}
	// Peer 2 cancels: acknowledged, its slot is freed, peer 3 gets in.
	m.Step(now, Input{Kind: InputDatagram, Peer: peer(2), Datagram: requestMsg(0,
		unicastTLV{Type: protocol.TLVCancelUnicastTransmission, MsgType: protocol.MessageAnnounce})})
	if g := grants(t, m, peer(2)); len(g) != 1 || g[0].Type != protocol.TLVAcknowledgeCancelUnicastTransmission {
		t.Fatalf("cancel answered with %+v", g)
	}
	if g := step(peer(3), requestMsg(0, req(protocol.MessageAnnounce, 0, 60))); len(g) != 1 || g[0].Duration != 60 {
		t.Fatalf("after a cancel: %+v", g)
	}
}

// A CANCEL that ends a client's last grant, followed in the same message
// by a new request, leaves the client with a slot of its own: a second
// client then gets a different one, and both are served.
func TestMasterCancelThenRequestInOneMessage(t *testing.T) {
	m := NewMaster(gmConfig(0xaa))
	now := trueStart
	m.Step(now, Input{Kind: InputDatagram, Peer: peer(1), Datagram: requestMsg(0, req(protocol.MessageSync, 0, 60))})
	m.Advance()
	m.Step(now, Input{Kind: InputDatagram, Peer: peer(1), Datagram: requestMsg(0,
		unicastTLV{Type: protocol.TLVCancelUnicastTransmission, MsgType: protocol.MessageSync},
		req(protocol.MessageSync, 0, 60))})
	m.Advance()
	m.Step(now, Input{Kind: InputDatagram, Peer: peer(2), Datagram: requestMsg(0, req(protocol.MessageSync, 0, 60))})
	m.Advance()
	if c := m.Counters(); c.Clients != 2 || len(m.free) != 0 || m.byPeer[peer(1)] == m.byPeer[peer(2)] {
		t.Fatalf("clients %d, free slots %d, slots %d and %d", c.Clients, len(m.free), m.byPeer[peer(1)], m.byPeer[peer(2)])
	}
	got := map[Peer]int{}
	for now < trueStart+3e9 {
		now += 1e9
		m.Step(now, Input{Kind: InputTick})
		for _, d := range m.Ready().Send {
			if d.Event {
				got[d.Peer]++
			}
		}
		m.Advance()
	}
	if got[peer(1)] != 3 || got[peer(2)] != 3 {
		t.Fatalf("Syncs per client: %v", got)
	}
}

// A grant runs at its rate for its duration and then stops; a renewal
// (repeated request, as ptp4l sends) extends it without restarting the
// sequence ids; Delay_Req is answered with or without a grant, echoing
// sequenceId, correctionField and the requester's port identity.
func TestMasterSchedule(t *testing.T) {
	m := NewMaster(gmConfig(0xaa))
	now := trueStart
	m.Step(now, Input{Kind: InputDatagram, Peer: peer(1), Datagram: requestMsg(0, req(protocol.MessageSync, -2, 10))})
	// (the first Sync, sent at once, stays in Ready for collect)
	syncs := map[uint16]bool{}
	var last uint16
	collect := func() {
		for _, d := range m.Ready().Send {
			if msgType(d.Data) == protocol.MessageSync {
				var h protocol.Header
				_ = decodeHeader(d.Data, &h)
				if syncs[h.SequenceID] || (last != 0 && h.SequenceID != last+1) {
					t.Fatalf("sequence %d after %d", h.SequenceID, last)
				}
				syncs[h.SequenceID], last = true, h.SequenceID
			}
		}
		m.Advance()
	}
	for now < trueStart+20e9 {
		if d := m.Ready().DeadlineNS; d < now+int64(1e9) {
			now = max(now, d)
		} else {
			now += 1e9
		}
		if now == trueStart+5e9 { // renewal half-way
			m.Step(now, Input{Kind: InputDatagram, Peer: peer(1), Datagram: requestMsg(0, req(protocol.MessageSync, -2, 10))})
			collect()
		}
		m.Step(now, Input{Kind: InputTick})
		collect()
	}
	// 4 Sync/s for 15 s (5 s + the renewed 10 s), then nothing.
	if len(syncs) != 60 {
		t.Fatalf("%d Syncs, want 60", len(syncs))
	}
	if c := m.Counters(); c.Clients != 0 || c.Renewals != 1 || c.Grants != 1 {
		t.Fatalf("after expiry: %+v", c)
	}
	if m.Ready().DeadlineNS != math.MaxInt64 {
		t.Fatal("a master with no clients still wants ticks")
	}
	// Delay_Req from a client that has no grant.
	dr := protocol.SyncDelayReq{Header: protocol.Header{
		SdoIDAndMsgType: protocol.NewSdoIDAndMsgType(protocol.MessageDelayReq, 0), Version: 2,
		SourcePortIdentity: clientID, SequenceID: 4242, CorrectionField: protocol.NewCorrection(1234.5)}}
	b := make([]byte, MaxDatagram)
	n, _ := dr.MarshalBinaryTo(b)
	rx := trueStart + 123_456_789
	m.Step(now, Input{Kind: InputDatagram, Peer: peer(9), Event: true, Datagram: finish(b, n), RxNS: rx})
	rd := m.Ready()
	if len(rd.Send) != 1 || rd.Send[0].Peer != peer(9) || rd.Send[0].Event {
		t.Fatalf("Delay_Req answered with %+v", rd.Send)
	}
	var resp protocol.DelayResp
	if err := resp.UnmarshalBinary(rd.Send[0].Data); err != nil {
		t.Fatal(err)
	}
	got, _ := FromTimestamp(resp.ReceiveTimestamp)
	if resp.SequenceID != 4242 || resp.CorrectionField != dr.CorrectionField || resp.RequestingPortIdentity != clientID || got != rx+37e9 {
		t.Fatalf("Delay_Resp %+v (receive %d, want %d TAI)", resp, got, rx+37e9)
	}
}

// clockClass follows TrueTime: 6 synchronized, 7 holdover, 248 otherwise;
// clockAccuracy is the smallest class that covers ε and the variance
// decodes to at least ε² (and less than one step more).
func TestMasterQuality(t *testing.T) {
	m := NewMaster(gmConfig(0xaa))
	if q := m.Quality(); q.ClockClass != 248 || q.ClockAccuracy != protocol.ClockAccuracyUnknown || q.OffsetScaledLogVariance != 0xffff {
		t.Fatalf("before any estimate: %+v", q)
	}
	for _, c := range []struct {
		st    truetime.Status
		eps   int64
		class protocol.ClockClass
		acc   protocol.ClockAccuracy
	}{
		{truetime.Synchronized, 800, 6, protocol.ClockAccuracyMicrosecond1},
		{truetime.Synchronized, 1001, 6, protocol.ClockAccuracyMicrosecond2point5},
		{truetime.Holdover, 30_000, 7, protocol.ClockAccuracyMicrosecond100},
		{truetime.Unsynchronized, 30_000, 248, protocol.ClockAccuracyUnknown},
	} {
		m.Step(trueStart, Input{Kind: InputEstimate, Status: c.st, EpsNS: c.eps})
		q := m.Quality()
		if q.ClockClass != c.class || q.ClockAccuracy != c.acc {
			t.Fatalf("%v ε=%d: %+v", c.st, c.eps, q)
		}
		if c.class == 248 {
			continue
		}
		sigma2 := math.Pow(float64(c.eps)/1e9, 2)
		dec := math.Pow(2, (float64(q.OffsetScaledLogVariance)-0x8000)/256)
		if dec < sigma2 || dec > sigma2*math.Pow(2, 1.0/256)*1.000001 {
			t.Fatalf("ε=%d: variance %#x decodes to %g s², want just ≥ %g", c.eps, q.OffsetScaledLogVariance, dec, sigma2)
		}
	}
}

// The per-message hot path does not allocate once warm: a Delay_Req →
// Delay_Resp, a Sync and its Follow_Up.
func TestMasterHotPathAllocs(t *testing.T) {
	m, dreq := warmMaster(t)
	now := trueStart + 1e9
	var ids [8]uint64
	drain := func() {
		n := 0
		for _, d := range m.Ready().Send {
			if d.Event && n < len(ids) {
				ids[n] = d.TxID
				n++
			}
		}
		m.Advance()
		for _, id := range ids[:n] {
			m.Step(now, Input{Kind: InputTxStamp, TxID: id, TxNS: now + 1000})
			m.Advance()
		}
	}
	allocs := testing.AllocsPerRun(1000, func() {
		now += 1e6
		m.Step(now, Input{Kind: InputDatagram, Peer: peer(1), Event: true, Datagram: dreq, RxNS: now})
		drain()
		m.Step(now, Input{Kind: InputTick})
		drain()
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per message round", allocs)
	}
	if c := m.Counters(); c.FollowUps < 100 || c.DelayResps < 1000 {
		t.Fatalf("the loop did not exercise the hot path: %+v", c)
	}
}

// warmMaster returns a master with one client granted 1000 Sync/s (so
// every millisecond tick sends a Sync) and a Delay_Req to feed it.
func warmMaster(tb testing.TB) (*Master, []byte) {
	cfg := gmConfig(0xaa)
	cfg.MinLogInterval = -10
	m := NewMaster(cfg)
	m.Step(trueStart, Input{Kind: InputDatagram, Peer: peer(1), Datagram: requestMsg(0, req(protocol.MessageSync, -10, 3600))})
	m.Advance()
	dr := protocol.SyncDelayReq{Header: protocol.Header{SdoIDAndMsgType: protocol.NewSdoIDAndMsgType(protocol.MessageDelayReq, 0), Version: 2, SourcePortIdentity: clientID}}
	b := make([]byte, MaxDatagram)
	n, _ := dr.MarshalBinaryTo(b)
	return m, finish(b, n)
}

func BenchmarkMasterDelayReq(b *testing.B) {
	m, dreq := warmMaster(b)
	now := trueStart
	b.ReportAllocs()
	for b.Loop() {
		now++
		m.Step(now, Input{Kind: InputDatagram, Peer: peer(1), Event: true, Datagram: dreq, RxNS: now})
		m.Advance()
	}
}

// BenchmarkMasterSync: many clients at 1 Sync/s each; one op is one
// Sync with its Follow_Up.
func BenchmarkMasterSync(b *testing.B) {
	cfg := gmConfig(0xaa)
	cfg.MaxClients = 100_000
	m := NewMaster(cfg)
	const n = 100_000
	for i := range n {
		p := Peer{Port: uint16(i), IP: [16]byte{0: byte(i >> 16)}}
		m.Step(trueStart+int64(i)*10_000, Input{Kind: InputDatagram, Peer: p, Datagram: requestMsg(0, req(protocol.MessageSync, 0, 3600))})
		m.Advance()
	}
	now := trueStart + 1e9
	b.ReportAllocs()
	b.ResetTimer()
	sent := 0
	ids := make([]uint64, 0, 64)
	for sent < b.N {
		now += 10_000
		m.Step(now, Input{Kind: InputTick})
		ids = ids[:0]
		for _, d := range m.Ready().Send {
			if d.Event {
				ids = append(ids, d.TxID)
			}
		}
		m.Advance()
		for _, id := range ids {
			m.Step(now, Input{Kind: InputTxStamp, TxID: id, TxNS: now})
			m.Advance()
			sent++
		}
	}
}

// Memory stays bounded: 200 clients at 1 Sync/s renewing their 60 s
// grants every 10 s for an hour keep the schedule at ≤ 3 entries per
// client (Announce, Sync, one expiry check) and the slab at 200 slots;
// when they stop renewing, every slot is freed and the schedule empties.
func TestMasterMemoryBounded(t *testing.T) {
	const n = 200
	cfg := gmConfig(0xaa)
	cfg.MaxClients = n
	m := NewMaster(cfg)
	now := trueStart
	renew := func() {
		for i := range n {
			m.Step(now, Input{Kind: InputDatagram, Peer: peer(byte(i)), Datagram: requestMsg(0,
				req(protocol.MessageAnnounce, 1, 60), req(protocol.MessageSync, 0, 60), req(protocol.MessageDelayResp, 0, 60))})
			m.Advance()
		}
	}
	maxHeap := 0
	for now < trueStart+3600e9 {
		if (now-trueStart)%10e9 == 0 {
			renew()
		}
		now += 1e9 / 4
		m.Step(now, Input{Kind: InputTick})
		m.Advance()
		maxHeap = max(maxHeap, len(m.heap))
	}
	if c := m.Counters(); c.Clients != n || len(m.slots) != n || maxHeap > 3*n {
		t.Fatalf("after an hour: %d clients, %d slots, schedule peaked at %d entries", c.Clients, len(m.slots), maxHeap)
	}
	for end := now + 120e9; now < end; now += 1e9 {
		m.Step(now, Input{Kind: InputTick})
		m.Advance()
	}
	if c := m.Counters(); c.Clients != 0 || len(m.heap) != 0 || len(m.free) != n {
		t.Fatalf("after the grants ended: %d clients, %d scheduled, %d free slots", c.Clients, len(m.heap), len(m.free))
	}
}

// BenchmarkMasterLoad: one op is one second of 100,000 unicast clients at
// 1 Sync/s (with its Follow_Up) and 1 Delay_Req/s, driven through the
// engine alone (no sockets); clients/core is how many such clients one
// core's worth of engine time serves.
func BenchmarkMasterLoad(b *testing.B) {
	const n = 100_000
	cfg := gmConfig(0xaa)
	cfg.MaxClients = n
	m := NewMaster(cfg)
	peers := make([]Peer, n)
	for i := range n {
		peers[i] = Peer{IP: [16]byte{0: byte(i >> 16), 1: byte(i >> 8), 2: byte(i)}}
		m.Step(trueStart+int64(i)*10_000, Input{Kind: InputDatagram, Peer: peers[i], Datagram: requestMsg(0,
			req(protocol.MessageSync, 0, 3600), req(protocol.MessageDelayResp, 0, 3600))})
		m.Advance()
	}
	_, dreq := warmMaster(b)
	now := trueStart + 1e9
	ids := make([]uint64, 0, 1024)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for step := range 100 { // 10 ms ticks
			now += 10e6
			m.Step(now, Input{Kind: InputTick})
			ids = ids[:0]
			for _, d := range m.Ready().Send {
				if d.Event {
					ids = append(ids, d.TxID)
				}
			}
			m.Advance()
			for _, id := range ids {
				m.Step(now, Input{Kind: InputTxStamp, TxID: id, TxNS: now})
				m.Advance()
			}
			for i := step; i < n; i += 100 {
				m.Step(now, Input{Kind: InputDatagram, Peer: peers[i], Event: true, Datagram: dreq, RxNS: now})
				m.Advance()
			}
		}
	}
	if c := m.Counters(); c.Clients != n {
		b.Fatalf("%d clients", c.Clients)
	}
	b.ReportMetric(float64(n)/(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e9), "clients/core")
}

// lateDriver grants n clients Sync at 1/s at trueStart (each gets its
// first Sync then), starves the driver: its next tick comes 3.5 s late,
// and then drains what is due with ticks at that instant. It returns the
// largest Ready (datagrams and buffers) seen after the starvation, the
// Syncs each client got at the late instant, and the counters.
func lateDriver(t *testing.T, n, burst int) (maxSend, maxBufs int, per map[Peer]int, c MasterCounters) {
	t.Helper()
	cfg := gmConfig(0xaa)
	cfg.MaxBurst = burst
	m := NewMaster(cfg)
	p := func(i int) Peer { return Peer{IP: [16]byte{14: byte(i >> 8), 15: byte(i)}} }
	now := trueStart
	for i := range n {
		m.Step(now, Input{Kind: InputDatagram, Peer: p(i), Datagram: requestMsg(0, req(protocol.MessageSync, 0, 300))})
		m.Advance()
	}
	for m.Ready().DeadlineNS <= now {
		m.Step(now, Input{Kind: InputTick})
		m.Advance()
	}
	now += 3_500_000_000
	per = map[Peer]int{}
	for steps := 0; ; steps++ {
		if steps > n+10 {
			t.Fatalf("%d ticks at one instant and still due", steps)
		}
		m.Step(now, Input{Kind: InputTick})
		rd := m.Ready()
		maxSend, maxBufs = max(maxSend, len(rd.Send)), max(maxBufs, len(m.bufs))
		for _, d := range rd.Send {
			if msgType(d.Data) == protocol.MessageSync {
				per[d.Peer]++
			}
		}
		m.Advance()
		if rd.DeadlineNS > now {
			break
		}
	}
	if len(per) != n {
		t.Fatalf("%d of %d clients got a Sync after the starvation", len(per), n)
	}
	for q, k := range per {
		if k != 1 {
			t.Fatalf("client %v got %d Syncs at one instant, want 1 (no catch-up burst)", q, k)
		}
	}
	return maxSend, maxBufs, per, m.Counters()
}

// A driver that comes late does not make the grandmaster queue without
// limit: each Ready carries at most MaxBurst scheduled sends (the deadline
// stays now until all are out), each client gets one Sync, not a burst,
// and the Syncs its schedule skipped are counted as shed: slots at 0, 1,
// 2 and 3 s, sent at 0 and 3.5 s, so 2 shed per client. Negative control:
// with a cap beyond the client count, one Ready holds every client's Sync.
func TestMasterLateDriverBoundedAndShed(t *testing.T) {
	const n, burst = 1000, 50
	maxSend, maxBufs, _, c := lateDriver(t, n, burst)
	if maxSend > burst || maxBufs > burst {
		t.Fatalf("a Ready held %d datagrams in %d buffers, cap %d", maxSend, maxBufs, burst)
	}
	if c.ShedSyncs != 2*n || c.ShedAnnounces != 0 {
		t.Fatalf("shed %d Syncs, %d Announces; want %d, 0", c.ShedSyncs, c.ShedAnnounces, 2*n)
	}
	if maxSend, _, _, _ := lateDriver(t, n, 1<<30); maxSend != n {
		t.Fatalf("control: uncapped, one Ready held %d datagrams, want all %d", maxSend, n)
	}
}

// A transmit-stamp report releases its Follow_Up and nothing else, even
// when Syncs fell due meanwhile: the driver's send/stamp loop ends.
func TestMasterTxStampSendsOnlyFollowUp(t *testing.T) {
	m := NewMaster(gmConfig(0xaa))
	now := trueStart
	for i := range 2 {
		m.Step(now, Input{Kind: InputDatagram, Peer: peer(byte(i)), Datagram: requestMsg(0, req(protocol.MessageSync, 0, 300))})
	}
	var ids []uint64
	for _, d := range m.Ready().Send {
		if d.Event {
			ids = append(ids, d.TxID)
		}
	}
	m.Advance()
	if len(ids) != 2 {
		t.Fatalf("%d Syncs for two grants", len(ids))
	}
	now += 5e9 // both clients are due again
	m.Step(now, Input{Kind: InputTxStamp, TxID: ids[0], TxNS: now})
	if s := m.Ready().Send; len(s) != 1 || msgType(s[0].Data) != protocol.MessageFollowUp {
		t.Fatalf("after a stamp report: %d datagrams, want one Follow_Up", len(s))
	}
	if d := m.Ready().DeadlineNS; d > now {
		t.Fatalf("deadline %d after now %d with Syncs due", d, now)
	}
	m.Advance()
	m.Step(now, Input{Kind: InputTick})
	if s := m.Ready().Send; len(s) != 2 || msgType(s[0].Data) != protocol.MessageSync {
		t.Fatalf("the tick after: %d datagrams, want the two due Syncs", len(s))
	}
}
