package engine

import (
	"encoding/binary"
	"reflect"
	"testing"

	"github.com/facebook/time/ptp/protocol"

	"github.com/meridiantime/meridian/truetime"
)

// A PTP timestamp survives ns → Timestamp → ns, and a decodable
// Timestamp survives Timestamp → ns → Timestamp.
func FuzzTimestamp(f *testing.F) {
	f.Add(int64(1_790_000_000_123_456_789), uint64(0), uint32(0))
	f.Add(int64(0), uint64(1<<48-1), uint32(999_999_999))
	f.Fuzz(func(t *testing.T, ns int64, sec uint64, nsec uint32) {
		if ns >= 0 {
			if got, ok := FromTimestamp(ToTimestamp(ns)); !ok || got != ns {
				t.Fatalf("%d → %v → %d %v", ns, ToTimestamp(ns), got, ok)
			}
		}
		var ts protocol.Timestamp
		for i := 5; i >= 0; i-- {
			ts.Seconds[i] = byte(sec >> (8 * (5 - i)))
		}
		ts.Nanoseconds = nsec
		if v, ok := FromTimestamp(ts); ok && ToTimestamp(v) != ts {
			t.Fatalf("%v → %d → %v", ts, v, ToTimestamp(v))
		}
	})
}

// Every message body we parse round-trips through facebook/time's codec
// with our messageLength: decode → encode → decode gives the same
// message, and the encoded messageLength is the encoded length.
func FuzzMessages(f *testing.F) {
	for _, b := range sampleMessages() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var h protocol.Header
		if decodeHeader(b, &h) != nil {
			return
		}
		l := minLen(h.MessageType())
		if l == 0 || int(h.MessageLength) < l || h.MessageType() == protocol.MessageSignaling {
			return
		}
		// The body only (TLVs of Announce and Sync are not used).
		body := append([]byte(nil), b[:l]...)
		binary.BigEndian.PutUint16(body[2:], uint16(l))
		var m1, m2 interface {
			UnmarshalBinary([]byte) error
			MarshalBinaryTo([]byte) (int, error)
		}
		switch h.MessageType() {
		case protocol.MessageSync, protocol.MessageDelayReq:
			m1, m2 = &protocol.SyncDelayReq{}, &protocol.SyncDelayReq{}
		case protocol.MessageFollowUp:
			m1, m2 = &protocol.FollowUp{}, &protocol.FollowUp{}
		case protocol.MessageDelayResp:
			m1, m2 = &protocol.DelayResp{}, &protocol.DelayResp{}
		case protocol.MessageAnnounce:
			m1, m2 = &protocol.Announce{}, &protocol.Announce{}
		}
		if err := m1.UnmarshalBinary(body); err != nil {
			t.Fatalf("a body of the right length does not decode: %v", err)
		}
		buf := make([]byte, MaxDatagram)
		n, err := m1.MarshalBinaryTo(buf)
		if err != nil {
			t.Fatal(err)
		}
		enc := finish(buf, n)
		if n != l || !reflect.DeepEqual(enc, body) {
			t.Fatalf("re-encoded %x, was %x", enc, body)
		}
		if err := m2.UnmarshalBinary(enc); err != nil || !reflect.DeepEqual(m1, m2) {
			t.Fatalf("round trip: %+v → %+v (%v)", m1, m2, err)
		}
	})
}

// Signaling messages round-trip through decodeSignaling and
// encodeSignaling (the unicast TLVs, the target, the header fields the
// encoder does not set itself), never hold more TLVs than the cap, and the
// encoded messageLength is exact.
func FuzzSignaling(f *testing.F) {
	for _, b := range sampleMessages() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var s1 signaling
		if err := decodeSignaling(b, &s1); err != nil {
			return
		}
		if len(s1.TLVs)+s1.Unknown > maxSignalingTLVs {
			t.Fatalf("%d TLVs accepted", len(s1.TLVs)+s1.Unknown)
		}
		known := append([]unicastTLV(nil), s1.TLVs...)
		if len(known) == 0 {
			return // the library refuses to encode a Signaling message without TLVs
		}
		enc := encodeSignaling(make([]byte, MaxDatagram), s1.Header, s1.Target, known)
		if int(binary.BigEndian.Uint16(enc[2:])) != len(enc) {
			t.Fatal("messageLength is not the length")
		}
		var s2 signaling
		if err := decodeSignaling(enc, &s2); err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		h1, h2 := s1.Header, s2.Header
		if !reflect.DeepEqual(s1.TLVs, s2.TLVs) || s1.Target != s2.Target || s2.Unknown != 0 ||
			h1.DomainNumber != h2.DomainNumber || h1.FlagField != h2.FlagField || h1.CorrectionField != h2.CorrectionField ||
			h1.SourcePortIdentity != h2.SourcePortIdentity || h1.SequenceID != h2.SequenceID {
			t.Fatalf("round trip:\n%+v\n%+v", s1, s2)
		}
	})
}

