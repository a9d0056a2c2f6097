// Package etcdstore is a txn.Store over one etcd cluster, in Percolator's
// layout: committed versions keyed by commit timestamp, a lock per written
// key naming the transaction, its primary and its prepare timestamp, a
// record of the transaction's writes on each participant shard, a liveness
// key attached to an etcd lease, and a status record on the primary.
// Prepare and commit are each one etcd Txn whose compares make them
// atomic; a high-water key advanced in the same Txn as every read, prepare
// and commit makes the timestamp rules of txn.Store hold across clients
// that share nothing but the cluster.
package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meridiantime/meridian/txn"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Defaults of an etcd server (its flags --max-txn-ops and
// --max-request-bytes).
const (
	DefaultMaxTxnOps       = 128
	DefaultMaxRequestBytes = 1536 * 1024
	DefaultMaxKeyBytes     = 4096
)

// Options configure a Store.
type Options struct {
	// Prefix is put before every key the store writes, so that several
	// stores (shards) may share a cluster in tests. Empty: none.
	Prefix string
	// MaxTxnOps and MaxRequestBytes must match the cluster's
	// --max-txn-ops and --max-request-bytes (0: etcd's defaults, 128 and
	// 1.5 MiB). Transactions that would exceed them fail with
	// txn.ErrTooLarge before anything is sent.
	MaxTxnOps       int
	MaxRequestBytes int
	// MaxKeyBytes bounds a user key (0: 4096).
	MaxKeyBytes int
}

// Store is one shard on one etcd cluster. It is safe for concurrent use.
type Store struct {
	cli     *clientv3.Client
	ownsCli bool
	k       keys
	opt     Options

	mu       sync.Mutex
	resolver txn.Resolver
	hwHint   int64 // the highest high-water mark this client has seen
	lease    clientv3.LeaseID
	leaseTTL int64
	leaseAt  time.Time
	// The scan locks as of revision qRev (0: not read yet): a writer
	// checks its keys against them and its Txn fails if one was created
	// since.
	qRev   int64
	qLocks []*mvccpb.KeyValue

	// Test-only knobs, each breaking one rule (negative controls).
	noReadFence   bool // reads do not advance the high-water mark
	noReadWait    bool // reads ignore pending locks
	noCommitFence bool // commits do not advance the high-water mark
	noLimitCheck  bool // oversized transactions are sent to etcd
	noReadLocks   bool // prepares take no read locks on keys read or prefixes scanned
}

var _ txn.Store = (*Store)(nil)

// New returns a Store using cli (not closed by Close).
func New(ctx context.Context, cli *clientv3.Client, opt Options) (*Store, error) {
	if opt.MaxTxnOps == 0 {
		opt.MaxTxnOps = DefaultMaxTxnOps
	}
	if opt.MaxRequestBytes == 0 {
		opt.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if opt.MaxKeyBytes == 0 {
		opt.MaxKeyBytes = DefaultMaxKeyBytes
	}
	if opt.MaxTxnOps < 8 || opt.MaxRequestBytes < 4096 || opt.MaxKeyBytes < 1 {
		return nil, fmt.Errorf("etcdstore: options: max_txn_ops must be ≥ 8 (got %d), max_request_bytes ≥ 4096 (got %d), max_key_bytes ≥ 1 (got %d): %w",
			opt.MaxTxnOps, opt.MaxRequestBytes, opt.MaxKeyBytes, txn.ErrInvalid)
	}
	if strings.Contains(opt.Prefix, sep) {
		return nil, fmt.Errorf("etcdstore: options: prefix %q contains the reserved byte 0x00: %w", opt.Prefix, txn.ErrInvalid)
	}
	s := &Store{cli: cli, k: keys{p: opt.Prefix}, opt: opt}
	// The high-water key must exist: etcd fails every value compare on a
	// missing key.
	hw := s.k.hw()
	if _, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(hw), "=", 0)).
		Then(clientv3.OpPut(hw, pad(0))).Commit(); err != nil {
		return nil, fmt.Errorf("etcdstore: initialise %q: %w", hw, err)
	}
	return s, nil
}

