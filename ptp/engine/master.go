package engine

import (
	"fmt"
	"math"
	"time"

	"github.com/facebook/time/ptp/protocol"

	"github.com/meridiantime/meridian/truetime"
)

// Peer is a client's address as the driver names it (an IP and whatever
// port the driver needs to tell clients apart); the engine only compares
// it and hands it back in Datagram.Peer.
type Peer struct {
	IP   [16]byte
	Port uint16
}

// MasterConfig sets up a unicast grandmaster port.
type MasterConfig struct {
	Identity   protocol.ClockIdentity // port number is 1
	Domain     uint8
	Priority1  uint8 // 0 → 128
	Priority2  uint8 // 0 → 128
	TimeSource protocol.TimeSource
	// MinLogInterval is the fastest rate granted, as log2 s: a request for
	// a shorter period is refused (1588 §16.1.4.1.3: a rate that cannot be
	// served is denied, not lowered).
	MinLogInterval protocol.LogInterval
	// MaxLogInterval is the slowest rate granted (0 → 6, 64 s).
	MaxLogInterval protocol.LogInterval
	// MaxDurationS caps a grant's duration; longer requests are granted
	// this (0 → 3600 s).
	MaxDurationS uint32
	// MaxClients caps the number of clients holding grants (0 → 10000);
	// a new client beyond it is refused.
	MaxClients int
	// ARB serves an arbitrary timescale (our UTC readings as they are).
	// Otherwise PTP timescale: TAI = UTC + UTCOffsetS, flagged valid.
	ARB        bool
	UTCOffsetS int16 // 0 → 37
	// MaxBurst caps the scheduled Announces and Syncs one Ready carries
	// (0 → DefaultMaxBurst). The rest stay due: the deadline is then now,
	// and they go out with the next Ready. With replies (one per input)
	// it bounds what a Ready holds, so a driver that falls behind does not
	// make the engine queue without limit.
	MaxBurst int
}

// DefaultMaxBurst is MaxBurst's default: 256 datagrams of MaxDatagram
// bytes, 128 KiB of buffers.
const DefaultMaxBurst = 256

// message types a client can subscribe to, as indices.
const (
	kAnnounce = iota
	kSync
	kDelayResp
	nKinds
	kExpire // heap entry: check whether the client still holds a grant
)

func kindOf(t protocol.MessageType) int {
	switch t {
	case protocol.MessageAnnounce:
		return kAnnounce
	case protocol.MessageSync:
		return kSync
	case protocol.MessageDelayResp:
		return kDelayResp
	}
	return -1
}

type mgrant struct {
	log       protocol.LogInterval
	periodNS  int64
	expiresNS int64 // 0: no grant
	nextNS    int64
	gen       uint32
}

type mclient struct {
	peer   Peer
	port   protocol.PortIdentity
	inUse  bool
	gen    uint16 // bumped when the slot is reused (TxIDs of the old owner go stale)
	grants [nKinds]mgrant
	seq    [2]uint16 // announce, sync sequence ids
	txSeq  uint16    // Sync waiting for its transmit stamp
	txWait bool
	// expireAt is when the client's one queued kExpire entry fires (0:
	// none): renewals do not queue more, so the heap holds at most one
	// per client besides its Announce and Sync entries.
	expireAt int64
}

// due is a heap entry: send kind to slot at dueNS if gen still matches.
type due struct {
	atNS int64
	slot int32
	kind uint8
	gen  uint32
}

// MasterCounters count what the grandmaster did and dropped.
type MasterCounters struct {
	Clients                                 int
	Grants, Renewals                        uint64
	DeniedRate, DeniedDuration              uint64
	DeniedClients, DeniedType               uint64
	Cancels                                 uint64
	Announces, Syncs, FollowUps, DelayResps uint64
	TxTimeouts                              uint64
	// ShedSyncs and ShedAnnounces count scheduled sends skipped because
	// the driver came a whole period or more late (a starved worker): the
	// client gets the next one on a fresh schedule instead of a burst.
	ShedSyncs, ShedAnnounces               uint64
	DroppedShort, DroppedVersion           uint64
	DroppedDomain, DroppedType, DroppedTLV uint64
	UnknownTLVs                            uint64
}

