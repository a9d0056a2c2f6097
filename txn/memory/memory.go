// Package memory is the embedded txn.Store: one shard held in memory as a
// multi-version map (every committed version of every key, by commit
// timestamp), with write locks, read locks (the keys and prefixes a
// prepared transaction read) and the primary's status records.
//
// Invariants (the timestamp rules of txn.Store):
//   - maxSeen is the highest read, prepare and commit timestamp this shard
//     has seen; Prepare returns maxSeen+1 and raises maxSeen to it, so no
//     commit can land at or below a timestamp that was already read.
//   - A read at ts waits while a write lock with prepare timestamp ≤ ts is
//     held; a lock whose lease has ended is resolved through the Resolver
//     (the primary's status record) and rolled forward or back here.
//   - Versions of a key are sorted by commit timestamp; the keys are kept in
//     a sorted slice, so Scan is a binary search plus a walk.
//
// It never blocks while holding its mutex: waits and Resolver calls happen
// with the mutex released, and the state is re-read afterwards.
package memory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/meridiantime/meridian/txn"
)

// Options configures a Store. The zero value is ready to use.
type Options struct {
	// Now reads the clock that lock leases are measured on (default
	// time.Now). Leases are local durations, not TrueTime.
	Now func() time.Time
	// Limits, if set, are reported through txn.Limiter and enforced here.
	Limits txn.Limits
	// ResolvePoll is how long a reader blocked by a lock that the resolver
	// says is still pending waits before asking again (default 1 ms).
	ResolvePoll time.Duration
	// AskAfter: a reader blocked this long by a lock whose lease is still
	// live asks the resolver for the primary's record (which never aborts
	// a live lock), so a transaction committed at its primary by a
	// coordinator that then died is rolled forward without waiting out the
	// lease (default 10 ms; negative: wait for the lease).
	AskAfter time.Duration
}

// ErrClosed is returned by every call after Close.
var ErrClosed = errors.New("memory: store closed")

type version struct {
	ts      txn.Timestamp
	value   []byte
	deleted bool
}

type entry struct {
	versions []version               // ascending ts
	lock     *prepared               // write lock
	readers  map[txn.TxnID]*prepared // read locks
}

type prepared struct {
	id        txn.TxnID
	primary   txn.PrimaryRef
	isPrimary bool
	prepareTS txn.Timestamp
	expiry    time.Time
	writes    []txn.Write
	reads     []string
	scans     []string
}

// Store is one in-memory shard. It is safe for concurrent use.
type Store struct {
	now      func() time.Time
	lim      txn.Limits
	poll     time.Duration
	askAfter time.Duration

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced whenever a lock is released
	resolver txn.Resolver
	keys     []string // sorted: every key that has a version or a lock
	data     map[string]*entry
	maxSeen  txn.Timestamp
	txns     map[txn.TxnID]*prepared
	scanners map[txn.TxnID]*prepared // prepared transactions with scans
	status   map[txn.TxnID]txn.Status
	closed   bool

	// Test-only mutations (export_test.go), for negative controls.
	unsafeNoReadRecord bool
	unsafeNoReadLocks  bool
}

var (
	_ txn.Store   = (*Store)(nil)
	_ txn.Limiter = (*Store)(nil)
)

// New returns an empty shard.
func New(o Options) *Store {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ResolvePoll <= 0 {
		o.ResolvePoll = time.Millisecond
	}
	if o.AskAfter == 0 {
		o.AskAfter = 10 * time.Millisecond
	}
	return &Store{
		now: o.Now, lim: o.Limits, poll: o.ResolvePoll, askAfter: o.AskAfter,
		changed:  make(chan struct{}),
		data:     map[string]*entry{},
		txns:     map[txn.TxnID]*prepared{},
		scanners: map[txn.TxnID]*prepared{},
		status:   map[txn.TxnID]txn.Status{},
	}
}

// Limits implements txn.Limiter.
func (s *Store) Limits() txn.Limits { return s.lim }

// SetResolver implements txn.Store.
func (s *Store) SetResolver(r txn.Resolver) {
	s.mu.Lock()
	s.resolver = r
	s.mu.Unlock()
}

// Pending returns how many prepared transactions hold locks here.
func (s *Store) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.txns)
}

// MaxSeen returns the highest timestamp this shard has seen.
func (s *Store) MaxSeen() txn.Timestamp {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxSeen
}

func (s *Store) observeRead(ts txn.Timestamp) {
	if !s.unsafeNoReadRecord {
		s.observe(ts)
	}
}

func (s *Store) observe(ts txn.Timestamp) {
	if ts > s.maxSeen {
		s.maxSeen = ts
	}
}