// Open connects to the cluster at endpoints and returns a Store that
// closes its client on Close.
func Open(ctx context.Context, endpoints []string, opt Options) (*Store, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop(), Context: context.Background()})
	if err != nil {
		return nil, fmt.Errorf("etcdstore: connect to %v: %w", endpoints, err)
	}
	s, err := New(ctx, cli, opt)
	if err != nil {
		_ = cli.Close()
		return nil, err
	}
	s.ownsCli = true
	return s, nil
}

// SetResolver implements txn.Store.
func (s *Store) SetResolver(r txn.Resolver) {
	s.mu.Lock()
	s.resolver = r
	s.mu.Unlock()
}

// Close implements txn.Store.
func (s *Store) Close() error {
	if s.ownsCli {
		return s.cli.Close()
	}
	return nil
}

// ---- validation -------------------------------------------------------

var txnIDRe = regexp.MustCompile(`^[0-9a-f]{32}$`)

func checkTxn(id txn.TxnID) error {
	if !txnIDRe.MatchString(string(id)) {
		return fmt.Errorf("etcdstore: txn id %q: must be 32 lower-case hex digits: %w", id, txn.ErrInvalid)
	}
	return nil
}

func (s *Store) checkKey(what, key string) error {
	if key == "" {
		return fmt.Errorf("etcdstore: %s: empty key: %w", what, txn.ErrInvalid)
	}
	if strings.Contains(key, sep) {
		return fmt.Errorf("etcdstore: %s %q: contains the reserved byte 0x00: %w", what, key, txn.ErrInvalid)
	}
	if len(key) > s.opt.MaxKeyBytes {
		return fmt.Errorf("etcdstore: %s %.32q…: %d bytes, the limit is %d (max_key_bytes): %w", what, key, len(key), s.opt.MaxKeyBytes, txn.ErrTooLarge)
	}
	return nil
}

func checkTS(what string, ts txn.Timestamp) error {
	if ts <= 0 || ts == math.MaxInt64 {
		return fmt.Errorf("etcdstore: %s timestamp %d: must be in (0, MaxInt64): %w", what, ts, txn.ErrInvalid)
	}
	return nil
}

func wrapEtcd(what string, err error) error {
	if errors.Is(err, rpctypes.ErrTooManyOps) || errors.Is(err, rpctypes.ErrRequestTooLarge) {
		return fmt.Errorf("etcdstore: %s: the cluster refused it: %v: %w", what, err, txn.ErrTooLarge)
	}
	return fmt.Errorf("etcdstore: %s: %w", what, err)
}

// ---- high-water mark ----------------------------------------------------

func (s *Store) seenHW(v int64) {
	s.mu.Lock()
	if v > s.hwHint {
		s.hwHint = v
	}
	s.mu.Unlock()
}

func (s *Store) hint() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hwHint
}

func parseHW(kvs []*mvccpb.KeyValue) int64 {
	if len(kvs) == 0 {
		return 0
	}
	var v int64
	for _, c := range kvs[0].Value {
		v = v*10 + int64(c-'0')
	}
	return v
}

// fenced runs range ops in one etcd Txn that also raises the high-water
// mark to ts (the read fence), and returns the ranges' key/values.
func (s *Store) fenced(ctx context.Context, ts txn.Timestamp, ops ...clientv3.Op) ([][]*mvccpb.KeyValue, error) {
	hw := s.k.hw()
	var resp *clientv3.TxnResponse
	var err error
	if s.noReadFence {
		resp, err = s.cli.Txn(ctx).Then(ops...).Commit()
	} else {
		then := append([]clientv3.Op{clientv3.OpPut(hw, pad(ts))}, ops...)
		resp, err = s.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(hw), "<", pad(ts))).Then(then...).Else(ops...).Commit()
	}
	if err != nil {
		return nil, err
	}
	rs := resp.Responses
	if resp.Succeeded && !s.noReadFence {
		rs = rs[1:]
	}
	return ranges(rs), nil
}

