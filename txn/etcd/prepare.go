package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/meridiantime/meridian/txn"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// leaseReuse is how long a granted lease is shared by later prepares; it
// is granted for one second more than asked, so every lock it covers is
// protected at least for the asked duration.
const leaseReuse = 500 * time.Millisecond

func (s *Store) leaseFor(ctx context.Context, d time.Duration) (clientv3.LeaseID, error) {
	ttl := int64(math.Ceil(d.Seconds())) + 1
	s.mu.Lock()
	if s.lease != 0 && s.leaseTTL == ttl && time.Since(s.leaseAt) < leaseReuse {
		id := s.lease
		s.mu.Unlock()
		return id, nil
	}
	s.mu.Unlock()
	at := time.Now()
	g, err := s.cli.Grant(ctx, ttl)
	if err != nil {
		return 0, wrapEtcd(fmt.Sprintf("grant a lease of %ds", ttl), err)
	}
	s.mu.Lock()
	s.lease, s.leaseTTL, s.leaseAt = g.ID, ttl, at
	s.mu.Unlock()
	return g.ID, nil
}

func (s *Store) scanLockCache() (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.qRev, s.qRev > 0
}

func (s *Store) scanLockCacheAll() (int64, []*mvccpb.KeyValue) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.qRev, s.qLocks
}

// setScanLockCache remembers the scan locks as of revision rev (the
// newest revision wins).
func (s *Store) setScanLockCache(rev int64, kvs []*mvccpb.KeyValue) {
	s.mu.Lock()
	if rev > s.qRev {
		s.qRev, s.qLocks = rev, kvs
	}
	s.mu.Unlock()
}

func (s *Store) dropLease(id clientv3.LeaseID) {
	s.mu.Lock()
	if s.lease == id {
		s.lease = 0
	}
	s.mu.Unlock()
}

// prepared is a validated PrepareRequest.
type prepared struct {
	req    txn.PrepareRequest
	checks []string // keys written, then keys only read: no foreign lock, no newer version
	reads  []string // keys only read (read locks)
	scans  []string
	rec    string // the encoded transaction record
}

func (s *Store) validate(req txn.PrepareRequest) (*prepared, error) {
	if err := checkTxn(req.Txn); err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	if err := checkTS("prepare: read", req.ReadTS); err != nil {
		return nil, err
	}
	if req.Lease <= 0 {
		return nil, fmt.Errorf("etcdstore: prepare txn %s: lease %v: must be > 0: %w", req.Txn, req.Lease, txn.ErrInvalid)
	}
	if req.Primary.Shard < 0 {
		return nil, fmt.Errorf("etcdstore: prepare txn %s: primary shard %d: must be ≥ 0: %w", req.Txn, req.Primary.Shard, txn.ErrInvalid)
	}
	if err := s.checkKey("prepare: primary key", req.Primary.Key); err != nil {
		return nil, err
	}
	p := &prepared{req: req}
	seen := make(map[string]bool, len(req.Writes)+len(req.Reads))
	for _, w := range req.Writes {
		if err := s.checkKey("prepare: write key", w.Key); err != nil {
			return nil, err
		}
		if seen[w.Key] {
			return nil, fmt.Errorf("etcdstore: prepare txn %s: write key %q appears twice: %w", req.Txn, w.Key, txn.ErrInvalid)
		}
		seen[w.Key] = true
		p.checks = append(p.checks, w.Key)
	}
	if req.IsPrimary && !seen[req.Primary.Key] {
		return nil, fmt.Errorf("etcdstore: prepare txn %s: primary key %q is not among the shard's writes: %w", req.Txn, req.Primary.Key, txn.ErrInvalid)
	}
	for _, k := range req.Reads {
		if err := s.checkKey("prepare: read key", k); err != nil {
			return nil, err
		}
		if !seen[k] {
			seen[k] = true
			p.checks = append(p.checks, k)
			p.reads = append(p.reads, k)
		}
	}
	sseen := map[string]bool{}
	for _, pre := range req.Scans {
		if strings.Contains(pre, sep) {
			return nil, fmt.Errorf("etcdstore: prepare txn %s: scan prefix %q contains the reserved byte 0x00: %w", req.Txn, pre, txn.ErrInvalid)
		}
		if !sseen[pre] {
			sseen[pre] = true
			p.scans = append(p.scans, pre)
		}
	}
	p.rec = encodeRec(txnRec{IsPrimary: req.IsPrimary, Primary: req.Primary, Writes: req.Writes, PrepareTS: math.MaxInt64, Reads: p.reads, Scans: p.scans})
	return p, s.checkLimits(p)
}

