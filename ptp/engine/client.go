package engine

import (
	"errors"
	"fmt"

	"github.com/facebook/time/ptp/protocol"

	"github.com/meridiantime/meridian/discipline"
	"github.com/meridiantime/meridian/truetime"
)

// Client errors: why a message from a server gave no sample. The engine
// counts them and goes on.
var (
	ErrNotSelected   = errors.New("ptp: Sync/Follow_Up/Delay_Resp from a server that is not the selected master")
	ErrSender        = errors.New("ptp: sourcePortIdentity differs from the master's")
	ErrSequence      = errors.New("ptp: sequenceId matches nothing outstanding (gap, duplicate or late)")
	ErrNotForUs      = errors.New("ptp: addressed to another port identity")
	ErrUnsyncMaster  = errors.New("ptp: master advertises clockClass 248/255 (not synchronised)")
	ErrBadTimestamps = errors.New("ptp: implausible timestamps")
)

// ClientConfig sets up a unicast PTP client port (ptp4l's
// unicast_master_table, 1588-2019 §16.1).
type ClientConfig struct {
	// Servers is the number of configured servers. The engine names them
	// by index; the driver maps an index to an address and back.
	Servers int
	// Identity is this port's PortIdentity, the same in every message for
	// the engine's life (a clock identity from the MAC or a random seed,
	// port number 1).
	Identity protocol.PortIdentity
	Domain   uint8
	// Requested message periods as log2 seconds (0 = 1 s, -3 = 125 ms).
	LogAnnounce, LogSync, LogDelayReq protocol.LogInterval
	// DurationS is the grant duration requested, in seconds (0 → 60).
	DurationS uint32
	// AcceptDefaultClass takes samples from a grandmaster advertising
	// clockClass 248 (the default of a free-running ptp4l). Without it
	// such a master is still tracked and selectable, but gives no samples:
	// 248 is how Meridian's own grandmaster says "unsynchronized".
	AcceptDefaultClass bool
	// DefaultUTCOffsetS is TAI−UTC for a PTP-timescale master that does
	// not set UTC_OFF_VALID (0 → 37, the offset since 2017).
	DefaultUTCOffsetS int16
}

// Negotiation timing.
const (
	minBackoffNS      = int64(1e9)  // retry after a refusal or a lost request
	maxBackoffNS      = int64(64e9) // the longest wait between retries after refusals
	maxLostBackoffNS  = int64(8e9)  // the longest wait between retries of unanswered requests
	announceReceiptN  = 3           // announceReceiptTimeout (1588 default)
	foreignThreshold  = 2           // Announces before a server is qualified (FOREIGN_MASTER_THRESHOLD)
	defaultDurationS  = 60
	defaultUTCOffsetS = 37
)

// grant tracks one unicast subscription (one message type from one server).
type grant struct {
	granted   bool
	periodNS  int64 // granted interval
	expiresNS int64 // the grant's end
	nextReqNS int64 // when to send the next request (renewal or retry); 0: not wanted
	backoffNS int64 // the wait before retrying an unanswered request
	refuseNS  int64 // the wait before asking again after a refusal, from the request
	sentNS    int64 // when the newest request went out
	refused   uint64
}

// sent schedules the next request: a retry after backoff if unanswered.
// Unanswered requests back off to maxLostBackoffNS at most: silence is
// loss as often as anything, and a master that was unreachable for a
// while must not leave the client waiting a minute once it is back (a
// random world with 25 % loss got two samples in nine minutes when
// silence doubled the wait up to 64 s). Refusals back off further (answer).
func (g *grant) sent(nowNS int64) {
	if g.backoffNS == 0 {
		g.backoffNS = minBackoffNS
	}
	g.sentNS, g.nextReqNS = nowNS, nowNS+g.backoffNS
	g.backoffNS = min(2*g.backoffNS, maxLostBackoffNS)
}