func ranges(rs []*pb.ResponseOp) [][]*mvccpb.KeyValue {
	out := make([][]*mvccpb.KeyValue, len(rs))
	for i, r := range rs {
		if rr := r.GetResponseRange(); rr != nil {
			out[i] = rr.Kvs
		}
	}
	return out
}

// ---- reads --------------------------------------------------------------

// Get implements txn.Store.
func (s *Store) Get(ctx context.Context, key string, ts txn.Timestamp) (v []byte, found bool, err error) {
	err = retry(ctx, func() error {
		v, found, err = s.get(ctx, key, ts)
		return err
	})
	return v, found, err
}

func (s *Store) get(ctx context.Context, key string, ts txn.Timestamp) ([]byte, bool, error) {
	if err := s.checkKey("get: key", key); err != nil {
		return nil, false, err
	}
	if err := checkTS("get: read", ts); err != nil {
		return nil, false, err
	}
	// The newest version ≤ ts is the first key at or after version(key, ts).
	dataOp := clientv3.OpGet(s.k.version(key, ts), clientv3.WithRange(s.k.p+"d/"+key+"\x01"), clientv3.WithLimit(1))
	lockOp := clientv3.OpGet(s.k.lock(key))
	var data []*mvccpb.KeyValue
	err := s.readLoop(ctx, ts, func() ([]*mvccpb.KeyValue, error) {
		r, err := s.fenced(ctx, ts, dataOp, lockOp)
		if err != nil {
			return nil, err
		}
		data = r[0]
		return r[1], nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("etcdstore: get %q at %d: %w", key, ts, err)
	}
	if len(data) == 0 {
		return nil, false, nil
	}
	v, found := decodeVersion(data[0].Value)
	return v, found, nil
}

// Scan implements txn.Store.
func (s *Store) Scan(ctx context.Context, prefix string, limit int, ts txn.Timestamp) (kvs []txn.KV, err error) {
	err = retry(ctx, func() error {
		kvs, err = s.scan(ctx, prefix, limit, ts)
		return err
	})
	return kvs, err
}

func (s *Store) scan(ctx context.Context, prefix string, limit int, ts txn.Timestamp) ([]txn.KV, error) {
	if strings.Contains(prefix, sep) {
		return nil, fmt.Errorf("etcdstore: scan: prefix %q contains the reserved byte 0x00: %w", prefix, txn.ErrInvalid)
	}
	if len(prefix) > s.opt.MaxKeyBytes {
		return nil, fmt.Errorf("etcdstore: scan: prefix of %d bytes, the limit is %d (max_key_bytes): %w", len(prefix), s.opt.MaxKeyBytes, txn.ErrTooLarge)
	}
	if err := checkTS("scan: read", ts); err != nil {
		return nil, err
	}
	// Round 1, fenced: the keys ever written under the prefix (the key
	// index, one entry per key) and the locks. Once no lock ≤ ts is
	// pending here, nothing at or below ts can change any more (the fence
	// keeps every later prepare above ts), so round 2 may read the
	// versions in as many requests as it needs.
	ip, lp := s.k.indexDir()+prefix, s.k.lockDir()+prefix
	indexOp := clientv3.OpGet(ip, clientv3.WithRange(clientv3.GetPrefixRangeEnd(ip)), clientv3.WithKeysOnly())
	lockOp := clientv3.OpGet(lp, clientv3.WithRange(clientv3.GetPrefixRangeEnd(lp)))
	var index []*mvccpb.KeyValue
	err := s.readLoop(ctx, ts, func() ([]*mvccpb.KeyValue, error) {
		r, err := s.fenced(ctx, ts, indexOp, lockOp)
		if err != nil {
			return nil, err
		}
		index = r[0]
		return r[1], nil
	})
	if err != nil {
		return nil, fmt.Errorf("etcdstore: scan %q at %d: %w", prefix, ts, err)
	}
	// Round 2: each key's newest version ≤ ts, a batch of keys per Txn.
	var out []txn.KV
	batch := max(1, s.opt.MaxTxnOps)
	for lo := 0; lo < len(index); lo += batch {
		part := index[lo:min(lo+batch, len(index))]
		ops := make([]clientv3.Op, len(part))
		for i, kv := range part {
			key := strings.TrimPrefix(string(kv.Key), s.k.indexDir())
			ops[i] = clientv3.OpGet(s.k.version(key, ts), clientv3.WithRange(s.k.p+"d/"+key+"\x01"), clientv3.WithLimit(1))
		}
		r, err := s.cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, fmt.Errorf("etcdstore: scan %q at %d: %w", prefix, ts, err)
		}
		for i, vs := range ranges(r.Responses) {
			if len(vs) == 0 {
				continue // prepared once, never committed at or below ts
			}
			if v, found := decodeVersion(vs[0].Value); found {
				out = append(out, txn.KV{Key: strings.TrimPrefix(string(part[i].Key), s.k.indexDir()), Value: v})
				if limit > 0 && len(out) == limit {
					return out, nil
				}
			}
		}
	}
	return out, nil
}

