// Package storetest is a backend-neutral conformance suite for txn.Store:
// every timestamp rule, conflict rule, status rule and limit that
// txn/store.go states, checked against any backend through Run.
//
// The open function given to Run returns n handles on one fresh, empty
// shard: separate clients that share nothing but the backend (for etcd:
// separate etcd clients). Calling it again gives another, independent
// shard. Each check can be run on a recording testing.TB through Fails, so
// a backend's tests can show that a store that breaks a rule is caught.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meridiantime/meridian/txn"
)

// Open returns n handles on one fresh shard.
type Open func(t *testing.T, n int) []txn.Store

// Limits are the backend's size limits as the suite probes them: the Fit
// sizes must prepare, commit and read back; the TooLarge ones must fail
// with txn.ErrTooLarge before anything is locked. Zero fields skip that
// probe.
type Limits struct {
	FitWrites, TooManyWrites int
	FitValue, TooLargeValue  int
	FitKey, TooLargeKey      int
}

// Option configures Run.
type Option func(*config)

type config struct {
	limits   Limits
	validate bool
}

// ValidatesInput runs the InvalidInput check: for a backend that refuses
// malformed input itself (keys with its reserved bytes, bad transaction
// ids) rather than trusting the DB's checks.
func ValidatesInput() Option { return func(c *config) { c.validate = true } }

// WithLimits sets the sizes the Limits check probes.
func WithLimits(l Limits) Option { return func(c *config) { c.limits = l } }

// Check is one rule of txn.Store.
type Check struct {
	Name string
	Fn   func(t testing.TB, rt *testing.T, open Open, c *config)
}

// Checks lists the suite.
func Checks() []Check {
	return []Check{
		{"ReadFence", checkReadFence},
		{"PrepareAboveEverything", checkPrepareAbove},
		{"ReadWaitsForLock", checkReadWaits},
		{"VisibleExactlyAtCommitTS", checkVisibility},
		{"ConflictNewerVersion", checkConflictNewer},
		{"ConflictForeignLock", checkConflictLock},
		{"ReadsProtectedUntilCommit", checkReadLocks},
		{"StatusRace", checkStatusRace},
		{"ExpiredLockResolved", checkExpiredResolved},
		{"CommittedPrimaryRolledForward", checkRollForward},
		{"Idempotent", checkIdempotent},
		{"CancelledContext", checkCancelled},
		{"InvalidInput", checkInvalid},
		{"Limits", checkLimits},
	}
}

// Run runs every check as a subtest.
func Run(t *testing.T, open Open, opts ...Option) {
	c := &config{}
	for _, o := range opts {
		o(c)
	}
	for _, ch := range Checks() {
		t.Run(ch.Name, func(t *testing.T) { ch.Fn(t, t, open, c) })
	}
}

// RunCheck runs the named check as a subtest.
func RunCheck(t *testing.T, name string, open Open, opts ...Option) {
	c := &config{}
	for _, o := range opts {
		o(c)
	}
	for _, ch := range Checks() {
		if ch.Name == name {
			t.Run(name, func(t *testing.T) { ch.Fn(t, t, open, c) })
			return
		}
	}
	t.Fatalf("storetest: no check named %q", name)
}

// Fails runs the named check on a recording testing.TB and reports whether
// it failed, with its messages; rt is the real test (its cleanups run the
// backend down).
func Fails(rt *testing.T, name string, open Open, opts ...Option) (bool, string) {
	c := &config{}
	for _, o := range opts {
		o(c)
	}
	for _, ch := range Checks() {
		if ch.Name != name {
			continue
		}
		r := &recorder{TB: rt}
		done := make(chan struct{})
		go func() {
			defer close(done)
			ch.Fn(r, rt, open, c)
		}()
		<-done
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.failed, strings.Join(r.msgs, "\n")
	}
	rt.Fatalf("storetest: no check named %q", name)
	return false, ""
}

// recorder is a testing.TB that records failures instead of failing the
// real test.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	failed bool
	msgs   []string
}

func (r *recorder) mark(msg string) {
	r.mu.Lock()
	r.failed = true
	r.msgs = append(r.msgs, msg)
	r.mu.Unlock()
}
func (r *recorder) Fail()                     { r.mark("Fail") }
func (r *recorder) Error(a ...any)            { r.mark(fmt.Sprint(a...)) }
func (r *recorder) Errorf(f string, a ...any) { r.mark(fmt.Sprintf(f, a...)) }
func (r *recorder) FailNow()                  { r.mark("FailNow"); runtime.Goexit() }
func (r *recorder) Fatal(a ...any)            { r.mark(fmt.Sprint(a...)); runtime.Goexit() }
func (r *recorder) Fatalf(f string, a ...any) { r.mark(fmt.Sprintf(f, a...)); runtime.Goexit() }
func (r *recorder) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