// answer applies a GRANT TLV: a duration of 0 is a refusal (retry with
// backoff, already scheduled by sent); otherwise renew at ¾ of it. A
// master cannot make us send faster or hold a grant longer than we asked:
// the period is at least the requested one and the duration at most.
func (g *grant) answer(nowNS int64, t unicastTLV, reqLog protocol.LogInterval, reqDurationS uint32) {
	period, ok := logToNS(t.LogPeriod)
	if t.Duration == 0 || !ok {
		// A refusal: ask again after a doubling wait from the refused
		// request, up to maxBackoffNS.
		g.granted = false
		g.refused++
		g.refuseNS = min(max(2*g.refuseNS, minBackoffNS), maxBackoffNS)
		g.nextReqNS = max(g.sentNS+g.refuseNS, nowNS)
		return
	}
	if reqPeriod, _ := logToNS(reqLog); period < reqPeriod {
		period = reqPeriod
	}
	d := int64(min(t.Duration, reqDurationS)) * 1e9
	g.granted, g.periodNS, g.expiresNS = true, period, nowNS+d
	g.nextReqNS = nowNS + d*3/4
	g.backoffNS, g.refuseNS = 0, 0
}

func (g *grant) valid(nowNS int64) bool { return g.granted && nowNS < g.expiresNS }

// server is what the client knows of one configured server.
type server struct {
	announce, sync, delayResp grant

	ds        Dataset
	haveDS    bool
	annRxNS   [foreignThreshold]int64 // receipt times of the newest Announces
	nAnn      int
	flags     uint16 // of the newest Announce: timescale, UTC offset valid, leap
	utcOffset int16
}

// qualified: enough recent Announces for the BMCA to consider the server.
func (s *server) qualified(nowNS int64) bool {
	if !s.haveDS || s.nAnn < foreignThreshold || !s.announce.valid(nowNS) {
		return false
	}
	window := announceReceiptN * s.announce.periodNS
	for _, t := range s.annRxNS {
		if nowNS-t > window {
			return false
		}
	}
	return true
}

// syncRx is a received Sync waiting for its Follow_Up, or a complete one.
type syncRx struct {
	seq     uint16
	rxNS    int64 // t4: local receive stamp
	corrNS  int64 // Sync's correctionField
	done    bool  // t3 known
	originN int64 // t3 on the master's timescale (origin + corrections)
	valid   bool
}

// earlyFollowUp is a Follow_Up that arrived before its Sync.
type earlyFollowUp struct {
	seq      uint16
	originNS int64 // preciseOriginTimestamp + the Follow_Up's correction
	valid    bool
}

// delayEx is a Delay_Req exchange and the Sync it followed.
type delayEx struct {
	seq      uint16
	txNS     int64  // t1: local send (user-space reading, replaced by the TX stamp)
	rxMaster int64  // t2 on the master's timescale
	sync     syncRx // the complete Sync whose arrival sent it: t3, t4
	stamped  bool   // t1 is settled: the TX stamp came, or none will
	done     bool
	used     bool
	valid    bool
}

// Client is a unicast PTP client port: negotiation with every configured
// server, BMCA among them, and two-step E2E measurement with the chosen one,
// in the engine shape (Step, Ready, Advance).
type Client struct {
	cfg      ClientConfig
	servers  []server
	selected int // index, -1: none
	seq      struct{ signaling, delayReq uint16 }

	sync  syncRx
	delay delayEx // the outstanding Delay_Req
	last  delayEx // the newest completed exchange, until it is paired
	early earlyFollowUp
	next  struct{ delayReqNS int64 }
	// syncFresh: c.sync completed in this Step; a Delay_Req that is due
	// leaves now, right behind it.
	syncFresh bool

	sig     signaling
	msgs    clientMsgs
	scratch [announceLen]byte
	bufs    [][MaxDatagram]byte
	nbuf    int
	ready   Ready
	cnt     ClientCounters

	// ignoreCorrection is a test-only knob (negative control): drop the
	// correctionFields, as a client that forgot them would.
	ignoreCorrection bool
}