// readLoop runs read until no lock with prepare timestamp ≤ ts is pending:
// it waits (polling with backoff, within ctx) for live locks and resolves
// expired ones, and ones that stay, through the Resolver.
func (s *Store) readLoop(ctx context.Context, ts txn.Timestamp, read func() ([]*mvccpb.KeyValue, error)) error {
	start := time.Now()
	wait := time.Millisecond
	for {
		lockKVs, err := read()
		if err != nil {
			return err
		}
		if s.noReadWait {
			return nil
		}
		var block []lockRec
		for _, kv := range lockKVs {
			l, err := decodeLock(kv.Value)
			if err != nil {
				return fmt.Errorf("lock %q: %w", kv.Key, err)
			}
			if l.PrepareTS <= ts {
				block = append(block, l)
			}
		}
		if len(block) == 0 {
			return nil
		}
		alive, err := s.aliveSet(ctx, block)
		if err != nil {
			return err
		}
		progressed := false
		for _, l := range block {
			expired := !alive[l.Txn]
			if !expired && time.Since(start) < 20*time.Millisecond {
				continue
			}
			ok, err := s.resolve(ctx, l, expired)
			if err != nil {
				return err
			}
			progressed = progressed || ok
		}
		if progressed {
			continue
		}
		if err := sleep(ctx, wait); err != nil {
			return fmt.Errorf("waiting for the lock of txn %s (prepare ts %d ≤ read ts %d): %w", block[0].Txn, block[0].PrepareTS, ts, err)
		}
		wait = min(2*wait, 32*time.Millisecond)
	}
}

func sleep(ctx context.Context, d time.Duration) error { return txn.SleepJittered(ctx, d) }

// aliveSet reports which of the locks' transactions still hold their
// lease (their liveness key exists).
func (s *Store) aliveSet(ctx context.Context, ls []lockRec) (map[txn.TxnID]bool, error) {
	var ids []txn.TxnID
	for _, l := range ls {
		if !slices.Contains(ids, l.Txn) {
			ids = append(ids, l.Txn)
		}
	}
	ids = ids[:min(len(ids), s.opt.MaxTxnOps)]
	ops := make([]clientv3.Op, len(ids))
	for i, id := range ids {
		ops[i] = clientv3.OpGet(s.k.alive(id), clientv3.WithKeysOnly())
	}
	resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return nil, err
	}
	out := make(map[txn.TxnID]bool, len(ids))
	for i, r := range ranges(resp.Responses) {
		out[ids[i]] = len(r) > 0
	}
	return out, nil
}