// Master is a unicast grandmaster port as a pure engine: it grants
// Announce, Sync and Delay_Resp subscriptions within its limits, sends
// Announce and two-step Sync/Follow_Up at the granted rates, and answers
// every Delay_Req (with or without a grant). Clients are slots in a slab
// found through a map; sends are scheduled on a min-heap; buffers are
// reused, so the per-message path does not allocate once warm.
type Master struct {
	cfg     MasterConfig
	slots   []mclient
	free    []int32
	byPeer  map[Peer]int32
	heap    []due
	quality protocol.ClockQuality
	flags   uint16
	status  truetime.Status
	steps   uint16 // stepsRemoved advertised

	sig   signaling
	resp  [maxSignalingTLVs]unicastTLV
	bufs  [][MaxDatagram]byte
	nbuf  int
	ready Ready
	cnt   MasterCounters
}

// NewMaster returns a grandmaster; until the first InputEstimate it
// advertises clockClass 248 (unsynchronized).
func NewMaster(cfg MasterConfig) *Master {
	if cfg.Priority1 == 0 {
		cfg.Priority1 = 128
	}
	if cfg.Priority2 == 0 {
		cfg.Priority2 = 128
	}
	if cfg.MaxLogInterval == 0 {
		cfg.MaxLogInterval = 6
	}
	if cfg.MaxDurationS == 0 {
		cfg.MaxDurationS = 3600
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = 10000
	}
	if cfg.MaxBurst <= 0 {
		cfg.MaxBurst = DefaultMaxBurst
	}
	if cfg.UTCOffsetS == 0 {
		cfg.UTCOffsetS = defaultUTCOffsetS
	}
	if cfg.TimeSource == 0 {
		cfg.TimeSource = protocol.TimeSourceInternalOscillator
	}
	m := &Master{cfg: cfg, byPeer: make(map[Peer]int32)}
	m.setQuality(truetime.Unsynchronized, 0, truetime.LeapNone)
	m.ready.DeadlineNS = math.MaxInt64
	return m
}

// Counters returns the counters.
func (m *Master) Counters() MasterCounters { c := m.cnt; c.Clients = len(m.byPeer); return c }

// Quality is the clock quality the grandmaster advertises now.
func (m *Master) Quality() protocol.ClockQuality { return m.quality }

// Ready returns what the driver must do now.
func (m *Master) Ready() Ready { return m.ready }

// Advance acknowledges the last Ready.
func (m *Master) Advance() {
	m.ready.Send = m.ready.Send[:0]
	m.ready.Rejected = m.ready.Rejected[:0]
	m.nbuf = 0
}

// Step feeds one input observed at local reading nowNS. For the
// grandmaster, local readings are the served (disciplined) time, UTC.
//
// A transmit-stamp report only releases its Follow_Up: sends that fell
// due meanwhile wait for the next tick or datagram (the deadline says
// when). A driver that reports the stamps of one Ready's Syncs therefore
// gets Follow_Ups back and no new Syncs, and its send/stamp loop ends
// however slow it is.
func (m *Master) Step(nowNS int64, in Input) {
	switch in.Kind {
	case InputDatagram:
		if err := m.receive(nowNS, in); err != nil {
			m.ready.Rejected = append(m.ready.Rejected, err)
		}
	case InputTxStamp:
		m.txStamp(in.TxID, in.TxNS)
		return
	case InputEstimate:
		m.setQuality(in.Status, in.EpsNS, in.Leap)
		m.steps = uint16(max(int(in.Stratum), 1) - 1)
	}
	m.run(nowNS)
}

