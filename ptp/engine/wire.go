package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/facebook/time/ptp/protocol"
)

// Wire-level constants (IEEE 1588-2019).
const (
	HeaderLen = 34 // common header (Table 35)

	// Lengths of the PDUs without TLVs: what messageLength must say.
	syncLen      = HeaderLen + 10 // Sync, Delay_Req (Table 44)
	followUpLen  = HeaderLen + 10 // Table 45
	delayRespLen = HeaderLen + 20 // Table 46
	announceLen  = HeaderLen + 30 // Table 43
	signalingLen = HeaderLen + 10 // targetPortIdentity (Table 51), then TLVs

	tlvHeadLen = 4

	// MaxDatagram is the largest PTP message either engine builds or
	// accepts; the longest we send is a Signaling message with three grants.
	MaxDatagram = 512

	logIntervalUnused = 0x7f // logMessageInterval of Delay_Req/signaling (Table 42)
	versionPTP2       = 2
)

// ErrShort and friends are the reasons a datagram is dropped. Engines count
// them (Counters) and keep going: no input can make them fail.
var (
	ErrShort       = errors.New("ptp: datagram shorter than its messageLength or its message type")
	ErrVersion     = errors.New("ptp: not PTP version 2")
	ErrDomain      = errors.New("ptp: wrong domainNumber")
	ErrMessageType = errors.New("ptp: message type not handled here")
	ErrTLV         = errors.New("ptp: malformed TLV")
)

// Header decodes the common header of b (Table 35) into facebook/time's
// type and checks what every message needs: version 2, a messageLength
// that fits in b and is at least the header. The caller checks the domain.
func decodeHeader(b []byte, h *protocol.Header) error {
	if len(b) < HeaderLen {
		return ErrShort
	}
	h.SdoIDAndMsgType = protocol.SdoIDAndMsgType(b[0])
	h.Version = b[1]
	h.MessageLength = binary.BigEndian.Uint16(b[2:])
	h.DomainNumber = b[4]
	h.MinorSdoID = b[5]
	h.FlagField = binary.BigEndian.Uint16(b[6:])
	h.CorrectionField = protocol.Correction(binary.BigEndian.Uint64(b[8:]))
	h.MessageTypeSpecific = binary.BigEndian.Uint32(b[16:])
	h.SourcePortIdentity.ClockIdentity = protocol.ClockIdentity(binary.BigEndian.Uint64(b[20:]))
	h.SourcePortIdentity.PortNumber = binary.BigEndian.Uint16(b[28:])
	h.SequenceID = binary.BigEndian.Uint16(b[30:])
	h.ControlField = b[32]
	h.LogMessageInterval = protocol.LogInterval(b[33])
	if h.Version&protocol.MajorVersionMask != versionPTP2 {
		return ErrVersion
	}
	if int(h.MessageLength) > len(b) || h.MessageLength < HeaderLen {
		return ErrShort
	}
	return nil
}

// minLen is the PDU length (without TLVs) of each message type we parse.
func minLen(t protocol.MessageType) int {
	switch t {
	case protocol.MessageSync, protocol.MessageDelayReq:
		return syncLen
	case protocol.MessageFollowUp:
		return followUpLen
	case protocol.MessageDelayResp:
		return delayRespLen
	case protocol.MessageAnnounce:
		return announceLen
	case protocol.MessageSignaling:
		return signalingLen
	}
	return 0
}

// finish sets messageLength to the n bytes a MarshalBinaryTo wrote (the
// library leaves it as the caller set it; ptp4l drops a message whose
// length is not exact).
func finish(b []byte, n int) []byte {
	binary.BigEndian.PutUint16(b[2:], uint16(n))
	return b[:n]
}

// ptpEpochOffset is not needed: PTP's epoch is 1970-01-01 TAI, so a PTP
// timestamp is Unix time on the TAI scale (or on an arbitrary one).

// ToTimestamp converts ns since the PTP epoch to a PTP timestamp.
// Negative values are clamped to 0 (the epoch).
func ToTimestamp(ns int64) protocol.Timestamp {
	if ns < 0 {
		ns = 0
	}
	var t protocol.Timestamp
	sec := uint64(ns / 1e9)
	t.Nanoseconds = uint32(ns % 1e9)
	for i := 5; i >= 0; i-- {
		t.Seconds[i] = byte(sec)
		sec >>= 8
	}
	return t
}

// maxTimestampSec keeps FromTimestamp's result inside int64 ns.
const maxTimestampSec = math.MaxInt64/1_000_000_000 - 1