// resolve asks the Resolver for the fate of a foreign lock's transaction
// and rolls this shard's part of it forward or back. It reports whether
// the lock is gone.
func (s *Store) resolve(ctx context.Context, l lockRec, expired bool) (bool, error) {
	s.mu.Lock()
	r := s.resolver
	s.mu.Unlock()
	if r == nil {
		return false, nil
	}
	st, err := r.Resolve(ctx, txn.LockInfo{Txn: l.Txn, Primary: l.Primary, PrepareTS: l.PrepareTS, Expired: expired})
	if err != nil {
		return false, fmt.Errorf("resolve txn %s: %w", l.Txn, err)
	}
	switch st.State {
	case txn.Committed:
		if err := s.commit(ctx, l.Txn, st.TS); err != nil && !errors.Is(err, txn.ErrAborted) {
			return false, fmt.Errorf("roll txn %s forward at %d: %w", l.Txn, st.TS, err)
		}
		return true, nil
	case txn.Aborted:
		if err := s.abort(ctx, l.Txn); err != nil {
			return false, fmt.Errorf("roll txn %s back: %w", l.Txn, err)
		}
		return true, nil
	}
	return false, nil
}

// ---- status ---------------------------------------------------------------

// Status implements txn.Store.
func (s *Store) Status(ctx context.Context, id txn.TxnID) (txn.Status, error) {
	if err := checkTxn(id); err != nil {
		return txn.Status{}, err
	}
	var r *clientv3.GetResponse
	err := retry(ctx, func() (err error) {
		r, err = s.cli.Get(ctx, s.k.status(id))
		return err
	})
	if err != nil {
		return txn.Status{}, wrapEtcd("status of txn "+string(id), err)
	}
	if len(r.Kvs) == 0 {
		return txn.Status{State: txn.Pending}, nil
	}
	return decodeStatus(r.Kvs[0].Value)
}

// AbortIfPending implements txn.Store: one etcd Txn writes Aborted only if
// no status record exists, and returns the record as it then stands.
func (s *Store) AbortIfPending(ctx context.Context, id txn.TxnID) (txn.Status, error) {
	if err := checkTxn(id); err != nil {
		return txn.Status{}, err
	}
	sk := s.k.status(id)
	var r *clientv3.TxnResponse
	err := retry(ctx, func() (err error) { // idempotent: the put is conditional
		r, err = s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(sk), "=", 0)).
			Then(clientv3.OpPut(sk, encodeStatus(txn.Status{State: txn.Aborted})), clientv3.OpGet(sk)).
			Else(clientv3.OpGet(sk)).Commit()
		return err
	})
	if err != nil {
		return txn.Status{}, wrapEtcd("abort-if-pending txn "+string(id), err)
	}
	rs := ranges(r.Responses)
	got := rs[len(rs)-1]
	if len(got) == 0 {
		return txn.Status{}, fmt.Errorf("etcdstore: abort-if-pending txn %s: status record missing after the write", id)
	}
	return decodeStatus(got[0].Value)
}

// ---- commit and abort -------------------------------------------------------

// Commit implements txn.Store. It is idempotent: committing again at the
// same timestamp returns nil.
func (s *Store) Commit(ctx context.Context, id txn.TxnID, ts txn.Timestamp) error {
	if err := checkTxn(id); err != nil {
		return err
	}
	if err := checkTS("commit", ts); err != nil {
		return err
	}
	return retry(ctx, func() error { return s.commit(ctx, id, ts) })
}