// clientMsgs are decode targets, kept to avoid allocating per message.
type clientMsgs struct {
	ann protocol.Announce
	sdr protocol.SyncDelayReq
	fu  protocol.FollowUp
	dr  protocol.DelayResp
}

// ClientCounters count what the client did and dropped.
type ClientCounters struct {
	Requests, Grants, Refusals, Cancels uint64
	DelayReqs, Samples, Rejected        uint64
	Dropped                             uint64 // malformed, wrong version or domain, unknown type
	UnknownTLVs                         uint64
	Reselections                        uint64
}

// Datagram is a message to send.
type Datagram struct {
	// Peer is the destination: for a client the server's index in Ready,
	// for a grandmaster the client's address.
	Server int
	Peer   Peer
	// Event: to the event port (319: Sync, Delay_Req, which need a
	// transmit stamp); else the general port (320).
	Event bool
	Data  []byte
	// TxID identifies a grandmaster's Sync: report its transmit stamp
	// with InputTxStamp and this TxID.
	TxID uint64
}

// InputKind says what happened.
type InputKind int

const (
	// InputTick: a timer fired; the engine sends what is due.
	InputTick InputKind = iota
	// InputDatagram: a datagram arrived, received at RxNS (the RX stamp).
	InputDatagram
	// InputTxStamp: the kernel or NIC reported when the last event message
	// left (TxNS; 0: no stamp came within the timeout).
	InputTxStamp
	// InputEstimate (grandmaster): the local clock's TrueTime status.
	InputEstimate
)

// Input is one event for Step.
type Input struct {
	Kind     InputKind
	Server   int    // client, InputDatagram: index of the server that sent it
	Peer     Peer   // grandmaster, InputDatagram: the sender
	Event    bool   // InputDatagram: arrived on the event port
	Datagram []byte // InputDatagram; not kept
	RxNS     int64  // InputDatagram: receive stamp
	TxNS     int64  // InputTxStamp
	TxID     uint64 // InputTxStamp (grandmaster): the Sync it belongs to

	Status truetime.Status // InputEstimate
	EpsNS  int64           // InputEstimate: half-width of the interval now
	Leap   truetime.Leap   // InputEstimate
	// Stratum (InputEstimate) is the local clock's NTP stratum: the
	// grandmaster advertises stepsRemoved = stratum − 1, so a client's
	// sample has the stratum an NTP server would give (0 and 1: a primary
	// reference, stepsRemoved 0).
	Stratum uint8
}

// Ready is what the driver must do after Step.
type Ready struct {
	// Send are datagrams to transmit now; they alias engine buffers,
	// valid until Advance.
	Send []Datagram
	// Samples are measurements for the discipline (client).
	Samples []discipline.Sample
	// Rejected are messages that gave no sample or were dropped (for
	// counters and logs).
	Rejected []error
	// DeadlineNS is the local reading at which the engine wants a tick.
	DeadlineNS int64
}

// NewClient returns a client port that starts negotiating at nowNS.
func NewClient(cfg ClientConfig, nowNS int64) *Client {
	if cfg.DurationS == 0 {
		cfg.DurationS = defaultDurationS
	}
	if cfg.DefaultUTCOffsetS == 0 {
		cfg.DefaultUTCOffsetS = defaultUTCOffsetS
	}
	c := &Client{cfg: cfg, servers: make([]server, cfg.Servers), selected: -1}
	for i := range c.servers {
		c.servers[i].announce.nextReqNS = nowNS
	}
	c.ready.DeadlineNS = nowNS
	return c
}

// Selected is the index of the server the BMCA chose, -1 for none.
func (c *Client) Selected() int { return c.selected }

// Counters returns the counters.
func (c *Client) Counters() ClientCounters { return c.cnt }

