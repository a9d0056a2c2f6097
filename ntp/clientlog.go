package ntp

import (
	"hash/maphash"
	"net/netip"
	"sort"
	"sync"
	"time"
)

// The client log (chronyc clients): per client address, the requests
// answered, dropped and answered with a kiss-o'-death, and when the last
// one came. A fixed table of ClientLogSize entries in 64 shards of 4-way
// sets under a keyed hash; a new address takes the least recently seen
// entry of its set, so a flood of spoofed addresses can only evict. It is
// kept whatever the rate limit says and costs one hash and one small lock
// per request, no allocation.

// ClientLogSize is the number of client addresses remembered.
const ClientLogSize = 4096

const (
	clShards = 64
	clWays   = 4
	clSets   = ClientLogSize / clShards / clWays
)

type clientEntry struct {
	addr                    netip.Addr
	replies, dropped, kod   uint64
	lastMonoNS, firstMonoNS int64
}

type clientLog struct {
	seed   maphash.Seed
	shards [clShards]struct {
		mu sync.Mutex
		e  [clSets * clWays]clientEntry
	}
}

func newClientLog() *clientLog { return &clientLog{seed: maphash.MakeSeed()} }

func (c *clientLog) record(a netip.Addr, v Verdict, monoNS int64) {
	a = a.Unmap()
	b := a.As16()
	h := maphash.Bytes(c.seed, b[:])
	sh := &c.shards[h%clShards]
	set := sh.e[(h/clShards)%clSets*clWays:][:clWays]
	sh.mu.Lock()
	e := &set[0]
	for i := range set {
		if set[i].addr == a {
			e = &set[i]
			break
		}
		if set[i].lastMonoNS < e.lastMonoNS {
			e = &set[i]
		}
	}
	if e.addr != a {
		*e = clientEntry{addr: a, firstMonoNS: monoNS}
	}
	e.lastMonoNS = monoNS
	switch v.kind() {
	case Reply:
		e.replies++
	case ReplyKoD:
		e.kod++
	default:
		e.dropped++
	}
	sh.mu.Unlock() // not deferred: this runs per datagram, and nothing above can panic
}

// ClientInfo is one client address in the log.
type ClientInfo struct {
	Addr                  netip.Addr
	Replies, Dropped, KoD uint64
	LastAgo, FirstSeenAgo time.Duration // before nowMonoNS
}

// Clients lists up to limit logged clients (≤ 0: all), busiest first.
func (s *Server) Clients(limit int) []ClientInfo {
	nowMonoNS := monoNS()
	var out []ClientInfo
	for i := range s.clog.shards {
		sh := &s.clog.shards[i]
		sh.mu.Lock()
		for _, e := range sh.e {
			if e.addr.IsValid() {
				out = append(out, ClientInfo{Addr: e.addr, Replies: e.replies, Dropped: e.dropped, KoD: e.kod,
					LastAgo: time.Duration(nowMonoNS - e.lastMonoNS), FirstSeenAgo: time.Duration(nowMonoNS - e.firstMonoNS)})
			}
		}
		sh.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool {
		ti, tj := out[i].Replies+out[i].Dropped+out[i].KoD, out[j].Replies+out[j].Dropped+out[j].KoD
		if ti != tj {
			return ti > tj
		}
		return out[i].Addr.Less(out[j].Addr)
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}