// setQuality derives clockClass, clockAccuracy and offsetScaledLogVariance
// from TrueTime: synchronized → 6, holdover → 7, otherwise 248; accuracy
// is the smallest class covering ε; the variance is 1588 §7.6.3.3's
// scaled log2 of ε² (in s²), 0xFFFF when unknown.
func (m *Master) setQuality(st truetime.Status, epsNS int64, leap truetime.Leap) {
	m.status = st
	q := protocol.ClockQuality{ClockClass: 248, ClockAccuracy: protocol.ClockAccuracyUnknown, OffsetScaledLogVariance: 0xffff}
	switch st {
	case truetime.Synchronized:
		q.ClockClass = protocol.ClockClass6
	case truetime.Holdover:
		q.ClockClass = protocol.ClockClass7
	}
	if q.ClockClass != 248 && epsNS > 0 {
		q.ClockAccuracy = protocol.ClockAccuracyFromOffset(time.Duration(epsNS))
		q.OffsetScaledLogVariance = ScaledLogVariance(epsNS)
	}
	m.quality = q
	f := protocol.FlagUnicast
	if !m.cfg.ARB {
		f |= protocol.FlagPTPTimescale | protocol.FlagCurrentUtcOffsetValid
	}
	if st == truetime.Synchronized {
		f |= protocol.FlagTimeTraceable | protocol.FlagFrequencyTraceable
	}
	switch leap {
	case truetime.LeapInsert:
		f |= protocol.FlagLeap61
	case truetime.LeapDelete:
		f |= protocol.FlagLeap59
	}
	m.flags = f
}

// ScaledLogVariance is offsetScaledLogVariance for a standard deviation of
// epsNS: 0x8000 + 256·log2(σ² in s²), rounded up (a bound must not
// shrink) and clamped to [0, 0xFFFE].
func ScaledLogVariance(epsNS int64) uint16 {
	if epsNS <= 0 {
		return 0
	}
	s := float64(epsNS) / 1e9
	v := math.Ceil(0x8000 + 256*math.Log2(s*s))
	return uint16(max(0, min(v, 0xfffe)))
}

// wire converts a local UTC reading to the served timescale.
func (m *Master) wire(ns int64) int64 {
	if m.cfg.ARB {
		return ns
	}
	return ns + int64(m.cfg.UTCOffsetS)*1e9
}

func (m *Master) buf() []byte {
	if m.nbuf == len(m.bufs) {
		m.bufs = append(m.bufs, [MaxDatagram]byte{})
	}
	m.nbuf++
	return m.bufs[m.nbuf-1][:]
}

func (m *Master) header(t protocol.MessageType, seq uint16, flags uint16, log protocol.LogInterval, control uint8) protocol.Header {
	return protocol.Header{
		SdoIDAndMsgType:    protocol.NewSdoIDAndMsgType(t, 0),
		Version:            protocol.Version,
		DomainNumber:       m.cfg.Domain,
		FlagField:          flags,
		SourcePortIdentity: protocol.PortIdentity{ClockIdentity: m.cfg.Identity, PortNumber: 1},
		SequenceID:         seq,
		ControlField:       control,
		LogMessageInterval: log,
	}
}

// receive handles one datagram.
func (m *Master) receive(nowNS int64, in Input) error {
	var h protocol.Header
	if err := decodeHeader(in.Datagram, &h); err != nil {
		if err == ErrVersion {
			m.cnt.DroppedVersion++
		} else {
			m.cnt.DroppedShort++
		}
		return err
	}
	if h.DomainNumber != m.cfg.Domain {
		m.cnt.DroppedDomain++
		return fmt.Errorf("%w %d (want %d)", ErrDomain, h.DomainNumber, m.cfg.Domain)
	}
	t := h.MessageType()
	if l := minLen(t); l > 0 && int(h.MessageLength) < l {
		m.cnt.DroppedShort++
		return ErrShort
	}
	switch t {
	case protocol.MessageDelayReq:
		m.delayResp(in, &h)
		return nil
	case protocol.MessageSignaling:
		return m.signaling(nowNS, in)
	}
	m.cnt.DroppedType++
	return fmt.Errorf("%w: %v", ErrMessageType, t)
}

