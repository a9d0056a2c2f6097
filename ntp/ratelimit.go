package ntp

import (
	"math/rand/v2"
	"net/netip"
	"sync"
)

// Rate limiting (RateLimit.RequestsPerSecond > 0).
//
// One token bucket per client address, shared by every SO_REUSEPORT worker
// of the server: the table has TableSize entries (rounded up to a power of
// two, at most MaxRateLimitTable) in 64 shards, each under its own small
// mutex, and is allocated once, pointer-free. Within a shard an address maps
// to a set of 4 entries by a keyed hash (the key is random per server, so
// an attacker cannot aim at one set); a new address takes the least
// recently seen entry of its set (eviction is LRU within the set) and
// starts with a full bucket. The table never grows: a flood of distinct
// spoofed addresses can only evict, and evicted addresses are treated as new.
//
// A request within the limit is answered. Over the limit it is dropped,
// except that a fraction Leak of them (chosen at random) is answered anyway
// so that a victim whose address is spoofed keeps some service (chrony's
// `ratelimit leak`), and, with KoD set, one RATE kiss-o'-death per
// Burst/RequestsPerSecond seconds tells a real client to slow down (never
// one per request: a same-size KoD would reflect the whole flood).
//
// Spoofed streams. A stream of requests claiming a victim's address shares
// the victim's bucket. To keep the victim served, each entry remembers one
// trusted flow: the source port that sends within the limit on its own
// (its own bucket, same rate and burst, kept for classification only). The
// last reserve tokens of the address's bucket (a quarter of the burst, at
// least one) are reserved for the trusted flow; other ports are answered
// only while more remain. An off-path spoofer that does not send from the
// victim's own port therefore cannot starve it: the victim keeps its
// answers while the total stays within burst + rate·t. A new port takes
// over the trusted flow when the current one is idle (no request for
// Burst/RequestsPerSecond) or over its own limit. A spoofer that also
// forges the victim's port makes that flow over the limit and is back to
// the leak, as in chrony.

// MaxRateLimitTable bounds RateLimit.TableSize (entries of 64 bytes: 64 MiB at most).
const MaxRateLimitTable = 1 << 20

// DefaultRateLimitLeak is the fraction of over-limit requests answered when
// RateLimit.Leak is zero: chrony's default leak (2⁻²).
const DefaultRateLimitLeak = 0.25

const (
	rlShards = 64
	rlWays   = 4
)

// rate-limit verdicts.
type rlVerdict uint8

const (
	rlAllow rlVerdict = iota
	rlLeak            // over the limit, answered anyway
	rlKoD             // over the limit: send one RATE kiss
	rlDrop
)

type rlEntry struct {
	addr       ipWords
	lastNS     int64
	tokens     float64
	flowLastNS int64
	flowTokens float64
	kodNS      int64
	flowPort   uint16
	used       bool
	hasFlow    bool
}

// rlSeenWords is the size of a shard's seen-ports filter (per generation).
const rlSeenWords = 256 // 16384 bits

type rlShard struct {
	mu      sync.Mutex
	entries []rlEntry
	// seen is a two-generation bitmap of the (address, port) pairs seen
	// recently (between one and two Burst/RequestsPerSecond): a port must
	// have been seen before to take over an entry's trusted flow, so that a
	// spoofer sending each request from a new port cannot.
	seen  [2][rlSeenWords]uint64
	cur   int
	genNS int64
	_     [40]byte // keep shards' locks on separate cache lines
}

// seenBefore reports whether the pair with hash x was seen in this or the
// previous generation, and records it.
func (sh *rlShard) seenBefore(x uint64, nowNS, genLenNS int64) bool {
	if nowNS-sh.genNS > genLenNS || nowNS < sh.genNS {
		sh.cur ^= 1
		sh.seen[sh.cur] = [rlSeenWords]uint64{}
		sh.genNS = nowNS
	}
	w, bit := (x/64)%rlSeenWords, uint64(1)<<(x%64)
	was := (sh.seen[0][w]|sh.seen[1][w])&bit != 0
	sh.seen[sh.cur][w] |= bit
	return was
}

type limiter struct {
	rate, burst, reserve float64
	leak                 float64
	kod                  bool
	kodEveryNS           int64 // burst/rate, at most a day; also the idle time after which a flow loses trust
	key                  addrKey
	setMask              uint64 // sets per shard − 1
	shards               [rlShards]rlShard
	noTrustedFlow        bool           // test knob: chrony's model (leak only)
	rand                 func() float64 // test knob; nil → math/rand/v2
}