func (s *Store) loadRec(ctx context.Context, id txn.TxnID) (*mvccpb.KeyValue, *txn.Status, error) {
	r, err := s.cli.Txn(ctx).Then(clientv3.OpGet(s.k.rec(id)), clientv3.OpGet(s.k.status(id))).Commit()
	if err != nil {
		return nil, nil, err
	}
	rs := ranges(r.Responses)
	var rec *mvccpb.KeyValue
	if len(rs[0]) > 0 {
		rec = rs[0][0]
	}
	if len(rs[1]) == 0 {
		return rec, nil, nil
	}
	st, err := decodeStatus(rs[1][0].Value)
	if err != nil {
		return nil, nil, err
	}
	return rec, &st, nil
}

func (s *Store) commit(ctx context.Context, id txn.TxnID, ts txn.Timestamp) error {
	for attempt := 0; ; attempt++ {
		recKV, st, err := s.loadRec(ctx, id)
		if err != nil {
			return wrapEtcd(fmt.Sprintf("commit txn %s at %d", id, ts), err)
		}
		if st != nil {
			switch {
			case st.State == txn.Committed && st.TS == ts:
				return nil
			case st.State == txn.Committed:
				return fmt.Errorf("etcdstore: commit txn %s at %d: already committed at %d: %w", id, ts, st.TS, txn.ErrInvalid)
			default:
				if recKV != nil {
					if err := s.abort(ctx, id); err != nil {
						return err
					}
				}
				return fmt.Errorf("etcdstore: commit txn %s: %w", id, txn.ErrAborted)
			}
		}
		if recKV == nil {
			return fmt.Errorf("etcdstore: commit txn %s: not prepared on this shard: %w", id, txn.ErrAborted)
		}
		rec, err := decodeRec(recKV.Value)
		if err != nil {
			return fmt.Errorf("etcdstore: commit txn %s: record: %w", id, err)
		}
		if ts < rec.PrepareTS {
			return fmt.Errorf("etcdstore: commit txn %s at %d: below its prepare timestamp %d: %w", id, ts, rec.PrepareTS, txn.ErrInvalid)
		}
		ops := make([]clientv3.Op, 0, 2*len(rec.Writes)+len(rec.Reads)+len(rec.Scans)+5)
		for _, w := range rec.Writes {
			ops = append(ops, clientv3.OpPut(s.k.version(w.Key, ts), encodeVersion(w)), clientv3.OpDelete(s.k.lock(w.Key)))
		}
		ops = append(ops, s.readLockDeletes(id, rec)...)
		ops = append(ops, clientv3.OpDelete(s.k.rec(id)), clientv3.OpDelete(s.k.alive(id)),
			clientv3.OpPut(s.k.status(id), encodeStatus(txn.Status{State: txn.Committed, TS: ts})))
		if !s.noCommitFence {
			hw := s.k.hw()
			ops = append(ops, clientv3.OpTxn(
				[]clientv3.Cmp{clientv3.Compare(clientv3.Value(hw), "<", pad(ts))},
				[]clientv3.Op{clientv3.OpPut(hw, pad(ts))}, nil))
		}
		r, err := s.cli.Txn(ctx).If(
			clientv3.Compare(clientv3.ModRevision(s.k.rec(id)), "=", recKV.ModRevision),
			clientv3.Compare(clientv3.CreateRevision(s.k.status(id)), "=", 0),
		).Then(ops...).Commit()
		if err != nil {
			return wrapEtcd(fmt.Sprintf("commit txn %s at %d", id, ts), err)
		}
		if r.Succeeded {
			s.seenHW(ts)
			return nil
		}
		if attempt >= 8 {
			return fmt.Errorf("etcdstore: commit txn %s at %d: its record keeps changing", id, ts)
		}
	}
}

// Abort implements txn.Store: it releases the transaction's locks on this
// shard and records Aborted (on the primary this makes a later Commit
// fail). Aborting a transaction that committed here is an error.
func (s *Store) Abort(ctx context.Context, id txn.TxnID) error {
	if err := checkTxn(id); err != nil {
		return err
	}
	return retry(ctx, func() error { return s.abort(ctx, id) })
}