// Absurd negotiation (any rate, any duration, any message type, unknown
// TLVs, wrong domain or version, or plain garbage) never crashes the
// grandmaster; every grant it sends is a refusal or within its limits;
// it never holds more clients than allowed; input in a wrong domain or
// version gets no answer and is counted; and the Syncs it then sends
// respect the fastest granted rate.
func FuzzMasterNegotiation(f *testing.F) {
	f.Add([]byte(nil), uint8(protocol.MessageSync), int8(-7), uint32(60), uint8(0), uint8(2), false)
	f.Add([]byte(nil), uint8(protocol.MessageAnnounce), int8(127), uint32(1<<32-1), uint8(0), uint8(2), true)
	f.Add([]byte(nil), uint8(protocol.MessageDelayResp), int8(-128), uint32(0), uint8(9), uint8(3), true)
	for _, b := range sampleMessages() {
		f.Add(b, uint8(0), int8(0), uint32(0), uint8(0), uint8(0), false)
	}
	f.Fuzz(func(t *testing.T, raw []byte, mt uint8, log int8, dur uint32, domain, version uint8, unknownTLV bool) {
		cfg := gmConfig(0xaa)
		cfg.MinLogInterval, cfg.MaxLogInterval, cfg.MaxDurationS, cfg.MaxClients = -3, 4, 300, 3
		m := NewMaster(cfg)
		m.Step(trueStart, Input{Kind: InputEstimate, Status: truetime.Synchronized, EpsNS: 1000})
		msgs := [][]byte{raw}
		if len(raw) == 0 {
			b := requestMsg(0, req(protocol.MessageType(mt&0xf), protocol.LogInterval(log), dur), req(protocol.MessageSync, protocol.LogInterval(log), dur))
			if unknownTLV { // a TLV of a type nobody implements, before the end
				b = append(b, 0x7f, 0x00, 0x00, 0x02, 0xaa, 0xbb)
				binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
			}
			b[1], b[4] = version, domain
			msgs = [][]byte{b}
		}
		now := trueStart
		for i, b := range msgs {
			before := m.Counters()
			for p := range byte(5) {
				m.Step(now, Input{Kind: InputDatagram, Peer: peer(p), Datagram: b, RxNS: now})
			}
			after := m.Counters()
			wrong := len(b) >= HeaderLen && (b[1]&0xf != 2 || b[4] != cfg.Domain)
			if wrong && (len(m.Ready().Send) != 0 || after.DroppedVersion+after.DroppedDomain+after.DroppedShort == before.DroppedVersion+before.DroppedDomain+before.DroppedShort) {
				t.Fatalf("message %d in a wrong version/domain answered or not counted", i)
			}
			checkSent(t, m, cfg)
			m.Advance()
		}
		if c := m.Counters(); c.Clients > cfg.MaxClients {
			t.Fatalf("%d clients, max %d", c.Clients, cfg.MaxClients)
		}
		// Run 10 s: at most 8 Sync/s per client (the fastest rate granted).
		var syncs int
		for now < trueStart+10e9 {
			now = max(now+1e6, min(m.Ready().DeadlineNS, now+1e9))
			m.Step(now, Input{Kind: InputTick})
			for _, d := range m.Ready().Send {
				if d.Event {
					syncs++
				}
			}
			checkSent(t, m, cfg)
			m.Advance()
		}
		if max := cfg.MaxClients * (8*10 + 1); syncs > max {
			t.Fatalf("%d Syncs in 10 s to ≤ %d clients", syncs, cfg.MaxClients)
		}
	})
}

func checkSent(t *testing.T, m *Master, cfg MasterConfig) {
	t.Helper()
	for _, d := range m.Ready().Send {
		if int(binary.BigEndian.Uint16(d.Data[2:])) != len(d.Data) {
			t.Fatalf("sent %v with a wrong messageLength", msgType(d.Data))
		}
		if msgType(d.Data) != protocol.MessageSignaling {
			continue
		}
		var s signaling
		if err := decodeSignaling(d.Data, &s); err != nil {
			t.Fatalf("master sent an undecodable Signaling message: %v", err)
		}
		for _, g := range s.TLVs {
			if g.Type != protocol.TLVGrantUnicastTransmission || g.Duration == 0 {
				continue
			}
			if g.Duration > cfg.MaxDurationS || g.LogPeriod < cfg.MinLogInterval || g.LogPeriod > cfg.MaxLogInterval || kindOf(g.MsgType) < 0 {
				t.Fatalf("granted %+v beyond limits", g)
			}
		}
	}
}

