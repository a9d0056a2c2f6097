package engine

import (
	"encoding/binary"
	"math"

	"github.com/facebook/time/ntp/protocol"
)

// Header field values (RFC 5905).
const (
	ModeClient = 3
	ModeServer = 4

	LeapNone    = 0
	LeapInsert  = 1
	LeapDelete  = 2
	LeapUnsync  = 3
	StratumKoD  = 0
	StratumNone = 16

	HeaderLen = protocol.PacketSizeBytes // 48
)

// Kiss codes (RFC 5905 §7.4) as reference IDs.
var (
	KissRATE = kiss("RATE")
	KissDENY = kiss("DENY")
	KissRSTR = kiss("RSTR")
)

func kiss(s string) uint32 { return binary.BigEndian.Uint32([]byte(s)) }

// unixToNTPSeconds is the offset between the NTP era-0 and Unix epochs.
const unixToNTPSeconds = 2_208_988_800

// ToNTP converts Unix nanoseconds to a 64-bit NTP timestamp (era 0, valid
// until 2036; later eras wrap and ToUnixNS resolves them near a pivot).
func ToNTP(unixNS int64) uint64 {
	if unixNS >= 0 { // every time after 1970: unsigned division is cheaper
		u := uint64(unixNS)
		return (u/1e9+unixToNTPSeconds)<<32 | (u%1e9<<32)/1e9
	}
	sec, rem := unixNS/1e9, unixNS%1e9 // before 1970: floor, fraction ≥ 0
	if rem < 0 {
		sec, rem = sec-1, rem+1e9
	}
	return uint64(sec+unixToNTPSeconds)<<32 | (uint64(rem)<<32)/1e9
}

// ToUnixNS converts a 64-bit NTP timestamp to Unix nanoseconds, choosing the
// era that puts the result within ±68 years of pivotNS (RFC 5905 §6).
func ToUnixNS(ts uint64, pivotNS int64) int64 {
	sec := int64(ts >> 32)
	frac := ts & 0xffffffff
	ns := (frac*1e9 + 1<<31) >> 32
	unix := (sec-unixToNTPSeconds)*1e9 + int64(ns)
	const era = int64(1<<32) * 1e9
	for unix < pivotNS-era/2 {
		unix += era
	}
	for unix > pivotNS+era/2 {
		unix -= era
	}
	return unix
}

// ShortToNS converts an NTP short format (16.16 s) value to ns.
func ShortToNS(v uint32) int64 { return int64((uint64(v)*1e9 + 1<<15) >> 16) }

// NSToShort converts ns to NTP short format, rounding up (a bound must not
// shrink) and saturating.
func NSToShort(ns int64) uint32 {
	if ns <= 0 {
		return 0
	}
	// Exact, in integers: ceil(ns·2¹⁶/10⁹) = sec·2¹⁶ + ceil(rem·2¹⁶/10⁹).
	// (In float64 the product rounds, and its ceiling could come out one
	// unit short; and the float division was the costliest instruction of
	// a reply.)
	sec, rem := uint64(ns)/1e9, uint64(ns)%1e9
	v := sec<<16 + (rem<<16+1e9-1)/1e9
	if v >= math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(v)
}

// header is the decoded fixed part of an NTP packet, kept as plain values so
// the server's hot path decodes and encodes without allocating.
type Header struct {
	Leap, Version, Mode uint8
	Stratum             uint8
	Poll, Precision     int8
	RootDelay, RootDisp uint32
	RefID               uint32
	RefTime, Origin     uint64
	Receive, Transmit   uint64
}

func DecodeHeader(b []byte) (h Header, ok bool) {
	return h, h.Decode(b)
}

// Decode parses b's first HeaderLen bytes into h; false (h untouched) if b
// is shorter. In place, for a hot path: a Header returned by value is
// written field by field and copied in wide words, which the CPU cannot
// forward from the narrow stores (a stall per word).
func (h *Header) Decode(b []byte) bool {
	if len(b) < HeaderLen {
		return false
	}
	h.Leap, h.Version, h.Mode = b[0]>>6, b[0]>>3&7, b[0]&7
	h.Stratum, h.Poll, h.Precision = b[1], int8(b[2]), int8(b[3])
	h.RootDelay = binary.BigEndian.Uint32(b[4:])
	h.RootDisp = binary.BigEndian.Uint32(b[8:])
	h.RefID = binary.BigEndian.Uint32(b[12:])
	h.RefTime = binary.BigEndian.Uint64(b[16:])
	h.Origin = binary.BigEndian.Uint64(b[24:])
	h.Receive = binary.BigEndian.Uint64(b[32:])
	h.Transmit = binary.BigEndian.Uint64(b[40:])
	return true
}

// PatchTransmit rewrites an encoded reply's transmit timestamp (tx, in NTP
// form) and root dispersion (a later reading of the same estimate: the
// dispersion only grows), leaving every other field as it was.
func PatchTransmit(b []byte, tx uint64, rootDisp uint32) {
	_ = b[HeaderLen-1]
	binary.BigEndian.PutUint32(b[8:], rootDisp)
	binary.BigEndian.PutUint64(b[40:], tx)
}

func (h *Header) Encode(b []byte) {
	_ = b[HeaderLen-1]
	b[0] = h.Leap<<6 | (h.Version&7)<<3 | h.Mode&7
	b[1], b[2], b[3] = h.Stratum, byte(h.Poll), byte(h.Precision)
	binary.BigEndian.PutUint32(b[4:], h.RootDelay)
	binary.BigEndian.PutUint32(b[8:], h.RootDisp)
	binary.BigEndian.PutUint32(b[12:], h.RefID)
	binary.BigEndian.PutUint64(b[16:], h.RefTime)
	binary.BigEndian.PutUint64(b[24:], h.Origin)
	binary.BigEndian.PutUint64(b[32:], h.Receive)
	binary.BigEndian.PutUint64(b[40:], h.Transmit)
}