// ServerStatus is one server's negotiation state, for status output.
type ServerStatus struct {
	Dataset                        Dataset
	Qualified                      bool
	AnnounceGranted, SyncGranted   bool
	DelayRespGranted               bool
	AnnouncePeriodNS, SyncPeriodNS int64
	Refusals                       uint64
}

// Server returns what the client knows of server i at nowNS.
func (c *Client) Server(i int, nowNS int64) ServerStatus {
	s := &c.servers[i]
	return ServerStatus{
		Dataset: s.ds, Qualified: s.qualified(nowNS),
		AnnounceGranted: s.announce.valid(nowNS), SyncGranted: s.sync.valid(nowNS),
		DelayRespGranted: s.delayResp.valid(nowNS),
		AnnouncePeriodNS: s.announce.periodNS, SyncPeriodNS: s.sync.periodNS,
		Refusals: s.announce.refused + s.sync.refused + s.delayResp.refused,
	}
}

// Ready returns what the driver must do now.
func (c *Client) Ready() Ready { return c.ready }

// Advance acknowledges the last Ready.
func (c *Client) Advance() {
	c.ready.Send = c.ready.Send[:0]
	c.ready.Samples = c.ready.Samples[:0]
	c.ready.Rejected = c.ready.Rejected[:0]
	c.nbuf = 0
}

// Step feeds one input observed at local reading nowNS.
func (c *Client) Step(nowNS int64, in Input) {
	switch in.Kind {
	case InputDatagram:
		if in.Server >= 0 && in.Server < len(c.servers) {
			if err := c.receive(nowNS, in.Server, in.Datagram, in.RxNS); err != nil {
				c.ready.Rejected = append(c.ready.Rejected, err)
			}
		} else {
			c.cnt.Dropped++
		}
	case InputTxStamp:
		// TxNS 0: no stamp will come; t1 stays the pre-send reading.
		if c.delay.valid && !c.delay.stamped {
			if in.TxNS > 0 {
				c.delay.txNS = in.TxNS
			}
			c.delay.stamped = true
			if c.last.valid && c.last.seq == c.delay.seq && !c.last.used {
				// Its Delay_Resp came before the stamp.
				c.last.txNS, c.last.stamped = c.delay.txNS, true
				c.pairLast()
			}
		}
	}
	c.poll(nowNS)
}

func (c *Client) buf() []byte {
	if c.nbuf == len(c.bufs) {
		c.bufs = append(c.bufs, [MaxDatagram]byte{})
	}
	c.nbuf++
	return c.bufs[c.nbuf-1][:]
}

func (c *Client) header(t protocol.MessageType, seq uint16) protocol.Header {
	return protocol.Header{
		SdoIDAndMsgType:    protocol.NewSdoIDAndMsgType(t, 0),
		Version:            protocol.Version,
		DomainNumber:       c.cfg.Domain,
		FlagField:          protocol.FlagUnicast,
		SourcePortIdentity: c.cfg.Identity,
		SequenceID:         seq,
		LogMessageInterval: logIntervalUnused,
	}
}

// signal sends one Signaling message with tlvs to server i. The target is
// the master's port identity once known, else the wildcard.
func (c *Client) signal(i int, tlvs ...unicastTLV) {
	target := protocol.DefaultTargetPortIdentity
	if s := &c.servers[i]; s.haveDS {
		target = s.ds.Sender
	}
	c.seq.signaling++
	b := encodeSignaling(c.buf(), c.header(protocol.MessageSignaling, c.seq.signaling), target, tlvs)
	c.ready.Send = append(c.ready.Send, Datagram{Server: i, Data: b})
}

func (c *Client) request(t protocol.MessageType, log protocol.LogInterval) unicastTLV {
	c.cnt.Requests++
	return unicastTLV{Type: protocol.TLVRequestUnicastTransmission, MsgType: t, LogPeriod: log, Duration: c.cfg.DurationS}
}