func (s *Store) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Store) entryLocked(key string) *entry {
	if e := s.data[key]; e != nil {
		return e
	}
	e := &entry{}
	s.data[key] = e
	i := sort.SearchStrings(s.keys, key)
	s.keys = slices.Insert(s.keys, i, key)
	return e
}

// visible returns the newest version with ts' ≤ ts.
func (e *entry) visible(ts txn.Timestamp) ([]byte, bool) {
	i := sort.Search(len(e.versions), func(i int) bool { return e.versions[i].ts > ts }) - 1
	if i < 0 || e.versions[i].deleted {
		return nil, false
	}
	return bytes.Clone(e.versions[i].value), true
}

func (e *entry) newest() txn.Timestamp {
	if len(e.versions) == 0 {
		return 0
	}
	return e.versions[len(e.versions)-1].ts
}

// blocker is a lock a call ran into, with what is needed to wait for it.
type blocker struct {
	info   txn.LockInfo
	expiry time.Time
	ch     <-chan struct{}
}

func (s *Store) blockerLocked(p *prepared) *blocker {
	return &blocker{
		info: txn.LockInfo{Txn: p.id, Primary: p.primary, PrepareTS: p.prepareTS,
			Expired: !s.now().Before(p.expiry)},
		expiry: p.expiry,
		ch:     s.changed,
	}
}

// wait waits for a blocking lock to go away: until it is released, or its
// lease ends and the resolver settles it. A live lock that stays AskAfter
// is looked up too (a final record settles it; pending: keep waiting).
func (s *Store) wait(ctx context.Context, b *blocker) error {
	s.mu.Lock()
	r := s.resolver
	s.mu.Unlock()
	if !b.info.Expired {
		d, ask := b.expiry.Sub(s.now()), false
		if s.askAfter > 0 && r != nil && d > s.askAfter {
			d, ask = s.askAfter, true
		}
		woke, err := sleep(ctx, b.ch, d)
		if err != nil || woke || !ask {
			return err
		}
	} else if r == nil {
		return fmt.Errorf("memory: lock of %s expired and no resolver is set: %w", b.info.Txn, txn.ErrInvalid)
	}
	st, err := r.Resolve(ctx, b.info)
	if err != nil {
		return fmt.Errorf("memory: resolve %s: %w", b.info.Txn, err)
	}
	if s.apply(b.info.Txn, st) || !b.info.Expired {
		return nil
	}
	// Expired yet still pending (the resolver saw a live coordinator): poll.
	_, err = sleep(ctx, b.ch, s.poll)
	return err
}

// sleep waits d, for ch or for ctx; woke reports ch.
func sleep(ctx context.Context, ch <-chan struct{}, d time.Duration) (woke bool, err error) {
	if d <= 0 {
		return false, ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case <-ch:
		return true, nil
	case <-t.C:
	}
	return false, nil
}

// apply rolls a transaction's local locks forward or back as the primary's
// record says; it reports whether the record was final.
func (s *Store) apply(id txn.TxnID, st txn.Status) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.txns[id]
	switch st.State {
	case txn.Committed:
		if p != nil {
			s.commitLocked(p, st.TS)
		}
		return true
	case txn.Aborted:
		if p != nil {
			s.abortLocked(p)
		}
		return true
	}
	return false
}

// Get implements txn.Store.
func (s *Store) Get(ctx context.Context, key string, ts txn.Timestamp) ([]byte, bool, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, false, ErrClosed
		}
		s.observeRead(ts)
		e := s.data[key]
		if e == nil {
			s.mu.Unlock()
			return nil, false, nil
		}
		if l := e.lock; l != nil && l.prepareTS <= ts {
			b := s.blockerLocked(l)
			s.mu.Unlock()
			if err := s.wait(ctx, b); err != nil {
				return nil, false, fmt.Errorf("memory: get %q at %d: %w", key, ts, err)
			}
			continue
		}
		v, ok := e.visible(ts)
		s.mu.Unlock()
		return v, ok, nil
	}
}

// Scan implements txn.Store.
func (s *Store) Scan(ctx context.Context, prefix string, limit int, ts txn.Timestamp) ([]txn.KV, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, ErrClosed
		}
		s.observeRead(ts)
		var out []txn.KV
		var b *blocker
		for i := sort.SearchStrings(s.keys, prefix); i < len(s.keys) && strings.HasPrefix(s.keys[i], prefix); i++ {
			e := s.data[s.keys[i]]
			if l := e.lock; l != nil && l.prepareTS <= ts {
				b = s.blockerLocked(l)
				break
			}
			if v, ok := e.visible(ts); ok {
				out = append(out, txn.KV{Key: s.keys[i], Value: v})
				if limit > 0 && len(out) == limit {
					break
				}
			}
		}
		s.mu.Unlock()
		if b == nil {
			return out, nil
		}
		if err := s.wait(ctx, b); err != nil {
			return nil, fmt.Errorf("memory: scan %q at %d: %w", prefix, ts, err)
		}
	}
}

