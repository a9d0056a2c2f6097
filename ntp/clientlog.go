package ntp

import (
	"net/netip"
	"sort"
	"sync"
	"time"
)

// The client log (chronyc clients): per client address, the requests
// answered, dropped and answered with a kiss-o'-death, and when the last
// one came. Each server socket keeps its own log, written by its worker
// alone: a fixed table of ClientLogSize entries in 4-way sets under a keyed
// hash; a new address takes the least recently seen entry of its set, so a
// flood of spoofed addresses can only evict. It is kept whatever the rate
// limit says and costs one hash per request, no allocation; the worker
// takes the log's lock once per batch (recordBatch), not per request, so
// the only contention is a reader listing the clients. Requests answered
// outside a socket's worker (Handle) go to the server's own log, one lock
// each. Clients merges the logs: a client whose source ports land on
// different sockets (SO_REUSEPORT hashes the whole address and port) is
// listed once.

// ClientLogSize is the number of client addresses each log (one per server
// socket) remembers.
const ClientLogSize = 4096

const (
	clWays = 4
	clSets = ClientLogSize / clWays
)

type clientEntry struct {
	addr                    ipWords
	replies, dropped, kod   uint64 // an entry in use has counted at least one request
	lastMonoNS, firstMonoNS int64
}

func (e *clientEntry) used() bool { return e.replies|e.dropped|e.kod != 0 }

type clientLog struct {
	key addrKey
	mu  sync.Mutex
	e   [ClientLogSize]clientEntry
}

func newClientLog() *clientLog { return &clientLog{key: newAddrKey()} }

// record logs one request.
func (c *clientLog) record(a ipWords, v Verdict, monoNS int64) {
	c.mu.Lock()
	c.add(a, v, monoNS)
	c.mu.Unlock() // not deferred: this runs per datagram, and nothing above can panic
}

// recordBatch logs a batch's requests under one lock.
func (c *clientLog) recordBatch(addrs []ipWords, vs []Verdict, monoNS int64) {
	c.mu.Lock()
	for i, a := range addrs {
		c.add(a, vs[i], monoNS)
	}
	c.mu.Unlock()
}

// add logs one request; c.mu is held.
func (c *clientLog) add(a ipWords, v Verdict, monoNS int64) {
	h := c.key.sumWords(a)
	set := c.e[h%clSets*clWays:][:clWays]
	e := &set[0]
	for i := range set {
		if set[i].addr == a && set[i].used() {
			e = &set[i]
			break
		}
		if set[i].lastMonoNS < e.lastMonoNS {
			e = &set[i]
		}
	}
	if e.addr != a || !e.used() {
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
}

// logs returns the server's own log and each socket's.
func (s *Server) logs() []*clientLog {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []*clientLog{s.clog}
	for _, sk := range s.socks {
		out = append(out, sk.clog)
	}
	return out
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
	byAddr := map[netip.Addr]*ClientInfo{}
	var out []*ClientInfo
	for _, c := range s.logs() {
		c.mu.Lock()
		for _, e := range c.e {
			if !e.used() {
				continue
			}
			last, first := time.Duration(nowMonoNS-e.lastMonoNS), time.Duration(nowMonoNS-e.firstMonoNS)
			a := e.addr.addr()
			ci := byAddr[a]
			if ci == nil {
				ci = &ClientInfo{Addr: a, LastAgo: last, FirstSeenAgo: first}
				byAddr[a] = ci
				out = append(out, ci)
			}
			ci.Replies += e.replies
			ci.Dropped += e.dropped
			ci.KoD += e.kod
			ci.LastAgo, ci.FirstSeenAgo = min(ci.LastAgo, last), max(ci.FirstSeenAgo, first)
		}
		c.mu.Unlock()
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
	res := make([]ClientInfo, len(out))
	for i, ci := range out {
		res[i] = *ci
	}
	return res
}