// ---- helpers ----------------------------------------------------------

// Resolver is the resolver the DB would be, from the primaries' status
// records: Committed/Aborted as recorded; Pending with an expired lease →
// AbortIfPending on the primary. It counts its calls.
type Resolver struct {
	Shards  map[int]txn.Store
	Calls   atomic.Int64
	Expired atomic.Int64
}

// Resolve implements txn.Resolver.
func (r *Resolver) Resolve(ctx context.Context, l txn.LockInfo) (txn.Status, error) {
	r.Calls.Add(1)
	p, ok := r.Shards[l.Primary.Shard]
	if !ok {
		return txn.Status{}, fmt.Errorf("storetest resolver: no shard %d", l.Primary.Shard)
	}
	st, err := p.Status(ctx, l.Txn)
	if err != nil || st.State != txn.Pending || !l.Expired {
		return st, err
	}
	r.Expired.Add(1)
	return p.AbortIfPending(ctx, l.Txn)
}

// NewTxnID returns a fresh transaction id.
func NewTxnID() txn.TxnID {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return txn.TxnID(hex.EncodeToString(b[:]))
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// base is a timestamp well above anything a fresh shard saw: now.
func base() txn.Timestamp { return time.Now().UnixNano() }

const longLease = time.Minute

func prepare(t testing.TB, s txn.Store, id txn.TxnID, primary txn.PrimaryRef, isPrimary bool, readTS txn.Timestamp, ws ...txn.Write) txn.Timestamp {
	t.Helper()
	p, err := s.Prepare(ctxT(t, 10*time.Second), txn.PrepareRequest{Txn: id, Primary: primary, IsPrimary: isPrimary, ReadTS: readTS, Writes: ws, Lease: longLease})
	if err != nil {
		t.Fatalf("prepare %s: %v", id, err)
	}
	return p
}

// put commits one write on a one-shard transaction and returns the commit
// timestamp (at least min).
func put(t testing.TB, s txn.Store, key, val string, readTS, minTS txn.Timestamp) txn.Timestamp {
	t.Helper()
	id := NewTxnID()
	p := prepare(t, s, id, txn.PrimaryRef{Key: key}, true, readTS, txn.Write{Key: key, Value: []byte(val)})
	c := max(p, minTS)
	if err := s.Commit(ctxT(t, 10*time.Second), id, c); err != nil {
		t.Fatalf("commit %s at %d: %v", id, c, err)
	}
	return c
}

func get(t testing.TB, s txn.Store, key string, ts txn.Timestamp) (string, bool) {
	t.Helper()
	v, ok, err := s.Get(ctxT(t, 10*time.Second), key, ts)
	if err != nil {
		t.Fatalf("get %q at %d: %v", key, ts, err)
	}
	return string(v), ok
}

func withResolver(ss []txn.Store, r txn.Resolver) {
	for _, s := range ss {
		s.SetResolver(r)
	}
}

// ---- checks -------------------------------------------------------------

// A read at ts records ts: a later prepare through another client returns
// more than ts (Get and Scan alike).
func checkReadFence(t testing.TB, rt *testing.T, open Open, _ *config) {
	ss := open(rt, 2)
	withResolver(ss, &Resolver{Shards: map[int]txn.Store{0: ss[0]}})
	b := base()
	for i, read := range []func(ts txn.Timestamp){
		func(ts txn.Timestamp) { get(t, ss[0], "fence", ts) },
		func(ts txn.Timestamp) {
			if _, err := ss[0].Scan(ctxT(t, 10*time.Second), "fen", 0, ts); err != nil {
				t.Fatalf("scan at %d: %v", ts, err)
			}
		},
	} {
		ts := b + txn.Timestamp(i+1)*int64(time.Hour)
		read(ts)
		key := fmt.Sprint("w", i)
		p := prepare(t, ss[1], NewTxnID(), txn.PrimaryRef{Key: key}, true, 1, txn.Write{Key: key, Value: []byte("x")})
		if p <= ts {
			t.Errorf("read %d at %d, then a prepare on another client returned %d: not above the read", i, ts, p)
		}
	}
}

// Prepare returns more than every prepare and commit timestamp the shard
// saw, across clients.
func checkPrepareAbove(t testing.TB, rt *testing.T, open Open, _ *config) {
	ss := open(rt, 2)
	var last txn.Timestamp
	for i := range 6 {
		s := ss[i%2]
		id := NewTxnID()
		key := fmt.Sprint("k", i)
		p := prepare(t, s, id, txn.PrimaryRef{Key: key}, true, 1, txn.Write{Key: key, Value: []byte("v")})
		if p <= last {
			t.Errorf("prepare %d returned %d, not above the shard's previous %d", i, p, last)
		}
		last = p
		if i == 3 { // commit far above: the next prepare must exceed it
			c := p + int64(time.Hour)
			if err := s.Commit(ctxT(t, 10*time.Second), id, c); err != nil {
				t.Fatal(err)
			}
			last = c
		} else if err := s.Abort(ctxT(t, 10*time.Second), id); err != nil {
			t.Fatal(err)
		}
	}
}

// A read at ts waits while a lock with prepare ts ≤ ts is pending and
// returns exactly what commits at ≤ ts; a lock above ts does not hold it.
func checkReadWaits(t testing.TB, rt *testing.T, open Open, _ *config) {
	ss := open(rt, 2)
	withResolver(ss, &Resolver{Shards: map[int]txn.Store{0: ss[0]}})
	c0 := put(t, ss[0], "k", "old", 1, 0)
	id := NewTxnID()
	p := prepare(t, ss[0], id, txn.PrimaryRef{Key: "k"}, true, c0, txn.Write{Key: "k", Value: []byte("new")})
	// Below the lock: no wait, the old value.
	if v, ok := get(t, ss[1], "k", p-1); !ok || v != "old" {
		t.Errorf("read at %d below the lock at %d: got %q,%v, want old", p-1, p, v, ok)
	}
	type res struct {
		v   string
		ok  bool
		err error
		at  time.Time
	}
	readTS := p + int64(time.Second)
	got := make(chan res, 2)
	go func() {
		v, ok, err := ss[1].Get(ctxT(t, 20*time.Second), "k", readTS)
		got <- res{string(v), ok, err, time.Now()}
	}()
	go func() {
		kvs, err := ss[1].Scan(ctxT(t, 20*time.Second), "k", 0, readTS)
		r := res{err: err, at: time.Now()}
		if len(kvs) == 1 {
			r.v, r.ok = string(kvs[0].Value), true
		}
		got <- r
	}()
	time.Sleep(300 * time.Millisecond)
	commitAt := time.Now()
	if err := ss[0].Commit(ctxT(t, 10*time.Second), id, p); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		r := <-got
		if r.err != nil {
			t.Errorf("read %d at %d: %v", i, readTS, r.err)
			continue
		}
		if r.at.Before(commitAt) {
			t.Errorf("read %d at %d returned %q before the lock at %d was committed: it did not wait", i, readTS, r.v, p)
		}
		if !r.ok || r.v != "new" {
			t.Errorf("read %d at %d after the commit at %d: got %q,%v, want new", i, readTS, p, r.v, r.ok)
		}
	}
}

