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

// sum16 hashes an address's 16 bytes, read as two words, with two keyed
// 64×64→128-bit multiplies folded by xor. Unlike maphash over the array,
// the address is never reloaded in one wide load, which the CPU cannot
// forward from the two narrow stores that As16 wrote it with.
func (k addrKey) sum16(b *[16]byte) uint64 {
	hi, lo := bits.Mul64(binary.BigEndian.Uint64(b[:8])^k[0], binary.BigEndian.Uint64(b[8:])^k[1])
	hi, lo = bits.Mul64(hi^lo^k[2], 0x9e3779b97f4a7c15)
	return hi ^ lo
}

// sum hashes a.
func (k addrKey) sum(a netip.Addr) uint64 {
	b := a.As16()
	return k.sum16(&b)
}