// delayResp answers a Delay_Req: its receive stamp, its sequenceId and
// correctionField echoed, the requester's port identity. Stateless: a
// client without a Delay_Resp grant is answered too.
func (m *Master) delayResp(in Input, h *protocol.Header) {
	log := protocol.LogInterval(0)
	if i, ok := m.byPeer[in.Peer]; ok && m.slots[i].grants[kDelayResp].expiresNS > 0 {
		log = m.slots[i].grants[kDelayResp].log
	}
	r := protocol.DelayResp{Header: m.header(protocol.MessageDelayResp, h.SequenceID, protocol.FlagUnicast, log, 3)}
	r.CorrectionField = h.CorrectionField
	r.ReceiveTimestamp = ToTimestamp(m.wire(in.RxNS))
	r.RequestingPortIdentity = h.SourcePortIdentity
	b := m.buf()
	n, _ := r.MarshalBinaryTo(b)
	m.ready.Send = append(m.ready.Send, Datagram{Peer: in.Peer, Data: finish(b, n)})
	m.cnt.DelayResps++
}

// signaling answers unicast negotiation: every REQUEST gets a GRANT (a
// duration of 0 is a refusal), every CANCEL an ACKNOWLEDGE_CANCEL, all in
// one reply.
func (m *Master) signaling(nowNS int64, in Input) error {
	sg := &m.sig
	if err := decodeSignaling(in.Datagram, sg); err != nil {
		m.cnt.DroppedTLV++
		return err
	}
	m.cnt.UnknownTLVs += uint64(sg.Unknown)
	self := protocol.PortIdentity{ClockIdentity: m.cfg.Identity, PortNumber: 1}
	if sg.Target != self && sg.Target != protocol.DefaultTargetPortIdentity &&
		!(sg.Target.ClockIdentity == m.cfg.Identity && sg.Target.PortNumber == 0xffff) {
		m.cnt.DroppedType++
		return ErrNotForUs
	}
	slot, known := m.byPeer[in.Peer]
	resp := m.resp[:0]
	for _, t := range sg.TLVs {
		switch t.Type {
		case protocol.TLVRequestUnicastTransmission:
			g := unicastTLV{Type: protocol.TLVGrantUnicastTransmission, MsgType: t.MsgType, LogPeriod: t.LogPeriod, Renewal: true}
			k := kindOf(t.MsgType)
			switch {
			case k < 0:
				m.cnt.DeniedType++
			case t.LogPeriod < m.cfg.MinLogInterval || t.LogPeriod > m.cfg.MaxLogInterval:
				m.cnt.DeniedRate++
			case t.Duration == 0:
				m.cnt.DeniedDuration++
			case !known && len(m.byPeer) >= m.cfg.MaxClients:
				m.cnt.DeniedClients++
			default:
				if !known {
					slot, known = m.alloc(in.Peer), true
				}
				g.Duration = min(t.Duration, m.cfg.MaxDurationS)
				m.grant(nowNS, slot, k, t.LogPeriod, g.Duration)
				m.slots[slot].port = sg.Header.SourcePortIdentity
			}
			resp = append(resp, g)
		case protocol.TLVCancelUnicastTransmission:
			if k := kindOf(t.MsgType); k >= 0 && known {
				m.slots[slot].grants[k] = mgrant{gen: m.slots[slot].grants[k].gen + 1}
				m.cnt.Cancels++
				m.release(slot)
				known = m.slots[slot].inUse // a later request in this message allocates anew
			}
			resp = append(resp, unicastTLV{Type: protocol.TLVAcknowledgeCancelUnicastTransmission, MsgType: t.MsgType, Flags: t.Flags})
		}
	}
	if len(resp) == 0 {
		return nil
	}
	h := m.header(protocol.MessageSignaling, sg.Header.SequenceID, protocol.FlagUnicast, logIntervalUnused, 5)
	b := encodeSignaling(m.buf(), h, sg.Header.SourcePortIdentity, resp)
	m.ready.Send = append(m.ready.Send, Datagram{Peer: in.Peer, Data: b})
	return nil
}