// Whatever a server sends (forged grants with absurd rates and durations,
// cancels, garbage), the client neither crashes nor sends faster than it
// asked: Delay_Reqs at most at its requested rate, grant requests at most
// every ¾ of the shortest duration it asked for or its 1 s backoff.
func FuzzClientInput(f *testing.F) {
	for _, b := range sampleMessages() {
		f.Add(b, int8(-7), uint32(1))
	}
	f.Add([]byte(nil), int8(-30), uint32(1<<32-1))
	f.Fuzz(func(t *testing.T, raw []byte, log int8, dur uint32) {
		w := newWorld(t, clientConfig(), clientOff, oneMaster(10_000, 10_000))
		w.run(5e9)
		forged := raw
		if len(forged) == 0 { // a forged grant from the master's identity
			h := protocol.Header{FlagField: protocol.FlagUnicast, SourcePortIdentity: protocol.PortIdentity{ClockIdentity: 0xaa, PortNumber: 1}}
			var tlvs []unicastTLV
			for _, mt := range []protocol.MessageType{protocol.MessageAnnounce, protocol.MessageSync, protocol.MessageDelayResp} {
				tlvs = append(tlvs, unicastTLV{Type: protocol.TLVGrantUnicastTransmission, MsgType: mt, LogPeriod: protocol.LogInterval(log), Duration: dur})
			}
			forged = encodeSignaling(make([]byte, MaxDatagram), h, w.cl.cfg.Identity, tlvs)
		}
		w.sent = nil
		start := w.T
		w.enqueue(delivery{at: w.T, toMaster: -1, from: 0, data: forged})
		w.run(10e9)
		var dreq, reqs int
		for _, d := range w.sent {
			if d.toMaster < 0 || d.at < start {
				continue
			}
			switch msgType(d.data) {
			case protocol.MessageDelayReq:
				dreq++
			case protocol.MessageSignaling:
				reqs++
			}
		}
		if dreq > 10+1 {
			t.Fatalf("%d Delay_Reqs in 10 s at a requested 1/s", dreq)
		}
		if reqs > 2*(10*4/3+2) {
			t.Fatalf("%d signaling messages in 10 s", reqs)
		}
	})
}

// sampleMessages are valid messages of every type, as seeds.
func sampleMessages() [][]byte {
	var out [][]byte
	m := NewMaster(gmConfig(0xaa))
	m.Step(trueStart, Input{Kind: InputEstimate, Status: truetime.Synchronized, EpsNS: 500})
	m.Step(trueStart, Input{Kind: InputDatagram, Peer: peer(1), Datagram: requestMsg(0,
		req(protocol.MessageAnnounce, 0, 60), req(protocol.MessageSync, 0, 60), req(protocol.MessageDelayResp, 0, 60))})
	var id uint64
	for _, d := range m.Ready().Send {
		out = append(out, append([]byte(nil), d.Data...))
		if d.Event {
			id = d.TxID
		}
	}
	m.Advance()
	m.Step(trueStart, Input{Kind: InputTxStamp, TxID: id, TxNS: trueStart + 5})
	dr := protocol.SyncDelayReq{Header: protocol.Header{SdoIDAndMsgType: protocol.NewSdoIDAndMsgType(protocol.MessageDelayReq, 0), Version: 2, SourcePortIdentity: clientID}}
	b := make([]byte, MaxDatagram)
	n, _ := dr.MarshalBinaryTo(b)
	out = append(out, append([]byte(nil), finish(b, n)...))
	m.Step(trueStart, Input{Kind: InputDatagram, Peer: peer(1), Datagram: out[len(out)-1], RxNS: trueStart})
	for _, d := range m.Ready().Send {
		out = append(out, append([]byte(nil), d.Data...))
	}
	out = append(out, requestMsg(0, unicastTLV{Type: protocol.TLVCancelUnicastTransmission, MsgType: protocol.MessageSync},
		unicastTLV{Type: protocol.TLVAcknowledgeCancelUnicastTransmission, MsgType: protocol.MessageSync, Flags: 1}))
	return out
}