func (s *Store) abort(ctx context.Context, id txn.TxnID) error {
	aborted := encodeStatus(txn.Status{State: txn.Aborted})
	for attempt := 0; ; attempt++ {
		recKV, st, err := s.loadRec(ctx, id)
		if err != nil {
			return wrapEtcd("abort txn "+string(id), err)
		}
		if st != nil && st.State == txn.Committed {
			return fmt.Errorf("etcdstore: abort txn %s: already committed at %d: %w", id, st.TS, txn.ErrInvalid)
		}
		sk := s.k.status(id)
		if recKV == nil {
			if st != nil {
				return nil
			}
			r, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(sk), "=", 0)).
				Then(clientv3.OpPut(sk, aborted)).Commit()
			if err != nil {
				return wrapEtcd("abort txn "+string(id), err)
			}
			if r.Succeeded {
				return nil
			}
			continue
		}
		rec, err := decodeRec(recKV.Value)
		if err != nil {
			return fmt.Errorf("etcdstore: abort txn %s: record: %w", id, err)
		}
		ops := make([]clientv3.Op, 0, len(rec.Writes)+len(rec.Reads)+len(rec.Scans)+3)
		for _, w := range rec.Writes {
			ops = append(ops, clientv3.OpDelete(s.k.lock(w.Key)))
		}
		ops = append(ops, s.readLockDeletes(id, rec)...)
		ops = append(ops, clientv3.OpDelete(s.k.rec(id)), clientv3.OpDelete(s.k.alive(id)), clientv3.OpPut(sk, aborted))
		r, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(s.k.rec(id)), "=", recKV.ModRevision)).
			Then(ops...).Commit()
		if err != nil {
			return wrapEtcd("abort txn "+string(id), err)
		}
		if r.Succeeded {
			return nil
		}
		if attempt >= 8 {
			return fmt.Errorf("etcdstore: abort txn %s: its record keeps changing", id)
		}
	}
}

func (s *Store) readLockDeletes(id txn.TxnID, rec txnRec) []clientv3.Op {
	var ops []clientv3.Op
	for _, k := range rec.Reads {
		ops = append(ops, clientv3.OpDelete(s.k.readLock(k, id)))
	}
	for _, pre := range rec.Scans {
		ops = append(ops, clientv3.OpDelete(s.k.scanLock(pre, id)))
	}
	return ops
}

// Limits implements txn.Limiter: the largest prepare the cluster's
// operation limit admits whatever the mix (every key written is the worst
// case: three compares each, plus four), values that leave room for the
// request's keys and framing, and keys up to MaxKeyBytes.
func (s *Store) Limits() txn.Limits {
	return txn.Limits{
		MaxKeyBytes:    s.opt.MaxKeyBytes,
		MaxValueBytes:  s.opt.MaxRequestBytes - 8192,
		MaxPrepareKeys: min((s.opt.MaxTxnOps-4)/3, (s.opt.MaxTxnOps-5)/2),
	}
}

var _ txn.Limiter = (*Store)(nil)

// transient reports an etcd error after which the same call may simply be
// made again: no leader, leader changed, a request timed out, a member
// unreachable (gRPC Unavailable). Every Store method is idempotent
// (a repeated prepare returns the first one's timestamp, a repeated
// commit at the same timestamp nothing new), so an outcome that was lost
// with such an error is found again by the retry.
func transient(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code() == codes.Unavailable
	}
	return status.Code(errors.Unwrap(err)) == codes.Unavailable || status.Code(err) == codes.Unavailable
}

// retryAttempts bounds retry (a test sets 1 for a negative control).
var retryAttempts = 8

// retry runs f again (up to 8 attempts, backing off from 20 ms, within
// ctx) while it fails with a transient error.
func retry(ctx context.Context, f func() error) error {
	wait := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil || attempt >= retryAttempts || ctx.Err() != nil || !transient(err) {
			return err
		}
		if sleep(ctx, wait) != nil {
			return err
		}
		wait = min(2*wait, time.Second)
	}
}