// poll sends what is due: grant requests and renewals, the BMCA's
// decision, the next Delay_Req; and sets the deadline.
func (c *Client) poll(nowNS int64) {
	deadline := int64(1<<63 - 1)
	soon := func(t int64) {
		if t > nowNS && t < deadline {
			deadline = t
		}
	}
	for i := range c.servers {
		s := &c.servers[i]
		if s.announce.nextReqNS > 0 && nowNS >= s.announce.nextReqNS {
			s.announce.sent(nowNS)
			c.signal(i, c.request(protocol.MessageAnnounce, c.cfg.LogAnnounce))
		}
		soon(s.announce.nextReqNS)
		if s.announce.valid(nowNS) {
			soon(s.announce.expiresNS)
			if s.nAnn >= foreignThreshold {
				soon(s.annRxNS[(s.nAnn)%foreignThreshold] + announceReceiptN*s.announce.periodNS + 1)
			}
		}
	}
	c.reselect(nowNS)
	if i := c.selected; i >= 0 {
		s := &c.servers[i]
		var tlvs [2]unicastTLV
		n := 0
		if s.sync.nextReqNS > 0 && nowNS >= s.sync.nextReqNS {
			s.sync.sent(nowNS)
			tlvs[n] = c.request(protocol.MessageSync, c.cfg.LogSync)
			n++
		}
		if s.delayResp.nextReqNS > 0 && nowNS >= s.delayResp.nextReqNS {
			s.delayResp.sent(nowNS)
			tlvs[n] = c.request(protocol.MessageDelayResp, c.cfg.LogDelayReq)
			n++
		}
		if n > 0 {
			c.signal(i, tlvs[:n]...)
		}
		soon(s.sync.nextReqNS)
		soon(s.delayResp.nextReqNS)
		// A Delay_Req leaves right behind a complete Sync and is paired
		// with it (as linuxptp does), so the exchange spans the Sync's
		// arrival to the Delay_Req's, not up to a Sync interval: the local
		// clock's rate error over that span would shorten or lengthen δ.
		// No timer: without Syncs there is nothing to pair with.
		if c.syncFresh && s.sync.valid(nowNS) && s.delayResp.valid(nowNS) && nowNS >= c.next.delayReqNS {
			if c.last.valid && c.last.done && !c.last.used {
				// The previous Delay_Req's stamp never came: pair it with
				// its pre-send reading, early and so never late.
				c.last.stamped = true
				c.pairLast()
			}
			c.sendDelayReq(nowNS, i)
			// Due half a Sync period early, so that a Sync arriving a
			// little early (jitter) is not skipped.
			c.next.delayReqNS = nowNS + s.delayResp.periodNS - min(s.delayResp.periodNS, s.sync.periodNS)/2
		}
	}
	c.syncFresh = false
	c.ready.DeadlineNS = deadline
}

// reselect runs the BMCA over the qualified servers; on a change it
// cancels the old master's Sync and Delay_Resp grants and asks the new one.
func (c *Client) reselect(nowNS int64) {
	best := -1
	for i := range c.servers {
		if c.servers[i].qualified(nowNS) && (best < 0 || Compare(c.servers[i].ds, c.servers[best].ds) < 0) {
			best = i
		}
	}
	if best == c.selected {
		return
	}
	c.cnt.Reselections++
	if old := c.selected; old >= 0 {
		s := &c.servers[old]
		if s.sync.granted || s.delayResp.granted {
			c.cnt.Cancels++
			c.signal(old,
				unicastTLV{Type: protocol.TLVCancelUnicastTransmission, MsgType: protocol.MessageSync},
				unicastTLV{Type: protocol.TLVCancelUnicastTransmission, MsgType: protocol.MessageDelayResp})
		}
		s.sync, s.delayResp = grant{}, grant{}
	}
	c.selected = best
	c.sync, c.delay, c.last, c.early, c.syncFresh = syncRx{}, delayEx{}, delayEx{}, earlyFollowUp{}, false
	if best >= 0 {
		s := &c.servers[best]
		s.sync.nextReqNS, s.delayResp.nextReqNS = nowNS, nowNS
	}
	c.next.delayReqNS = nowNS
}