func newLimiter(l RateLimit, key addrKey) *limiter {
	if l.RequestsPerSecond <= 0 {
		return nil
	}
	n := rlShards * rlWays
	for n < min(l.TableSize, MaxRateLimitTable) {
		n <<= 1
	}
	sets := n / rlShards / rlWays
	lim := &limiter{
		rate: l.RequestsPerSecond, burst: float64(l.Burst), leak: l.Leak, kod: l.KoD, key: key,
		setMask: uint64(sets - 1),
	}
	if lim.leak == 0 {
		lim.leak = DefaultRateLimitLeak
	}
	if lim.leak < 0 {
		lim.leak = 0 // RateLimit.Leak < 0: answer nothing over the limit
	}
	lim.reserve = max(1, lim.burst/4)
	if lim.reserve >= lim.burst {
		lim.reserve = 0 // burst 1: nothing to reserve
	}
	lim.kodEveryNS = int64(min(lim.burst/lim.rate, 86400) * 1e9) // at most a day: no overflow for tiny rates
	for i := range lim.shards {
		lim.shards[i].entries = make([]rlEntry, sets*rlWays)
	}
	return lim
}

// check charges one request from ap (whose address is a) at nowNS. It
// does not allocate.
func (l *limiter) check(ap netip.AddrPort, a ipWords, nowNS int64) rlVerdict {
	if l == nil {
		return rlAllow
	}
	h := l.key.sumWords(a)
	sh := &l.shards[h&(rlShards-1)]
	set := int((h >> 6) & l.setMask)
	port := ap.Port()

	sh.mu.Lock()
	defer sh.mu.Unlock()
	ways := sh.entries[set*rlWays : set*rlWays+rlWays]
	var e *rlEntry
	for i := range ways {
		if ways[i].used && ways[i].addr == a {
			e = &ways[i]
			break
		}
	}
	if e == nil { // new address: the least recently seen entry of the set
		e = &ways[0]
		for i := range ways {
			if !ways[i].used {
				e = &ways[i]
				break
			}
			if ways[i].lastNS < e.lastNS {
				e = &ways[i]
			}
		}
		*e = rlEntry{addr: a, used: true, lastNS: nowNS, tokens: l.burst, kodNS: nowNS - l.kodEveryNS}
	}
	e.tokens = l.refill(e.tokens, &e.lastNS, nowNS)

	// The trusted flow: this port if it already is, or if the current one
	// is idle or over its own limit and this port was seen before.
	trusted := false
	if !l.noTrustedFlow {
		x := h ^ uint64(port)*0x9e3779b97f4a7c15
		x ^= x >> 29
		seen := sh.seenBefore(x*0xbf58476d1ce4e5b9, nowNS, l.kodEveryNS)
		switch {
		case e.hasFlow && e.flowPort == port:
		case !e.hasFlow || (seen && (nowNS-e.flowLastNS > l.kodEveryNS || e.flowTokens < 1)):
			e.hasFlow, e.flowPort, e.flowLastNS, e.flowTokens = true, port, nowNS, l.burst
		}
		if e.flowPort == port {
			e.flowTokens = l.refill(e.flowTokens, &e.flowLastNS, nowNS)
			trusted = e.flowTokens >= 1
			e.flowTokens = max(0, e.flowTokens-1)
		}
	}
	need := 1.0
	if !trusted && !l.noTrustedFlow {
		need += l.reserve
	}
	if e.tokens >= need {
		e.tokens--
		return rlAllow
	}
	r := l.rand
	if r == nil {
		r = rand.Float64
	}
	if l.leak > 0 && r() < l.leak {
		return rlLeak
	}
	if l.kod && nowNS-e.kodNS >= l.kodEveryNS {
		e.kodNS = nowNS
		return rlKoD
	}
	return rlDrop
}

// refill adds the tokens earned since *last (capped at the burst). A clock
// that went back restarts the interval rather than stalling the bucket.
func (l *limiter) refill(tokens float64, last *int64, nowNS int64) float64 {
	if dt := nowNS - *last; dt > 0 {
		tokens = min(l.burst, tokens+l.rate*float64(dt)/1e9)
	}
	*last = nowNS
	return tokens
}