// A commit at c is visible to reads at ≥ c and invisible at c−1; a delete
// hides the key from its timestamp on.
func checkVisibility(t testing.TB, rt *testing.T, open Open, _ *config) {
	ss := open(rt, 1)
	s := ss[0]
	b := base()
	c1 := put(t, s, "vis/a", "one", 1, b)
	id := NewTxnID()
	p := prepare(t, s, id, txn.PrimaryRef{Key: "vis/a"}, true, c1, txn.Write{Key: "vis/a", Value: []byte("two")}, txn.Write{Key: "vis/b", Value: []byte("bee")})
	c2 := max(p, c1+1000)
	if err := s.Commit(ctxT(t, 10*time.Second), id, c2); err != nil {
		t.Fatal(err)
	}
	id = NewTxnID()
	p = prepare(t, s, id, txn.PrimaryRef{Key: "vis/a"}, true, c2, txn.Write{Key: "vis/a", Delete: true})
	c3 := max(p, c2+1000)
	if err := s.Commit(ctxT(t, 10*time.Second), id, c3); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		ts   txn.Timestamp
		a, b string // "" = absent
	}{
		{c1 - 1, "", ""}, {c1, "one", ""}, {c2 - 1, "one", ""}, {c2, "two", "bee"}, {c3 - 1, "two", "bee"}, {c3, "", "bee"}, {c3 + 1, "", "bee"},
	}
	for _, w := range want {
		for _, k := range []struct{ key, want string }{{"vis/a", w.a}, {"vis/b", w.b}} {
			v, ok := get(t, s, k.key, w.ts)
			if ok != (k.want != "") || v != k.want {
				t.Errorf("get %s at %d (commits at %d, %d, delete at %d): got %q,%v, want %q", k.key, w.ts, c1, c2, c3, v, ok, k.want)
			}
		}
		kvs, err := s.Scan(ctxT(t, 10*time.Second), "vis/", 0, w.ts)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, kv := range kvs {
			got = append(got, kv.Key+"="+string(kv.Value))
		}
		var exp []string
		if w.a != "" {
			exp = append(exp, "vis/a="+w.a)
		}
		if w.b != "" {
			exp = append(exp, "vis/b="+w.b)
		}
		if strings.Join(got, ",") != strings.Join(exp, ",") {
			t.Errorf("scan vis/ at %d: got %v, want %v", w.ts, got, exp)
		}
		if kvs, err := s.Scan(ctxT(t, 10*time.Second), "vis/", 1, w.ts); err != nil || len(kvs) > 1 || (len(exp) > 0 && (len(kvs) != 1 || kvs[0].Key+"="+string(kvs[0].Value) != exp[0])) {
			t.Errorf("scan vis/ limit 1 at %d: got %v (err %v), want the first of %v", w.ts, kvs, err, exp)
		}
	}
}