func (m *Master) alloc(p Peer) int32 {
	var i int32
	if n := len(m.free); n > 0 {
		i, m.free = m.free[n-1], m.free[:n-1]
	} else {
		m.slots = append(m.slots, mclient{})
		i = int32(len(m.slots) - 1)
	}
	c := &m.slots[i]
	gen := c.gen + 1
	gens := [nKinds]uint32{c.grants[0].gen, c.grants[1].gen, c.grants[2].gen}
	*c = mclient{peer: p, inUse: true, gen: gen}
	for k := range c.grants {
		c.grants[k].gen = gens[k] + 1 // entries queued for the previous owner are stale
	}
	m.byPeer[p] = i
	return i
}

// release frees a slot whose grants have all ended.
func (m *Master) release(i int32) {
	c := &m.slots[i]
	for _, g := range c.grants {
		if g.expiresNS > 0 {
			return
		}
	}
	delete(m.byPeer, c.peer)
	c.inUse = false
	m.free = append(m.free, i)
}

// grant records a subscription. A renewal at the same rate extends it and
// keeps the schedule (and the sequence ids) running; a new rate restarts
// the schedule now.
func (m *Master) grant(nowNS int64, i int32, k int, log protocol.LogInterval, durS uint32) {
	g := &m.slots[i].grants[k]
	period, _ := logToNS(log)
	renewal := g.expiresNS > nowNS && g.log == log
	g.expiresNS = nowNS + int64(durS)*1e9
	if c := &m.slots[i]; c.expireAt == 0 || g.expiresNS < c.expireAt {
		c.expireAt = g.expiresNS
		m.push(due{atNS: g.expiresNS, slot: i, kind: kExpire, gen: uint32(c.gen)})
	}
	if renewal {
		m.cnt.Renewals++
		return
	}
	m.cnt.Grants++
	g.gen++
	g.log, g.periodNS, g.nextNS = log, period, nowNS
	if k != kDelayResp {
		m.push(due{atNS: nowNS, slot: i, kind: uint8(k), gen: g.gen})
	}
}

// run sends what is due at nowNS, up to MaxBurst scheduled sends in the
// Ready, and sets the deadline (now, when some are left due).
func (m *Master) run(nowNS int64) {
	for len(m.heap) > 0 && m.heap[0].atNS <= nowNS && len(m.ready.Send) < m.cfg.MaxBurst {
		d := m.pop()
		c := &m.slots[d.slot]
		if !c.inUse {
			continue
		}
		if d.kind == kExpire {
			if d.gen != uint32(c.gen) || d.atNS != c.expireAt {
				continue // queued for a previous owner of the slot, or superseded
			}
			next := int64(0)
			for k := range c.grants {
				g := &c.grants[k]
				if g.expiresNS > 0 && g.expiresNS <= nowNS {
					*g = mgrant{gen: g.gen + 1}
				} else if g.expiresNS > 0 && (next == 0 || g.expiresNS < next) {
					next = g.expiresNS
				}
			}
			c.expireAt = next
			if next > 0 { // renewed meanwhile: check again at the earliest end
				m.push(due{atNS: next, slot: d.slot, kind: kExpire, gen: uint32(c.gen)})
			}
			m.release(d.slot)
			continue
		}
		g := &c.grants[d.kind]
		if g.gen != d.gen || g.expiresNS <= nowNS {
			continue
		}
		if d.kind == kAnnounce {
			m.announce(nowNS, c, g.log)
		} else {
			m.sync(nowNS, d.slot, c, g.log)
		}
		g.nextNS += g.periodNS
		if g.nextNS <= nowNS { // the driver was late: shed, no burst to catch up
			shed := uint64((nowNS-g.nextNS)/g.periodNS + 1)
			if d.kind == kAnnounce {
				m.cnt.ShedAnnounces += shed
			} else {
				m.cnt.ShedSyncs += shed
			}
			g.nextNS = nowNS + g.periodNS
		}
		m.push(due{atNS: g.nextNS, slot: d.slot, kind: d.kind, gen: g.gen})
	}
	m.ready.DeadlineNS = math.MaxInt64
	if len(m.heap) > 0 {
		m.ready.DeadlineNS = m.heap[0].atNS
	}
}