func (c *Client) sendDelayReq(nowNS int64, i int) {
	c.seq.delayReq++
	m := protocol.SyncDelayReq{Header: c.header(protocol.MessageDelayReq, c.seq.delayReq)}
	m.ControlField = 1 // Delay_Req (Table 42)
	b := c.buf()
	n, err := m.MarshalBinaryTo(b)
	if err != nil {
		panic("ptp: Delay_Req: " + err.Error())
	}
	c.ready.Send = append(c.ready.Send, Datagram{Server: i, Event: true, Data: finish(b, n)})
	// t1 is the reading before the send: early, never late; the TX stamp
	// (InputTxStamp) replaces it.
	c.delay = delayEx{seq: c.seq.delayReq, txNS: nowNS, sync: c.sync, valid: true}
	c.cnt.DelayReqs++
}

// correction is a message's correctionField in whole ns.
func (c *Client) correction(h *protocol.Header) (int64, bool) {
	if c.ignoreCorrection {
		return 0, true
	}
	return correctionNS(h.CorrectionField)
}

// receive handles one datagram from server i.
func (c *Client) receive(nowNS int64, i int, b []byte, rxNS int64) error {
	var h protocol.Header
	if err := decodeHeader(b, &h); err != nil {
		c.cnt.Dropped++
		return err
	}
	if h.DomainNumber != c.cfg.Domain {
		c.cnt.Dropped++
		return fmt.Errorf("%w %d (want %d)", ErrDomain, h.DomainNumber, c.cfg.Domain)
	}
	t := h.MessageType()
	if l := minLen(t); l == 0 || int(h.MessageLength) < l {
		c.cnt.Dropped++
		if l == 0 {
			return fmt.Errorf("%w: %v", ErrMessageType, t)
		}
		return ErrShort
	}
	s := &c.servers[i]
	switch t {
	case protocol.MessageSignaling:
		return c.receiveSignaling(nowNS, i, b)
	case protocol.MessageAnnounce:
		m := &c.msgs.ann
		if err := m.UnmarshalBinary(c.bodyOnly(b, announceLen)); err != nil {
			c.cnt.Dropped++
			return fmt.Errorf("%w: %v", ErrShort, err)
		}
		s.ds = Dataset{
			Priority1: m.GrandmasterPriority1, Quality: m.GrandmasterClockQuality,
			Priority2: m.GrandmasterPriority2, GMIdentity: m.GrandmasterIdentity,
			StepsRemoved: m.StepsRemoved, Sender: h.SourcePortIdentity,
		}
		s.haveDS = true
		s.annRxNS[s.nAnn%foreignThreshold] = nowNS
		s.nAnn++
		s.flags, s.utcOffset = h.FlagField, m.CurrentUTCOffset
		return nil
	}
	if i != c.selected {
		return ErrNotSelected
	}
	if h.SourcePortIdentity != s.ds.Sender {
		return ErrSender
	}
	switch t {
	case protocol.MessageSync:
		m := &c.msgs.sdr
		if err := m.UnmarshalBinary(c.bodyOnly(b, syncLen)); err != nil {
			c.cnt.Dropped++
			return fmt.Errorf("%w: %v", ErrShort, err)
		}
		corr, ok := c.correction(&h)
		if !ok {
			return fmt.Errorf("%w: Sync correctionField too big", ErrBadTimestamps)
		}
		c.sync = syncRx{seq: h.SequenceID, rxNS: rxNS, corrNS: corr, valid: true}
		if h.FlagField&protocol.FlagTwoStep == 0 { // one-step: the origin is exact
			o, ok := FromTimestamp(m.OriginTimestamp)
			if !ok {
				return fmt.Errorf("%w: Sync origin", ErrBadTimestamps)
			}
			c.sync.originN, c.sync.done, c.syncFresh = o+corr, true, true
			return nil
		}
		if c.early.valid && c.early.seq == h.SequenceID { // its Follow_Up came first
			c.early.valid = false
			c.sync.originN, c.sync.done, c.syncFresh = c.early.originNS+corr, true, true
		}
		return nil
	case protocol.MessageFollowUp:
		m := &c.msgs.fu
		if err := m.UnmarshalBinary(b[:h.MessageLength]); err != nil {
			c.cnt.Dropped++
			return fmt.Errorf("%w: %v", ErrShort, err)
		}
		o, ok := FromTimestamp(m.PreciseOriginTimestamp)
		corr, ok2 := c.correction(&h)
		if !ok || !ok2 {
			return fmt.Errorf("%w: Follow_Up origin or correction", ErrBadTimestamps)
		}
		if !c.sync.valid || c.sync.done || c.sync.seq != h.SequenceID {
			// Possibly ahead of its Sync (reordered): keep it for the Sync.
			c.early = earlyFollowUp{seq: h.SequenceID, originNS: o + corr, valid: true}
			return ErrSequence
		}
		c.sync.originN, c.sync.done, c.syncFresh = o+c.sync.corrNS+corr, true, true
		return nil
	case protocol.MessageDelayResp:
		m := &c.msgs.dr
		if err := m.UnmarshalBinary(b[:h.MessageLength]); err != nil {
			c.cnt.Dropped++
			return fmt.Errorf("%w: %v", ErrShort, err)
		}
		if m.RequestingPortIdentity != c.cfg.Identity {
			return ErrNotForUs
		}
		if !c.delay.valid || c.delay.done || c.delay.seq != h.SequenceID {
			return ErrSequence
		}
		r, ok := FromTimestamp(m.ReceiveTimestamp)
		corr, ok2 := c.correction(&h)
		if !ok || !ok2 {
			return fmt.Errorf("%w: Delay_Resp receive timestamp or correction", ErrBadTimestamps)
		}
		c.delay.rxMaster, c.delay.done = r-corr, true
		c.last = c.delay
		return c.pair() // nil until t1 is settled: at its TX stamp, or the next Sync
	}
	c.cnt.Dropped++
	return fmt.Errorf("%w: %v", ErrMessageType, t)
}