// A version committed after the snapshot on a key read, scanned or
// written makes the prepare fail with ErrConflict; the same prepare at a
// snapshot above it succeeds.
func checkConflictNewer(t testing.TB, rt *testing.T, open Open, _ *config) {
	ss := open(rt, 2)
	withResolver(ss, &Resolver{Shards: map[int]txn.Store{0: ss[0]}})
	r := put(t, ss[0], "c/k", "v0", 1, 0)
	c := put(t, ss[1], "c/k", "v1", r, r+1000)
	for _, req := range []txn.PrepareRequest{
		{Reads: []string{"c/k"}},
		{Scans: []string{"c/"}},
		{Writes: []txn.Write{{Key: "c/k", Value: []byte("mine")}}},
	} {
		if len(req.Writes) == 0 {
			req.Writes = []txn.Write{{Key: "other", Value: []byte("x")}}
		}
		req.Primary, req.IsPrimary, req.Lease = txn.PrimaryRef{Key: req.Writes[0].Key}, true, longLease
		for _, readTS := range []txn.Timestamp{r, c} {
			req.Txn, req.ReadTS = NewTxnID(), readTS
			_, err := ss[0].Prepare(ctxT(t, 10*time.Second), req)
			switch {
			case readTS < c && !errors.Is(err, txn.ErrConflict):
				t.Errorf("reads %v scans %v writes %s at snapshot %d, newer commit at %d: got %v, want ErrConflict", req.Reads, req.Scans, req.Writes[0].Key, readTS, c, err)
			case readTS >= c && err != nil:
				t.Errorf("reads %v scans %v writes %s at snapshot %d ≥ the commit at %d: %v", req.Reads, req.Scans, req.Writes[0].Key, readTS, c, err)
			}
			if err == nil {
				if err := ss[0].Abort(ctxT(t, 10*time.Second), req.Txn); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// Another transaction's live lock on a key read, scanned or written makes
// the prepare fail with ErrConflict; once it is aborted the prepare goes
// through.
func checkConflictLock(t testing.TB, rt *testing.T, open Open, _ *config) {
	ss := open(rt, 2)
	withResolver(ss, &Resolver{Shards: map[int]txn.Store{0: ss[0]}})
	r := put(t, ss[0], "l/k", "v0", 1, 0)
	holder := NewTxnID()
	prepare(t, ss[1], holder, txn.PrimaryRef{Key: "l/k"}, true, r, txn.Write{Key: "l/k", Value: []byte("held")})
	reqs := []txn.PrepareRequest{
		{Reads: []string{"l/k"}},
		{Scans: []string{"l/"}},
		{Writes: []txn.Write{{Key: "l/k", Value: []byte("mine")}}},
	}
	for i := range reqs {
		req := &reqs[i]
		if len(req.Writes) == 0 {
			req.Writes = []txn.Write{{Key: "other", Value: []byte("x")}}
		}
		req.Primary, req.IsPrimary, req.Lease, req.ReadTS = txn.PrimaryRef{Key: req.Writes[0].Key}, true, longLease, r
		req.Txn = NewTxnID()
		if _, err := ss[0].Prepare(ctxT(t, 10*time.Second), *req); !errors.Is(err, txn.ErrConflict) {
			t.Errorf("reads %v scans %v writes %s with a foreign lock on l/k: got %v, want ErrConflict", req.Reads, req.Scans, req.Writes[0].Key, err)
		}
	}
	if err := ss[1].Abort(ctxT(t, 10*time.Second), holder); err != nil {
		t.Fatal(err)
	}
	for _, req := range reqs {
		req.Txn = NewTxnID()
		if _, err := ss[0].Prepare(ctxT(t, 10*time.Second), req); err != nil {
			t.Errorf("reads %v scans %v writes %s after the lock's txn aborted: %v", req.Reads, req.Scans, req.Writes[0].Key, err)
		} else if err := ss[0].Abort(ctxT(t, 10*time.Second), req.Txn); err != nil {
			t.Fatal(err)
		}
	}
}

// From a successful prepare until its commit, the keys a transaction read
// and the prefixes it scanned refuse other transactions' prepares that
// write them (its reads must still hold at its commit timestamp, chosen
// later); plain reads are not held up; after the commit the writes go
// through.
func checkReadLocks(t testing.TB, rt *testing.T, open Open, _ *config) {
	ss := open(rt, 2)
	withResolver(ss, &Resolver{Shards: map[int]txn.Store{0: ss[0]}})
	r := put(t, ss[0], "rl/k", "v0", 1, 0)
	reader := NewTxnID()
	ctx := ctxT(t, 10*time.Second)
	p, err := ss[0].Prepare(ctx, txn.PrepareRequest{Txn: reader, Primary: txn.PrimaryRef{Key: "out"}, IsPrimary: true, ReadTS: r,
		Reads: []string{"rl/k"}, Scans: []string{"sc/"}, Writes: []txn.Write{{Key: "out", Value: []byte("x")}}, Lease: longLease})
	if err != nil {
		t.Fatal(err)
	}
	writers := []string{"rl/k", "sc/new"}
	for _, key := range writers {
		_, err := ss[1].Prepare(ctx, txn.PrepareRequest{Txn: NewTxnID(), Primary: txn.PrimaryRef{Key: key}, IsPrimary: true, ReadTS: r,
			Writes: []txn.Write{{Key: key, Value: []byte("w")}}, Lease: longLease})
		if !errors.Is(err, txn.ErrConflict) {
			t.Errorf("write of %q while a prepared transaction read it (key rl/k, prefix sc/): got %v, want ErrConflict", key, err)
		}
	}
	if v, ok := get(t, ss[1], "rl/k", p+1); !ok || v != "v0" {
		t.Errorf("plain read of rl/k under a read lock: %q,%v", v, ok)
	}
	if err := ss[0].Commit(ctx, reader, p); err != nil {
		t.Fatal(err)
	}
	for _, key := range writers {
		id := NewTxnID()
		if _, err := ss[1].Prepare(ctx, txn.PrepareRequest{Txn: id, Primary: txn.PrimaryRef{Key: key}, IsPrimary: true, ReadTS: p,
			Writes: []txn.Write{{Key: key, Value: []byte("w")}}, Lease: longLease}); err != nil {
			t.Errorf("write of %q after the reader committed: %v", key, err)
		} else if err := ss[1].Abort(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
}

// Commit on the primary and AbortIfPending race: exactly one wins, and the
// status record, the caller's results and the data agree.
func checkStatusRace(t testing.TB, rt *testing.T, open Open, _ *config) {
	ss := open(rt, 2)
	withResolver(ss, &Resolver{Shards: map[int]txn.Store{0: ss[0]}})
	wins := map[string]int{}
	for i := range 12 {
		key := fmt.Sprint("race", i)
		id := NewTxnID()
		p := prepare(t, ss[0], id, txn.PrimaryRef{Key: key}, true, 1, txn.Write{Key: key, Value: []byte("v")})
		var commitErr, abortErr error
		var st txn.Status
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); commitErr = ss[0].Commit(ctxT(t, 10*time.Second), id, p) }()
		go func() { defer wg.Done(); st, abortErr = ss[1].AbortIfPending(ctxT(t, 10*time.Second), id) }()
		wg.Wait()
		if abortErr != nil {
			t.Fatalf("AbortIfPending: %v", abortErr)
		}
		if commitErr == nil {
			wins["commit"]++
			if st.State != txn.Committed || st.TS != p {
				t.Errorf("race %d: commit at %d won but AbortIfPending returned %+v", i, p, st)
			}
		} else {
			wins["abort"]++
			if !errors.Is(commitErr, txn.ErrAborted) || st.State != txn.Aborted {
				t.Errorf("race %d: commit returned %v, AbortIfPending %+v: want ErrAborted and Aborted", i, commitErr, st)
			}
			if err := ss[1].Abort(ctxT(t, 10*time.Second), id); err != nil {
				t.Fatalf("abort after AbortIfPending: %v", err)
			}
		}
		final, err := ss[1].Status(ctxT(t, 10*time.Second), id)
		if err != nil || final != st {
			t.Errorf("race %d: Status = %+v (%v), AbortIfPending returned %+v", i, final, err, st)
		}
		v, ok := get(t, ss[1], key, p+1)
		if ok != (commitErr == nil) || (ok && v != "v") {
			t.Errorf("race %d: commit err %v but the value at %d is %q,%v", i, commitErr, p+1, v, ok)
		}
	}
	t.Logf("status races: %v", wins)
}

// A coordinator that prepared on two shards and died: a reader of the
// secondary waits for the lease, resolves through the Resolver (the
// primary gets Aborted), reads the old value; the late commit fails.
func checkExpiredResolved(t testing.TB, rt *testing.T, open Open, _ *config) {
	prim, sec := open(rt, 1)[0], open(rt, 1)[0]
	res := &Resolver{Shards: map[int]txn.Store{0: prim, 1: sec}}
	withResolver([]txn.Store{prim, sec}, res)
	r := put(t, sec, "acct", "100", 1, 0)
	id := NewTxnID()
	pr := txn.PrimaryRef{Shard: 0, Key: "p"}
	lease := time.Second
	ctx := ctxT(t, 20*time.Second)
	pp, err := prim.Prepare(ctx, txn.PrepareRequest{Txn: id, Primary: pr, IsPrimary: true, ReadTS: r, Writes: []txn.Write{{Key: "p", Value: []byte("x")}}, Lease: lease})
	if err != nil {
		t.Fatal(err)
	}
	ps, err := sec.Prepare(ctx, txn.PrepareRequest{Txn: id, Primary: pr, ReadTS: r, Writes: []txn.Write{{Key: "acct", Value: []byte("0")}}, Lease: lease})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	v, ok := get(t, sec, "acct", max(pp, ps)+1)
	waited := time.Since(start)
	if !ok || v != "100" {
		t.Errorf("read of the dead coordinator's secondary: got %q,%v, want the old 100", v, ok)
	}
	if res.Expired.Load() == 0 {
		t.Errorf("the read returned after %v without the Resolver seeing an expired lease", waited)
	}
	if st, err := prim.Status(ctx, id); err != nil || st.State != txn.Aborted {
		t.Errorf("primary status after resolution: %+v, %v; want Aborted", st, err)
	}
	if err := prim.Commit(ctx, id, max(pp, ps)); !errors.Is(err, txn.ErrAborted) {
		t.Errorf("late commit of the resolved transaction: %v, want ErrAborted", err)
	}
	if v, ok := get(t, prim, "p", max(pp, ps)+2); ok {
		t.Errorf("aborted primary write visible: %q", v)
	}
}

// A coordinator that committed the primary and died before the secondary:
// a reader of the secondary rolls it forward at the primary's timestamp.
func checkRollForward(t testing.TB, rt *testing.T, open Open, _ *config) {
	prim, sec := open(rt, 1)[0], open(rt, 1)[0]
	res := &Resolver{Shards: map[int]txn.Store{0: prim, 1: sec}}
	withResolver([]txn.Store{prim, sec}, res)
	r := put(t, sec, "acct", "100", 1, 0)
	id := NewTxnID()
	pr := txn.PrimaryRef{Shard: 0, Key: "p"}
	ctx := ctxT(t, 20*time.Second)
	pp, err := prim.Prepare(ctx, txn.PrepareRequest{Txn: id, Primary: pr, IsPrimary: true, ReadTS: r, Writes: []txn.Write{{Key: "p", Value: []byte("x")}}, Lease: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ps, err := sec.Prepare(ctx, txn.PrepareRequest{Txn: id, Primary: pr, ReadTS: r, Writes: []txn.Write{{Key: "acct", Value: []byte("150")}}, Lease: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c := max(pp, ps) + 10
	if err := prim.Commit(ctx, id, c); err != nil {
		t.Fatal(err)
	}
	if v, ok := get(t, sec, "acct", c-1); !ok || v != "100" {
		t.Errorf("secondary below the commit ts: %q,%v, want 100", v, ok)
	}
	if v, ok := get(t, sec, "acct", c); !ok || v != "150" {
		t.Errorf("secondary at the primary's commit ts %d: %q,%v, want 150 (rolled forward)", c, v, ok)
	}
	if res.Calls.Load() == 0 {
		t.Error("the secondary's lock went away without the Resolver")
	}
	// The coordinator's own late commit of the secondary is harmless.
	if err := sec.Commit(ctx, id, c); err != nil {
		t.Errorf("late commit of the rolled-forward secondary: %v", err)
	}
}

// Prepare and Commit may be retried: same prepare ts, commit once.
func checkIdempotent(t testing.TB, rt *testing.T, open Open, _ *config) {
	ss := open(rt, 1)
	s := ss[0]
	id := NewTxnID()
	req := txn.PrepareRequest{Txn: id, Primary: txn.PrimaryRef{Key: "i"}, IsPrimary: true, ReadTS: 1, Writes: []txn.Write{{Key: "i", Value: []byte("v")}}, Lease: longLease}
	ctx := ctxT(t, 10*time.Second)
	p1, err1 := s.Prepare(ctx, req)
	p2, err2 := s.Prepare(ctx, req)
	if err1 != nil || err2 != nil || p1 != p2 {
		t.Errorf("prepare twice: %d,%v then %d,%v: want the same timestamp", p1, err1, p2, err2)
	}
	if err := s.Commit(ctx, id, p1-1); !errors.Is(err, txn.ErrInvalid) {
		t.Errorf("commit below the prepare ts: %v, want ErrInvalid", err)
	}
	for i := range 2 {
		if err := s.Commit(ctx, id, p1); err != nil {
			t.Errorf("commit %d: %v", i, err)
		}
	}
	if st, err := s.Status(ctx, id); err != nil || st != (txn.Status{State: txn.Committed, TS: p1}) {
		t.Errorf("status: %+v %v", st, err)
	}
	if err := s.Commit(ctx, id, p1+5); err == nil {
		t.Error("commit again at another timestamp succeeded")
	}
}

// A cancelled or expiring context fails the call cleanly: no lock left by
// a failed prepare, and a commit interrupted at any point completes on
// retry with every write visible exactly at its timestamp.
func checkCancelled(t testing.TB, rt *testing.T, open Open, _ *config) {
	ss := open(rt, 1)
	s := ss[0]
	withResolver(ss, &Resolver{Shards: map[int]txn.Store{0: s}})
	dead, cancel := context.WithCancel(context.Background())
	cancel()
	id := NewTxnID()
	_, err := s.Prepare(dead, txn.PrepareRequest{Txn: id, Primary: txn.PrimaryRef{Key: "x"}, IsPrimary: true, ReadTS: 1, Writes: []txn.Write{{Key: "x", Value: []byte("v")}}, Lease: longLease})
	if err == nil {
		t.Fatal("prepare with a cancelled context succeeded")
	}
	// Nothing locked: a read above everything returns at once.
	if _, ok := get(t, s, "x", base()); ok {
		t.Error("key x visible after a failed prepare")
	}
	for i := range 8 {
		id := NewTxnID()
		keys := []string{fmt.Sprint("cc", i, "a"), fmt.Sprint("cc", i, "b")}
		p := prepare(t, s, id, txn.PrimaryRef{Key: keys[0]}, true, 1, txn.Write{Key: keys[0], Value: []byte("1")}, txn.Write{Key: keys[1], Value: []byte("2")})
		short, cancel := context.WithTimeout(context.Background(), time.Duration(i)*300*time.Microsecond)
		_ = s.Commit(short, id, p) // may or may not have gone through
		cancel()
		if err := s.Commit(ctxT(t, 10*time.Second), id, p); err != nil {
			t.Fatalf("commit retry %d: %v", i, err)
		}
		for _, k := range keys {
			if _, ok := get(t, s, k, p-1); ok {
				t.Errorf("%s visible below its commit ts", k)
			}
			if _, ok := get(t, s, k, p); !ok {
				t.Errorf("%s not visible at its commit ts after an interrupted commit and a retry", k)
			}
		}
	}
}

// Malformed input fails with ErrInvalid naming the input.
func checkInvalid(t testing.TB, rt *testing.T, open Open, c *config) {
	if !c.validate {
		t.Skip("the backend trusts the DB to validate input (no storetest.ValidatesInput)")
	}
	s := open(rt, 1)[0]
	ctx := ctxT(t, 10*time.Second)
	ok := func(what string, err error) {
		if !errors.Is(err, txn.ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", what, err)
		}
	}
	_, _, err := s.Get(ctx, "", 5)
	ok("get empty key", err)
	_, _, err = s.Get(ctx, "a\x00b", 5)
	ok("get key with 0x00", err)
	_, err = s.Scan(ctx, "a\x00", 0, 5)
	ok("scan prefix with 0x00", err)
	w := []txn.Write{{Key: "k", Value: []byte("v")}}
	base := txn.PrepareRequest{Txn: NewTxnID(), Primary: txn.PrimaryRef{Key: "k"}, IsPrimary: true, ReadTS: 1, Writes: w, Lease: longLease}
	bad := []struct {
		what string
		mod  func(r *txn.PrepareRequest)
	}{
		{"txn id not hex", func(r *txn.PrepareRequest) { r.Txn = "XYZ" }},
		{"write key with 0x00", func(r *txn.PrepareRequest) { r.Writes = []txn.Write{{Key: "k\x00"}}; r.Primary.Key = "k\x00" }},
		{"empty write key", func(r *txn.PrepareRequest) { r.Writes = []txn.Write{{Key: ""}} }},
		{"read key with 0x00", func(r *txn.PrepareRequest) { r.Reads = []string{"r\x00"} }},
		{"duplicate write", func(r *txn.PrepareRequest) { r.Writes = []txn.Write{w[0], w[0]} }},
		{"primary key not written", func(r *txn.PrepareRequest) { r.Primary.Key = "elsewhere" }},
		{"zero lease", func(r *txn.PrepareRequest) { r.Lease = 0 }},
	}
	for _, b := range bad {
		r := base
		b.mod(&r)
		_, err := s.Prepare(ctx, r)
		ok("prepare: "+b.what, err)
	}
	_, err = s.Status(ctx, "nope")
	ok("status of a bad txn id", err)
	// Nothing of the above left a lock on k.
	if _, err := s.Prepare(ctx, base); err != nil {
		t.Errorf("valid prepare after the invalid ones: %v", err)
	}
}

// The backend's limits: the largest transactions fit and commit; one more
// write, byte or key byte fails with ErrTooLarge and leaves nothing
// locked.
func checkLimits(t testing.TB, rt *testing.T, open Open, c *config) {
	l := c.limits
	if l == (Limits{}) {
		t.Skip("no limits configured for this backend")
	}
	s := open(rt, 1)[0]
	withResolver([]txn.Store{s}, &Resolver{Shards: map[int]txn.Store{0: s}})
	ctx := ctxT(t, 30*time.Second)
	probe := 0
	writes := func(n, valueLen, keyLen int) []txn.Write {
		probe++
		ws := make([]txn.Write, n)
		for i := range ws {
			k := fmt.Sprintf("p%d/w%05d", probe, i)
			if keyLen > 0 {
				k = k + strings.Repeat("k", keyLen-len(k))
			}
			ws[i] = txn.Write{Key: k, Value: bytes.Repeat([]byte{'v'}, valueLen)}
		}
		return ws
	}
	try := func(what string, ws []txn.Write, fit bool) {
		id := NewTxnID()
		req := txn.PrepareRequest{Txn: id, Primary: txn.PrimaryRef{Key: ws[0].Key}, IsPrimary: true, ReadTS: 1, Writes: ws, Lease: longLease}
		p, err := s.Prepare(ctx, req)
		if !fit {
			if !errors.Is(err, txn.ErrTooLarge) {
				t.Errorf("%s: got %v, want ErrTooLarge", what, err)
				if err == nil {
					_ = s.Abort(ctx, id)
				}
			} else {
				t.Logf("%s: %v", what, err)
			}
			// Nothing locked: a read above everything returns at once.
			rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			if _, found, err := s.Get(rctx, ws[0].Key, base()); err != nil || found {
				t.Errorf("%s: after the refused prepare, read of %q: found %v, %v", what, ws[0].Key, found, err)
			}
			return
		}
		if err != nil {
			t.Errorf("%s: %v, want it to fit", what, err)
			return
		}
		if err := s.Commit(ctx, id, p); err != nil {
			t.Errorf("%s: commit: %v", what, err)
			return
		}
		last := ws[len(ws)-1]
		if v, ok := get(t, s, last.Key, p); !ok || !bytes.Equal([]byte(v), last.Value) {
			t.Errorf("%s: the last write reads back as %d bytes, %v", what, len(v), ok)
		}
	}
	if l.FitWrites > 0 {
		try(fmt.Sprint(l.FitWrites, " writes"), writes(l.FitWrites, 1, 0), true)
	}
	if l.TooManyWrites > 0 {
		try(fmt.Sprint(l.TooManyWrites, " writes"), writes(l.TooManyWrites, 1, 0), false)
	}
	if l.FitValue > 0 {
		try(fmt.Sprint("a value of ", l.FitValue, " bytes"), writes(1, l.FitValue, 0), true)
	}
	if l.TooLargeValue > 0 {
		try(fmt.Sprint("a value of ", l.TooLargeValue, " bytes"), writes(1, l.TooLargeValue, 0), false)
	}
	if l.FitKey > 0 {
		try(fmt.Sprint("a key of ", l.FitKey, " bytes"), writes(1, 1, l.FitKey), true)
	}
	if l.TooLargeKey > 0 {
		// A small key first and the big one last: the small one must not
		// stay locked.
		ws := append(writes(1, 1, 0), writes(1, 1, l.TooLargeKey)...)
		ws[0].Key = "small"
		try(fmt.Sprint("a key of ", l.TooLargeKey, " bytes"), ws, false)
	}
}