// opBytes is a generous bound on the encoded size of one operation or
// compare beyond its keys and value (field tags, lengths, revisions).
const opBytes = 48

// checkLimits fails with ErrTooLarge when the prepare or the later commit
// would exceed the cluster's operation or request-size limit, before
// anything is sent: a transaction is never partially prepared, and a
// prepared one always fits in its commit.
func (s *Store) checkLimits(p *prepared) error {
	if s.noLimitCheck {
		return nil
	}
	w, r, c, sc := len(p.req.Writes), len(p.reads), len(p.checks), len(p.scans)
	wq := 0 // the compare and read of the scan locks, when anything is written
	if w > 0 {
		wq = 1
	}
	counts := []struct {
		what string
		n    int
	}{
		{"prepare compares", 3 + 2*c + w + 2*sc + wq},
		{"prepare operations", 3 + 2*w + r + sc},
		{"prepare diagnostics", 3 + 2*c + sc + w + wq},
		// The nested Txn that raises the high-water mark needs 1 op of
		// headroom (etcd gives a nested Txn the budget its parent left).
		{"commit operations", 2*w + r + sc + 5},
	}
	for _, x := range counts {
		if x.n > s.opt.MaxTxnOps {
			return fmt.Errorf("etcdstore: prepare txn %s: %d writes, %d reads, %d scans need %d %s in one etcd Txn; the cluster's limit is %d (--max-txn-ops): %w",
				p.req.Txn, w, len(p.req.Reads), sc, x.n, x.what, s.opt.MaxTxnOps, txn.ErrTooLarge)
		}
	}
	pl := len(s.k.p) + 40 // a key prefix plus a 20-byte suffix, rounded up
	prep := 1024 + len(p.rec) + pl + opBytes
	commit := 1024 + 3*(pl+len(p.req.Txn)+opBytes)
	for _, wr := range p.req.Writes {
		prep += 3*(pl+len(wr.Key)) + len(p.req.Primary.Key) + 4*opBytes
		commit += 2*(pl+len(wr.Key)) + len(wr.Value) + 2*opBytes
	}
	for _, k := range p.checks {
		prep += 3*(pl+len(k)) + 2*opBytes
	}
	for _, k := range append(p.reads, p.scans...) {
		lockBytes := 2*(pl+len(k)+len(p.req.Txn)) + len(p.req.Primary.Key) + 2*opBytes
		prep += lockBytes
		commit += lockBytes
	}
	for _, pre := range p.scans {
		prep += 4*(pl+len(pre)) + 2*opBytes
	}
	limit := s.opt.MaxRequestBytes
	if n := max(prep, commit); n > limit {
		return fmt.Errorf("etcdstore: prepare txn %s: its etcd request would take about %d bytes; the cluster's limit is %d (--max-request-bytes): %w",
			p.req.Txn, n, limit, txn.ErrTooLarge)
	}
	return nil
}