func (s *Store) checkRequest(req txn.PrepareRequest) error {
	if req.Txn == "" {
		return fmt.Errorf("memory: prepare: empty transaction id: %w", txn.ErrInvalid)
	}
	if req.Lease <= 0 {
		return fmt.Errorf("memory: prepare %s: lease must be > 0, got %v: %w", req.Txn, req.Lease, txn.ErrInvalid)
	}
	if n := len(req.Reads) + len(req.Scans) + len(req.Writes); s.lim.MaxPrepareKeys > 0 && n > s.lim.MaxPrepareKeys {
		return fmt.Errorf("memory: prepare %s: %d keys, limit %d: %w", req.Txn, n, s.lim.MaxPrepareKeys, txn.ErrTooLarge)
	}
	for _, w := range req.Writes {
		if w.Key == "" {
			return fmt.Errorf("memory: prepare %s: empty key: %w", req.Txn, txn.ErrInvalid)
		}
		if s.lim.MaxKeyBytes > 0 && len(w.Key) > s.lim.MaxKeyBytes {
			return fmt.Errorf("memory: prepare %s: key of %d bytes, limit %d: %w", req.Txn, len(w.Key), s.lim.MaxKeyBytes, txn.ErrTooLarge)
		}
		if s.lim.MaxValueBytes > 0 && len(w.Value) > s.lim.MaxValueBytes {
			return fmt.Errorf("memory: prepare %s: value of key %q is %d bytes, limit %d: %w", req.Txn, w.Key, len(w.Value), s.lim.MaxValueBytes, txn.ErrTooLarge)
		}
	}
	return nil
}

// conflictLocked finds what stops req from preparing: an error
// (ErrConflict) or a foreign lock whose lease ended (to resolve first).
func (s *Store) conflictLocked(req txn.PrepareRequest) (*blocker, error) {
	foreign := func(p *prepared, key, what string) (*blocker, error) {
		if !s.now().Before(p.expiry) {
			return s.blockerLocked(p), nil
		}
		return nil, fmt.Errorf("memory: %s %q is locked by %s: %w", what, key, p.id, txn.ErrConflict)
	}
	readCheck := func(key string, e *entry) (*blocker, error) {
		if l := e.lock; l != nil && l.id != req.Txn {
			return foreign(l, key, "read key")
		}
		if n := e.newest(); n > req.ReadTS {
			return nil, fmt.Errorf("memory: read key %q has a version at %d after the snapshot %d: %w", key, n, req.ReadTS, txn.ErrConflict)
		}
		return nil, nil
	}
	for _, k := range req.Reads {
		if e := s.data[k]; e != nil {
			if b, err := readCheck(k, e); b != nil || err != nil {
				return b, err
			}
		}
	}
	for _, pfx := range req.Scans {
		for i := sort.SearchStrings(s.keys, pfx); i < len(s.keys) && strings.HasPrefix(s.keys[i], pfx); i++ {
			if b, err := readCheck(s.keys[i], s.data[s.keys[i]]); b != nil || err != nil {
				return b, err
			}
		}
	}
	for _, w := range req.Writes {
		if e := s.data[w.Key]; e != nil {
			if l := e.lock; l != nil && l.id != req.Txn {
				return foreign(l, w.Key, "written key")
			}
			for id, r := range e.readers {
				if id != req.Txn {
					return foreign(r, w.Key, "written key (read)")
				}
			}
			if n := e.newest(); n > req.ReadTS {
				return nil, fmt.Errorf("memory: written key %q has a version at %d after the snapshot %d: %w", w.Key, n, req.ReadTS, txn.ErrConflict)
			}
		}
		for id, p := range s.scanners {
			if id == req.Txn {
				continue
			}
			for _, pfx := range p.scans {
				if strings.HasPrefix(w.Key, pfx) {
					return foreign(p, w.Key, "written key (scanned prefix "+pfx+")")
				}
			}
		}
	}
	return nil, nil
}