// FromTimestamp converts a PTP timestamp to ns since the PTP epoch. ok is
// false for nanoseconds ≥ 10⁹ (no honest clock sends that) or seconds too
// large for int64 ns (year 2262 and later).
func FromTimestamp(t protocol.Timestamp) (ns int64, ok bool) {
	sec := t.Seconds.Seconds()
	if t.Nanoseconds >= 1e9 || sec > maxTimestampSec {
		return 0, false
	}
	return int64(sec)*1e9 + int64(t.Nanoseconds), true
}

// correctionNS is the whole-ns part of a correctionField (scaled ns · 2¹⁶),
// rounded toward zero. ok is false for the "too big" value.
func correctionNS(c protocol.Correction) (int64, bool) {
	if c.TooBig() {
		return 0, false
	}
	return int64(c) / 65536, true
}

// logToNS is 2^log seconds in ns for log in [-30, 30] (ok false outside:
// no grant is asked or given beyond that).
func logToNS(log protocol.LogInterval) (int64, bool) {
	if log < -30 || log > 30 {
		return 0, false
	}
	if log >= 0 {
		return int64(1e9) << uint(log), true
	}
	return int64(1e9) >> uint(-log), true
}

// unicastTLV is one unicast negotiation TLV of a Signaling message
// (Tables 110–113), decoded by facebook/time's TLV types.
type unicastTLV struct {
	Type      protocol.TLVType
	MsgType   protocol.MessageType
	Flags     uint8                // low nibble of the message type octet (cancel: R/G)
	LogPeriod protocol.LogInterval // request, grant
	Duration  uint32               // request, grant (s)
	Renewal   bool                 // grant: renewal invited
}

// signaling is a decoded Signaling message.
type signaling struct {
	Header  protocol.Header
	Target  protocol.PortIdentity
	TLVs    []unicastTLV // the unicast TLVs, in order
	Unknown int          // TLVs of other types, skipped
}

// maxSignalingTLVs bounds the TLVs one message may carry (a request for
// every message type, twice, is 8); more is an attack, not a peer.
const maxSignalingTLVs = 8

// decodeSignaling parses a Signaling message. Unlike facebook/time's
// Signaling.UnmarshalBinary, which rejects a whole message with a TLV type
// it does not implement, unknown TLVs are skipped and counted (1588
// §14.1.1: a receiver ignores TLVs it does not understand). Each unicast
// TLV is decoded by the library's TLV type. s.TLVs is reused.
func decodeSignaling(b []byte, s *signaling) error {
	if err := decodeHeader(b, &s.Header); err != nil {
		return err
	}
	if s.Header.MessageType() != protocol.MessageSignaling {
		return ErrMessageType
	}
	end := int(s.Header.MessageLength)
	if end < signalingLen {
		return ErrShort
	}
	s.Target.ClockIdentity = protocol.ClockIdentity(binary.BigEndian.Uint64(b[HeaderLen:]))
	s.Target.PortNumber = binary.BigEndian.Uint16(b[HeaderLen+8:])
	s.TLVs = s.TLVs[:0]
	s.Unknown = 0
	pos := signalingLen
	for pos < end {
		if end-pos < tlvHeadLen {
			return fmt.Errorf("%w: %d stray bytes after the TLVs", ErrTLV, end-pos)
		}
		if len(s.TLVs)+s.Unknown >= maxSignalingTLVs {
			return fmt.Errorf("%w: more than %d TLVs", ErrTLV, maxSignalingTLVs)
		}
		typ := protocol.TLVType(binary.BigEndian.Uint16(b[pos:]))
		l := int(binary.BigEndian.Uint16(b[pos+2:]))
		if l%2 != 0 || pos+tlvHeadLen+l > end {
			return fmt.Errorf("%w: %v of length %d at offset %d overruns messageLength %d", ErrTLV, typ, l, pos, end)
		}
		tb := b[pos : pos+tlvHeadLen+l]
		var t unicastTLV
		var err error
		switch typ {
		case protocol.TLVRequestUnicastTransmission:
			var v protocol.RequestUnicastTransmissionTLV
			if err = v.UnmarshalBinary(tb); err == nil {
				t = unicastTLV{Type: typ, MsgType: v.MsgTypeAndReserved.MsgType(), LogPeriod: v.LogInterMessagePeriod, Duration: v.DurationField}
			}
		case protocol.TLVGrantUnicastTransmission:
			var v protocol.GrantUnicastTransmissionTLV
			if err = v.UnmarshalBinary(tb); err == nil {
				t = unicastTLV{Type: typ, MsgType: v.MsgTypeAndReserved.MsgType(), LogPeriod: v.LogInterMessagePeriod, Duration: v.DurationField, Renewal: v.Renewal&1 != 0}
			}
		case protocol.TLVCancelUnicastTransmission:
			var v protocol.CancelUnicastTransmissionTLV
			if err = v.UnmarshalBinary(tb); err == nil {
				t = unicastTLV{Type: typ, MsgType: v.MsgTypeAndFlags.MsgType(), Flags: uint8(v.MsgTypeAndFlags) & 0xf}
			}
		case protocol.TLVAcknowledgeCancelUnicastTransmission:
			var v protocol.AcknowledgeCancelUnicastTransmissionTLV
			if err = v.UnmarshalBinary(tb); err == nil {
				t = unicastTLV{Type: typ, MsgType: v.MsgTypeAndFlags.MsgType(), Flags: uint8(v.MsgTypeAndFlags) & 0xf}
			}
		default:
			s.Unknown++
			pos += tlvHeadLen + l
			continue
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrTLV, err)
		}
		s.TLVs = append(s.TLVs, t)
		pos += tlvHeadLen + l
	}
	return nil
}