// Prepare implements txn.Store: one etcd Txn locks the writes, stores the
// transaction's record and liveness key, and raises the high-water mark
// to the returned prepare timestamp, if and only if no key read or
// written has a foreign lock or a version newer than ReadTS, no scanned
// prefix changed, the transaction has no status yet, and the high-water
// mark is below the new timestamp.
func (s *Store) Prepare(ctx context.Context, req txn.PrepareRequest) (txn.Timestamp, error) {
	p, err := s.validate(req)
	if err != nil {
		return 0, err
	}
	// Reads at the current time advance the high-water mark continually,
	// and concurrent prepares raise it too. A prepare that lost such a
	// race aims a jittered lead above the host clock's now (doubling
	// from 20 µs up to 10 ms with each loss), so that it lands above the
	// reads and prepares that arrive before it. The lead is relative to
	// the clock, never to the mark, so prepare timestamps cannot run away
	// from real time: they stay within 10 ms of it unless the clients'
	// reads are further ahead. A lead only raises the prepare timestamp,
	// which commit wait then covers.
	var lead int64
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("etcdstore: prepare txn %s: %w", req.Txn, err)
		}
		ts, again, err := s.prepareOnce(ctx, p, lead)
		if err != nil && transient(err) && attempt < retryAttempts-1 {
			// Lost with the leader or the member: ask again (a prepare
			// that went through is found by its record).
			if err := sleep(ctx, 20*time.Millisecond<<min(attempt, 5)); err != nil {
				return 0, fmt.Errorf("etcdstore: prepare txn %s: %w", req.Txn, err)
			}
			continue
		}
		if err != nil || !again {
			return ts, err
		}
		lead = min(max(2*lead, int64(20*time.Microsecond)), int64(10*time.Millisecond))
		if attempt >= 64 {
			return 0, fmt.Errorf("etcdstore: prepare txn %s: the shard stayed too busy for 64 attempts: %w", req.Txn, txn.ErrConflict)
		}
		if attempt > 2 {
			if err := sleep(ctx, time.Millisecond<<min(attempt-2, 5)); err != nil {
				return 0, fmt.Errorf("etcdstore: prepare txn %s: %w", req.Txn, err)
			}
		}
	}
}