// Prepare implements txn.Store.
func (s *Store) Prepare(ctx context.Context, req txn.PrepareRequest) (txn.Timestamp, error) {
	if err := s.checkRequest(req); err != nil {
		return 0, err
	}
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return 0, ErrClosed
		}
		if p := s.txns[req.Txn]; p != nil { // a repeated prepare
			s.mu.Unlock()
			return p.prepareTS, nil
		}
		if st, ok := s.status[req.Txn]; ok {
			s.mu.Unlock()
			if st.State == txn.Aborted {
				return 0, fmt.Errorf("memory: prepare %s: %w", req.Txn, txn.ErrAborted)
			}
			return 0, fmt.Errorf("memory: prepare %s: already committed at %d: %w", req.Txn, st.TS, txn.ErrInvalid)
		}
		b, err := s.conflictLocked(req)
		if err != nil {
			s.mu.Unlock()
			return 0, err
		}
		if b != nil {
			s.mu.Unlock()
			if err := s.wait(ctx, b); err != nil {
				return 0, fmt.Errorf("memory: prepare %s: %w", req.Txn, err)
			}
			continue
		}
		s.maxSeen++
		p := &prepared{
			id: req.Txn, primary: req.Primary, isPrimary: req.IsPrimary, prepareTS: s.maxSeen,
			expiry: s.now().Add(req.Lease),
			writes: slices.Clone(req.Writes), reads: slices.Clone(req.Reads), scans: slices.Clone(req.Scans),
		}
		for i := range p.writes {
			p.writes[i].Value = bytes.Clone(p.writes[i].Value)
			s.entryLocked(p.writes[i].Key).lock = p
		}
		if s.unsafeNoReadLocks {
			p.reads, p.scans = nil, nil
		}
		for _, k := range p.reads {
			e := s.entryLocked(k)
			if e.readers == nil {
				e.readers = map[txn.TxnID]*prepared{}
			}
			e.readers[p.id] = p
		}
		if len(p.scans) > 0 {
			s.scanners[p.id] = p
		}
		s.txns[p.id] = p
		ts := p.prepareTS
		s.mu.Unlock()
		return ts, nil
	}
}

func (s *Store) releaseLocked(p *prepared) {
	for _, w := range p.writes {
		if e := s.data[w.Key]; e != nil && e.lock == p {
			e.lock = nil
		}
	}
	for _, k := range p.reads {
		if e := s.data[k]; e != nil {
			delete(e.readers, p.id)
		}
	}
	delete(s.scanners, p.id)
	delete(s.txns, p.id)
	s.notifyLocked()
}

func (s *Store) commitLocked(p *prepared, ts txn.Timestamp) {
	for _, w := range p.writes {
		e := s.entryLocked(w.Key)
		i := sort.Search(len(e.versions), func(i int) bool { return e.versions[i].ts > ts })
		e.versions = slices.Insert(e.versions, i, version{ts: ts, value: w.Value, deleted: w.Delete})
	}
	s.observe(ts)
	s.status[p.id] = txn.Status{State: txn.Committed, TS: ts}
	s.releaseLocked(p)
}

func (s *Store) abortLocked(p *prepared) {
	s.status[p.id] = txn.Status{State: txn.Aborted}
	s.releaseLocked(p)
}

// Commit implements txn.Store.
func (s *Store) Commit(_ context.Context, id txn.TxnID, ts txn.Timestamp) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	p := s.txns[id]
	if p == nil {
		switch st, ok := s.status[id]; {
		case ok && st.State == txn.Committed && st.TS == ts:
			return nil // already rolled forward
		case ok && st.State == txn.Aborted:
			return fmt.Errorf("memory: commit %s: %w", id, txn.ErrAborted)
		case ok:
			return fmt.Errorf("memory: commit %s at %d: already committed at %d: %w", id, ts, st.TS, txn.ErrInvalid)
		}
		return fmt.Errorf("memory: commit %s: not prepared on this shard: %w", id, txn.ErrInvalid)
	}
	if ts < p.prepareTS {
		return fmt.Errorf("memory: commit %s at %d: below its prepare timestamp %d: %w", id, ts, p.prepareTS, txn.ErrInvalid)
	}
	s.commitLocked(p, ts)
	return nil
}

// Abort implements txn.Store. Aborting a transaction this shard never saw
// records Aborted, so a prepare that arrives later fails.
func (s *Store) Abort(_ context.Context, id txn.TxnID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if st := s.status[id]; st.State == txn.Committed {
		return fmt.Errorf("memory: abort %s: already committed at %d: %w", id, st.TS, txn.ErrInvalid)
	}
	if p := s.txns[id]; p != nil {
		s.abortLocked(p)
		return nil
	}
	s.status[id] = txn.Status{State: txn.Aborted}
	return nil
}

// Status implements txn.Store.
func (s *Store) Status(_ context.Context, id txn.TxnID) (txn.Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return txn.Status{}, ErrClosed
	}
	return s.status[id], nil // unknown: Pending
}

// AbortIfPending implements txn.Store; it also rolls back the transaction's
// locks on this shard.
func (s *Store) AbortIfPending(_ context.Context, id txn.TxnID) (txn.Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return txn.Status{}, ErrClosed
	}
	if st := s.status[id]; st.State == txn.Committed || st.State == txn.Aborted {
		return st, nil
	}
	if p := s.txns[id]; p != nil {
		s.abortLocked(p)
	} else {
		s.status[id] = txn.Status{State: txn.Aborted}
	}
	return s.status[id], nil
}

// Close implements txn.Store.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}