// bodyOnly returns a copy of the first l bytes of b (l ≤ messageLength,
// checked by the caller) with messageLength set to l: facebook/time then
// decodes the body and no TLVs. The TLVs an Announce or Sync may carry
// (path trace, profile extensions) are not used here, and the library
// rejects a whole message for a TLV type it does not implement.
func (c *Client) bodyOnly(b []byte, l int) []byte {
	n := copy(c.scratch[:l], b)
	return finish(c.scratch[:], n)
}

// pairLast is pair outside a message's handling: a refusal joins Rejected.
func (c *Client) pairLast() {
	if err := c.pair(); err != nil {
		c.ready.Rejected = append(c.ready.Rejected, err)
	}
}

// pair makes a sample from the newest Delay_Req exchange and the Sync it
// followed. Mapping to the discipline's t1..t4 (offset
// θ = ((t2−t1)+(t3−t4))/2, delay δ = (t4−t1)−(t3−t2)):
//
//	t1 = Delay_Req sent (local)       t2 = its receipt at the master
//	t3 = Sync origin (master, from Follow_Up + corrections)
//	t4 = Sync received (local)
//
// so θ = ((t2−t1) + (t3−t4))/2 is 1588's −offsetFromMaster and δ is twice
// its meanPathDelay. The Sync came first: t4 ≤ t1 and t3 ≤ t2, and δ is
// the master's span t2 − t3 minus the local one t1 − t4, both as short as
// the Delay_Req's send after the Sync's arrival allows.
func (c *Client) pair() error {
	d := &c.last
	if !d.done || d.used || !d.stamped || !d.sync.done {
		return nil
	}
	d.used = true
	s := &c.servers[c.selected]
	if cl := s.ds.Quality.ClockClass; cl == protocol.ClockClassSlaveOnly || (cl == 248 && !c.cfg.AcceptDefaultClass) {
		c.cnt.Rejected++
		return fmt.Errorf("%w: %d", ErrUnsyncMaster, cl)
	}
	// Master times to UTC: a PTP-timescale master counts TAI.
	var taiUTC int64
	if s.flags&protocol.FlagPTPTimescale != 0 {
		off := c.cfg.DefaultUTCOffsetS
		if s.flags&protocol.FlagCurrentUtcOffsetValid != 0 {
			off = s.utcOffset
		}
		taiUTC = int64(off) * 1e9
	}
	smp := discipline.Sample{
		T1NS: d.txNS, T2NS: d.rxMaster - taiUTC,
		T3NS: d.sync.originN - taiUTC, T4NS: d.sync.rxNS,
		Stratum: uint8(min(int(s.ds.StepsRemoved)+1, 15)),
		RefID:   uint32(s.ds.GMIdentity),
	}
	if a := s.ds.Quality.ClockAccuracy; a >= protocol.ClockAccuracyNanosecond25 && a <= protocol.ClockAccuracySecondGreater10 {
		smp.RootDispersionNS = int64(a.Duration())
	}
	switch {
	case s.flags&protocol.FlagLeap61 != 0:
		smp.Leap = truetime.LeapInsert
	case s.flags&protocol.FlagLeap59 != 0:
		smp.Leap = truetime.LeapDelete
	}
	if err := smp.Validate(); err != nil {
		c.cnt.Rejected++
		return fmt.Errorf("%w: %v", ErrBadTimestamps, err)
	}
	c.cnt.Samples++
	c.ready.Samples = append(c.ready.Samples, smp)
	return nil
}