func (s *Store) prepareOnce(ctx context.Context, p *prepared, lead int64) (ts txn.Timestamp, retry bool, err error) {
	req := p.req
	what := "prepare txn " + string(req.Txn)
	// Scanned prefixes: every version present now must be ≤ ReadTS, and
	// the Txn below fails if any version appears after this revision.
	var scanRev int64
	writes := len(req.Writes) > 0
	qdir := s.k.scanLockDir()
	qRange := func() clientv3.Op { return clientv3.OpGet(qdir, clientv3.WithRange(clientv3.GetPrefixRangeEnd(qdir))) }
	_, qKnown := s.scanLockCache()
	if len(p.scans) > 0 || (writes && !qKnown) {
		var ops []clientv3.Op
		for _, pre := range p.scans {
			dp, lp := s.k.dataDir()+pre, s.k.lockDir()+pre
			ops = append(ops, clientv3.OpGet(dp, clientv3.WithRange(clientv3.GetPrefixRangeEnd(dp)), clientv3.WithKeysOnly()),
				clientv3.OpGet(lp, clientv3.WithRange(clientv3.GetPrefixRangeEnd(lp)), clientv3.WithLimit(1)))
		}
		if writes {
			ops = append(ops, qRange())
		}
		r, err := s.cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return 0, false, wrapEtcd(what, err)
		}
		scanRev = r.Header.Revision
		rs := ranges(r.Responses)
		if writes {
			s.setScanLockCache(scanRev, rs[len(rs)-1])
		}
		for i, pre := range p.scans {
			for _, kv := range rs[2*i] {
				key, vts, ok := parseVersion(strings.TrimPrefix(string(kv.Key), s.k.dataDir()))
				if ok && vts > req.ReadTS {
					return 0, false, fmt.Errorf("etcdstore: %s: scanned prefix %q: key %q committed at %d > read ts %d: %w", what, pre, key, vts, req.ReadTS, txn.ErrConflict)
				}
			}
			if len(rs[2*i+1]) > 0 {
				return s.foreignLock(ctx, what, rs[2*i+1][0])
			}
		}
	}
	// Scan locks of other transactions covering a key written here.
	var qRev int64
	if writes {
		var qLocks []*mvccpb.KeyValue
		qRev, qLocks = s.scanLockCacheAll()
		for _, kv := range qLocks {
			rest := strings.TrimPrefix(string(kv.Key), qdir)
			i := strings.LastIndex(rest, sep)
			if i < 0 || txn.TxnID(rest[i+1:]) == req.Txn {
				continue
			}
			for _, w := range req.Writes {
				if strings.HasPrefix(w.Key, rest[:i]) {
					ts, retry, err := s.foreignLock(ctx, what, kv)
					if retry { // resolved: the cached list is stale
						s.mu.Lock()
						s.qRev, s.qLocks = 0, nil
						s.mu.Unlock()
					}
					return ts, retry, err
				}
			}
		}
	}
	lease, err := s.leaseFor(ctx, req.Lease)
	if err != nil {
		return 0, false, err
	}
	pts := max(s.hint()+1, req.ReadTS+1)
	if lead > 0 {
		pts = max(pts, time.Now().UnixNano()+lead/2+rand.Int64N(lead/2+1))
	}
	hw, sk, rk := s.k.hw(), s.k.status(req.Txn), s.k.rec(req.Txn)
	cmps := []clientv3.Cmp{
		clientv3.Compare(clientv3.Value(hw), "<", pad(pts)),
		clientv3.Compare(clientv3.CreateRevision(sk), "=", 0),
		clientv3.Compare(clientv3.CreateRevision(rk), "=", 0),
	}
	elseOps := []clientv3.Op{clientv3.OpGet(hw), clientv3.OpGet(sk), clientv3.OpGet(rk)}
	for _, k := range p.checks {
		newer := clientv3.Compare(clientv3.CreateRevision(s.k.data(k)), "=", 0).WithRange(s.k.version(k, req.ReadTS))
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(s.k.lock(k)), "=", 0), newer)
		elseOps = append(elseOps, clientv3.OpGet(s.k.lock(k)),
			clientv3.OpGet(s.k.data(k), clientv3.WithRange(s.k.version(k, req.ReadTS)), clientv3.WithKeysOnly(), clientv3.WithLimit(1)))
	}
	for _, pre := range p.scans {
		dp, lp := s.k.dataDir()+pre, s.k.lockDir()+pre
		cmps = append(cmps,
			clientv3.Compare(clientv3.CreateRevision(lp), "=", 0).WithRange(clientv3.GetPrefixRangeEnd(lp)),
			clientv3.Compare(clientv3.ModRevision(dp), "<", scanRev+1).WithRange(clientv3.GetPrefixRangeEnd(dp)))
		elseOps = append(elseOps, clientv3.OpGet(lp, clientv3.WithRange(clientv3.GetPrefixRangeEnd(lp)), clientv3.WithLimit(1)))
	}
	// Written keys: no other transaction's read lock, and no scan lock
	// created since the one this client knows of.
	for _, w := range req.Writes {
		from, to := s.k.readLocks(w.Key)
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(from), "=", 0).WithRange(to))
		elseOps = append(elseOps, clientv3.OpGet(from, clientv3.WithRange(to), clientv3.WithLimit(1)))
	}
	if writes {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(qdir), "<", qRev+1).WithRange(clientv3.GetPrefixRangeEnd(qdir)))
		elseOps = append(elseOps, qRange())
	}
	lock := encodeLock(lockRec{Txn: req.Txn, Primary: req.Primary, PrepareTS: pts})
	thenOps := []clientv3.Op{clientv3.OpPut(hw, pad(pts))}
	for _, w := range req.Writes {
		thenOps = append(thenOps, clientv3.OpPut(s.k.lock(w.Key), lock), clientv3.OpPut(s.k.index(w.Key), ""))
	}
	if !s.noReadLocks {
		for _, k := range p.reads {
			thenOps = append(thenOps, clientv3.OpPut(s.k.readLock(k, req.Txn), lock))
		}
		for _, pre := range p.scans {
			thenOps = append(thenOps, clientv3.OpPut(s.k.scanLock(pre, req.Txn), lock))
		}
	}
	rec := encodeRec(txnRec{IsPrimary: req.IsPrimary, Primary: req.Primary, Writes: req.Writes, PrepareTS: pts, Reads: p.reads, Scans: p.scans})
	thenOps = append(thenOps, clientv3.OpPut(rk, rec), clientv3.OpPut(s.k.alive(req.Txn), "", clientv3.WithLease(lease)))

	r, err := s.cli.Txn(ctx).If(cmps...).Then(thenOps...).Else(elseOps...).Commit()
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		s.dropLease(lease) // expired between grant and use: take a new one
		return 0, true, nil
	}
	if err != nil {
		return 0, false, wrapEtcd(what, err)
	}
	if r.Succeeded {
		s.seenHW(pts)
		return pts, false, nil
	}
	rs := ranges(r.Responses)
	s.seenHW(parseHW(rs[0]))
	if len(rs[1]) > 0 {
		st, _ := decodeStatus(rs[1][0].Value)
		if st.State == txn.Committed {
			return 0, false, fmt.Errorf("etcdstore: %s: already committed at %d: %w", what, st.TS, txn.ErrInvalid)
		}
		return 0, false, fmt.Errorf("etcdstore: %s: %w", what, txn.ErrAborted)
	}
	if len(rs[2]) > 0 { // a retry of a prepare that went through
		old, err := decodeRec(rs[2][0].Value)
		if err != nil {
			return 0, false, fmt.Errorf("etcdstore: %s: record: %w", what, err)
		}
		return old.PrepareTS, false, nil
	}
	for i, k := range p.checks {
		if l := rs[3+2*i]; len(l) > 0 {
			return s.foreignLock(ctx, what, l[0])
		}
		if v := rs[4+2*i]; len(v) > 0 {
			_, vts, _ := parseVersion(strings.TrimPrefix(string(v[0].Key), s.k.dataDir()))
			return 0, false, fmt.Errorf("etcdstore: %s: key %q committed at %d > read ts %d: %w", what, k, vts, req.ReadTS, txn.ErrConflict)
		}
	}
	base := 3 + 2*len(p.checks)
	for i := range p.scans {
		if l := rs[base+i]; len(l) > 0 {
			return s.foreignLock(ctx, what, l[0])
		}
	}
	base += len(p.scans)
	for i := range req.Writes {
		if l := rs[base+i]; len(l) > 0 {
			return s.foreignLock(ctx, what, l[0])
		}
	}
	if writes {
		s.setScanLockCache(r.Header.Revision, rs[len(rs)-1])
	}
	// Only the high-water mark (or a scanned range) moved: try again.
	return 0, true, nil
}

// foreignLock handles another transaction's lock met by a prepare: if the
// Resolver settles it (its primary committed or aborted, or its lease
// ended) the prepare is retried, else it fails with ErrConflict.
func (s *Store) foreignLock(ctx context.Context, what string, kv *mvccpb.KeyValue) (txn.Timestamp, bool, error) {
	l, err := decodeLock(kv.Value)
	if err != nil {
		return 0, false, fmt.Errorf("etcdstore: %s: lock %q: %w", what, kv.Key, err)
	}
	alive, err := s.aliveSet(ctx, []lockRec{l})
	if err != nil {
		return 0, false, wrapEtcd(what, err)
	}
	gone, err := s.resolve(ctx, l, !alive[l.Txn])
	if err != nil {
		return 0, false, fmt.Errorf("etcdstore: %s: %w", what, err)
	}
	if gone {
		return 0, true, nil
	}
	key := strings.TrimPrefix(string(kv.Key), s.k.lockDir())
	return 0, false, fmt.Errorf("etcdstore: %s: key %q is locked by txn %s (prepare ts %d): %w", what, key, l.Txn, l.PrepareTS, txn.ErrConflict)
}