// encodeSignaling writes a Signaling message carrying tlvs into b and
// returns the message (messageLength set). Built with facebook/time's TLV
// types; b must hold MaxDatagram bytes.
func encodeSignaling(b []byte, h protocol.Header, target protocol.PortIdentity, tlvs []unicastTLV) []byte {
	h.SdoIDAndMsgType = protocol.NewSdoIDAndMsgType(protocol.MessageSignaling, 0)
	h.Version = protocol.Version
	h.LogMessageInterval = logIntervalUnused
	h.ControlField = 5 // "all others" (Table 42)
	var enc protocol.Signaling
	enc.Header = h
	enc.TargetPortIdentity = target
	var (
		req    [maxSignalingTLVs]protocol.RequestUnicastTransmissionTLV
		grant  [maxSignalingTLVs]protocol.GrantUnicastTransmissionTLV
		cancel [maxSignalingTLVs]protocol.CancelUnicastTransmissionTLV
		ack    [maxSignalingTLVs]protocol.AcknowledgeCancelUnicastTransmissionTLV
		list   [maxSignalingTLVs]protocol.TLV
	)
	for i, t := range tlvs {
		switch t.Type {
		case protocol.TLVRequestUnicastTransmission:
			req[i] = protocol.RequestUnicastTransmissionTLV{
				TLVHead:               protocol.TLVHead{TLVType: t.Type, LengthField: 6},
				MsgTypeAndReserved:    protocol.NewUnicastMsgTypeAndFlags(t.MsgType, 0),
				LogInterMessagePeriod: t.LogPeriod, DurationField: t.Duration,
			}
			list[i] = &req[i]
		case protocol.TLVGrantUnicastTransmission:
			var r uint8
			if t.Renewal {
				r = 1
			}
			grant[i] = protocol.GrantUnicastTransmissionTLV{
				TLVHead:               protocol.TLVHead{TLVType: t.Type, LengthField: 8},
				MsgTypeAndReserved:    protocol.NewUnicastMsgTypeAndFlags(t.MsgType, 0),
				LogInterMessagePeriod: t.LogPeriod, DurationField: t.Duration, Renewal: r,
			}
			list[i] = &grant[i]
		case protocol.TLVCancelUnicastTransmission:
			cancel[i] = protocol.CancelUnicastTransmissionTLV{
				TLVHead:         protocol.TLVHead{TLVType: t.Type, LengthField: 2},
				MsgTypeAndFlags: protocol.NewUnicastMsgTypeAndFlags(t.MsgType, t.Flags),
			}
			list[i] = &cancel[i]
		case protocol.TLVAcknowledgeCancelUnicastTransmission:
			ack[i] = protocol.AcknowledgeCancelUnicastTransmissionTLV{
				TLVHead:         protocol.TLVHead{TLVType: t.Type, LengthField: 2},
				MsgTypeAndFlags: protocol.NewUnicastMsgTypeAndFlags(t.MsgType, t.Flags),
			}
			list[i] = &ack[i]
		default:
			panic(fmt.Sprintf("ptp: encodeSignaling: TLV type %v", t.Type))
		}
	}
	enc.TLVs = list[:len(tlvs)]
	n, err := enc.MarshalBinaryTo(b)
	if err != nil {
		panic("ptp: encodeSignaling: " + err.Error()) // b too small: a bug here
	}
	return finish(b, n)
}