// receiveSignaling applies grants, cancels and acknowledgements.
func (c *Client) receiveSignaling(nowNS int64, i int, b []byte) error {
	sg := &c.sig
	if err := decodeSignaling(b, sg); err != nil {
		c.cnt.Dropped++
		return err
	}
	c.cnt.UnknownTLVs += uint64(sg.Unknown)
	if sg.Target != c.cfg.Identity && sg.Target != protocol.DefaultTargetPortIdentity {
		return ErrNotForUs
	}
	s := &c.servers[i]
	for _, t := range sg.TLVs {
		var g *grant
		var reqLog protocol.LogInterval
		switch t.MsgType {
		case protocol.MessageAnnounce:
			g, reqLog = &s.announce, c.cfg.LogAnnounce
		case protocol.MessageSync:
			g, reqLog = &s.sync, c.cfg.LogSync
		case protocol.MessageDelayResp:
			g, reqLog = &s.delayResp, c.cfg.LogDelayReq
		default:
			continue
		}
		switch t.Type {
		case protocol.TLVGrantUnicastTransmission:
			if g != &s.announce && i != c.selected {
				continue // a late grant from a master we left
			}
			g.answer(nowNS, t, reqLog, c.cfg.DurationS)
			if t.Duration == 0 {
				c.cnt.Refusals++
			} else {
				c.cnt.Grants++
			}
		case protocol.TLVCancelUnicastTransmission:
			// The master stops: acknowledge, forget the grant and ask again
			// after a backoff.
			g.granted = false
			g.sent(nowNS)
			c.signal(i, unicastTLV{Type: protocol.TLVAcknowledgeCancelUnicastTransmission, MsgType: t.MsgType})
		}
	}
	return nil
}
