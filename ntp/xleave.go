package ntp

import (
	"sync"
	"sync/atomic"
)

// Interleaved mode, server side (chrony's `xleave`; draft-ietf-ntp-
// interleaved-modes). A basic reply carries a transmit timestamp read
// before the reply is queued, so it is early by the rest of the batch and
// the kernel's path to the wire. The kernel's own transmit stamp of that
// reply (SO_TIMESTAMPING TX_SOFTWARE, OPT_ID, OPT_TSONLY, read from
// MSG_ERRQUEUE after the send) is only known after it left; interleaved mode
// sends it in the NEXT reply to the same client.
//
// Fields, for a client request Q_k and our reply R_k:
//
//	basic reply R_k:       origin = Q_k.transmit, receive = rx_k, transmit = clock read before the send (early)
//	interleaved reply R_k: origin = Q_k.receive,  receive = rx_k, transmit = kernel TX stamp of R_{k-1}
//
// A request is in interleaved form when it is version 4, its origin is not
// zero, its receive and transmit fields differ (chrony's test), and its
// origin equals the receive timestamp of our last reply to that client
// address, for which the kernel's TX stamp has arrived. The client tells
// the two replies apart by the origin it gets back (its own transmit field
// or its own receive field: both are nonces it chose) and pairs the
// interleaved transmit stamp with its own t1 and t4 of exchange k-1, and
// rx_{k-1} (which it echoed).
//
// The table keeps, per client address (not port: chrony's client sends
// each request from a new port), the receive timestamp and the real
// transmit stamp of our last reply. It is recorded only for requests that
// carry a non-zero origin or receive field (clients that zero both, like
// SNTP and chrony without xleave, never use it and take no entry). The
// table never grows: TableSize entries in 64 shards of 4-way sets, chosen
// by a keyed hash (random per server), evicting the least recently used
// entry of the set. Lookup, record and the stamp update are one lock of one
// shard each and do not allocate.
//
// What happens when:
//   - a reply is lost: the table holds rx_k, the client still echoes
//     rx_{k-1}: no match, a basic reply (the client takes a basic sample).
//   - a request is lost: the client echoes rx_{k-1} again, which still
//     matches: an interleaved reply with R_{k-1}'s stamp, which the client
//     pairs with its own exchange k-1.
//   - the TX stamp never came (or was out of range, or the send failed): the
//     entry has no stamp: a basic reply.
//   - a table miss (evicted, new client, server restart): a basic reply.
//   - a client restart: its first request has a zero or random origin: a
//     basic reply, and the entry is replaced.
//   - an entry is used once: every reply replaces it, so one stamp is never
//     served twice.
//   - an off-path attacker spoofing the client's address: its request
//     replaces the entry, so the victim's next request gets a basic reply
//     (a downgrade, as a flood evicting entries is in chrony), and the
//     interleaved reply to a spoofed request that guessed the origin goes to
//     the victim, whose nonce check rejects it. The attacker learns nothing
//     (replies go to the spoofed address) and cannot make the victim accept
//     a timestamp: what basic mode allows, plus the downgrade.
//   - a flood from many addresses: it can only evict (the table and the
//     per-packet work are bounded), and evicted clients get basic replies.

// MaxInterleavedTable bounds InterleavedTable (entries of 48 bytes).
const MaxInterleavedTable = 1 << 20

// DefaultInterleavedTable is the table size when none is given.
const DefaultInterleavedTable = 4096

const (
	xlShards = 64
	xlWays   = 4
)

type xlEntry struct {
	addr  ipWords
	rx    uint64 // receive timestamp of our last reply, as sent (NTP format)
	txNS  int64  // kernel TX stamp of that reply on the served clock; 0: none
	useNS int64  // monotonic time of the last request (LRU)
	used  bool
}

type xlShard struct {
	mu      sync.Mutex
	entries []xlEntry
	_       [40]byte // separate cache lines for the shards' locks
}

type xtable struct {
	key          addrKey
	setMask      uint64
	shards       [xlShards]xlShard
	live         atomic.Int64  // entries in use
	evictions    atomic.Uint64 // entries of another address replaced
	anyOrigin    bool          // test knob: serve the stored stamp whatever the origin (negative control)
	noStampCheck bool          // test knob: accept any TX stamp (negative control of the range check)
}

func newXTable(size int, key addrKey) *xtable {
	n := xlShards * xlWays
	for n < min(size, MaxInterleavedTable) {
		n <<= 1
	}
	sets := n / xlShards / xlWays
	t := &xtable{key: key, setMask: uint64(sets - 1)}
	for i := range t.shards {
		t.shards[i].entries = make([]xlEntry, sets*xlWays)
	}
	return t
}

// capacity is the number of entries the table holds.
func (t *xtable) capacity() int { return xlShards * xlWays * int(t.setMask+1) }

func (t *xtable) set(a ipWords) (*xlShard, []xlEntry) {
	h := t.key.sumWords(a)
	sh := &t.shards[h&(xlShards-1)]
	s := int((h >> 6) & t.setMask)
	return sh, sh.entries[s*xlWays : s*xlWays+xlWays]
}

// exchange looks up the request's origin for address a and records the new
// reply's receive timestamp rx (the entry's stamp is cleared until the
// kernel reports it). lookup says whether the request is in interleaved
// form. It returns the previous reply's TX stamp when the request may be
// answered in interleaved mode, and the receive timestamp actually recorded
// (made different from the previous one, so that an old origin never
// matches a newer entry). It does not allocate.
func (t *xtable) exchange(a ipWords, origin uint64, lookup bool, rx uint64, monoNS int64) (txNS int64, ok bool, rec uint64) {
	sh, ways := t.set(a)
	sh.mu.Lock()
	var e *xlEntry
	for i := range ways {
		if ways[i].used && ways[i].addr == a {
			e = &ways[i]
			break
		}
	}
	if e != nil {
		if lookup && e.txNS != 0 && (e.rx == origin || t.anyOrigin) {
			txNS, ok = e.txNS, true
		}
		if rx == e.rx {
			rx++ // 2⁻³² s later: a receive stamp may be late, never early
		}
	} else {
		e = &ways[0]
		for i := range ways {
			if !ways[i].used {
				e = &ways[i]
				break
			}
			if ways[i].useNS < e.useNS {
				e = &ways[i]
			}
		}
		if e.used {
			t.evictions.Add(1)
		} else {
			t.live.Add(1)
		}
	}
	*e = xlEntry{addr: a, rx: rx, useNS: monoNS, used: true}
	sh.mu.Unlock()
	return txNS, ok, rx
}

// setTx stores the kernel TX stamp of the reply to address a whose receive
// timestamp was rx, if that reply is still the last one (a later reply or
// an eviction replaced the entry: the stamp is dropped).
func (t *xtable) setTx(a ipWords, rx uint64, txNS int64) bool {
	sh, ways := t.set(a)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for i := range ways {
		if e := &ways[i]; e.used && e.addr == a && e.rx == rx && e.txNS == 0 {
			e.txNS = txNS
			return true
		}
	}
	return false
}