func (m *Master) announce(nowNS int64, c *mclient, log protocol.LogInterval) {
	c.seq[0]++
	a := protocol.Announce{Header: m.header(protocol.MessageAnnounce, c.seq[0], m.flags, log, 5)}
	a.OriginTimestamp = ToTimestamp(m.wire(nowNS))
	if !m.cfg.ARB {
		a.CurrentUTCOffset = m.cfg.UTCOffsetS
	}
	a.GrandmasterPriority1 = m.cfg.Priority1
	a.GrandmasterClockQuality = m.quality
	a.GrandmasterPriority2 = m.cfg.Priority2
	a.GrandmasterIdentity = m.cfg.Identity
	a.StepsRemoved = m.steps
	a.TimeSource = m.cfg.TimeSource
	b := m.buf()
	n, _ := a.MarshalBinaryTo(b)
	m.ready.Send = append(m.ready.Send, Datagram{Peer: c.peer, Data: finish(b, n)})
	m.cnt.Announces++
}

// sync sends a two-step Sync; its Follow_Up goes out when the driver
// reports the transmit stamp (TxID).
func (m *Master) sync(nowNS int64, slot int32, c *mclient, log protocol.LogInterval) {
	if c.txWait { // the previous stamp never came: its Follow_Up is lost
		m.cnt.TxTimeouts++
	}
	c.seq[1]++
	s := protocol.SyncDelayReq{Header: m.header(protocol.MessageSync, c.seq[1], protocol.FlagUnicast|protocol.FlagTwoStep, log, 0)}
	s.OriginTimestamp = ToTimestamp(m.wire(nowNS))
	b := m.buf()
	n, _ := s.MarshalBinaryTo(b)
	c.txSeq, c.txWait = c.seq[1], true
	id := uint64(slot)<<32 | uint64(c.gen)<<16 | uint64(c.seq[1])
	m.ready.Send = append(m.ready.Send, Datagram{Peer: c.peer, Event: true, Data: finish(b, n), TxID: id})
	m.cnt.Syncs++
}

// txStamp sends the Follow_Up of the Sync id with its transmit stamp; a
// zero stamp (timeout) sends none.
func (m *Master) txStamp(id uint64, txNS int64) {
	slot, gen, seq := int32(id>>32), uint16(id>>16), uint16(id)
	if slot < 0 || int(slot) >= len(m.slots) {
		return
	}
	c := &m.slots[slot]
	if !c.inUse || c.gen != gen || !c.txWait || c.txSeq != seq {
		return
	}
	c.txWait = false
	if txNS <= 0 {
		m.cnt.TxTimeouts++
		return
	}
	f := protocol.FollowUp{Header: m.header(protocol.MessageFollowUp, seq, protocol.FlagUnicast, c.grants[kSync].log, 2)}
	f.PreciseOriginTimestamp = ToTimestamp(m.wire(txNS))
	b := m.buf()
	n, _ := f.MarshalBinaryTo(b)
	m.ready.Send = append(m.ready.Send, Datagram{Peer: c.peer, Data: finish(b, n)})
	m.cnt.FollowUps++
}

// push and pop keep m.heap a binary min-heap on atNS (typed, so no
// interface boxing on the hot path).
func (m *Master) push(d due) {
	m.heap = append(m.heap, d)
	i := len(m.heap) - 1
	for i > 0 {
		p := (i - 1) / 2
		if m.heap[p].atNS <= m.heap[i].atNS {
			break
		}
		m.heap[p], m.heap[i] = m.heap[i], m.heap[p]
		i = p
	}
}

func (m *Master) pop() due {
	h := m.heap
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h = h[:n]
	i := 0
	for {
		l, r, s := 2*i+1, 2*i+2, i
		if l < n && h[l].atNS < h[s].atNS {
			s = l
		}
		if r < n && h[r].atNS < h[s].atNS {
			s = r
		}
		if s == i {
			break
		}
		h[i], h[s] = h[s], h[i]
		i = s
	}
	m.heap = h
	return top
}
