package ntp

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"net/netip"
)

// addrKey is the random key of the keyed hash that places client addresses
// in the server's set-associative tables (the client log, the rate
// limiter, the interleaved table): an attacker who does not know it cannot
// choose addresses that fall into one set.
type addrKey [3]uint64

func newAddrKey() addrKey { return addrKey{rand.Uint64(), rand.Uint64(), rand.Uint64()} }

// ipWords is a client address as two big-endian words of its 16-byte form
// (an IPv4 address in its v4-mapped form, as netip's As16 gives it), read
// by the batched server straight from the kernel's socket address: keyed
// and compared as two registers, never stored and reloaded as an array, it
// hashes without the store-forwarding stall that hashing As16's result had
// (a wide reload of two narrow stores: a third of the client log's time).
type ipWords struct{ hi, lo uint64 }

// v4Mapped is the lo word's top half of every IPv4 address (::ffff:0:0/96).
const v4Mapped = 0xffff << 32

// wordsOf converts a to words; a v4-mapped IPv6 address gives its IPv4
// address's words (as Unmap would), and a zone is dropped.
func wordsOf(a netip.Addr) ipWords {
	if a.Is4() {
		b := a.As4()
		return ipWords{lo: v4Mapped | uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return ipWords{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// addr is w as a netip.Addr (IPv4 for the v4-mapped form).
func (w ipWords) addr() netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], w.hi)
	binary.BigEndian.PutUint64(b[8:], w.lo)
	return netip.AddrFrom16(b).Unmap()
}

// sumWords hashes an address's two words with two keyed 64×64→128-bit
// multiplies folded by xor.
func (k addrKey) sumWords(w ipWords) uint64 {
	hi, lo := bits.Mul64(w.hi^k[0], w.lo^k[1])
	hi, lo = bits.Mul64(hi^lo^k[2], 0x9e3779b97f4a7c15)
	return hi ^ lo
}

// sum hashes a (as sumWords of wordsOf(a)).
func (k addrKey) sum(a netip.Addr) uint64 { return k.sumWords(wordsOf(a)) }
