package memory_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"pgregory.net/rapid"

	"github.com/meridiantime/meridian/txn"
	"github.com/meridiantime/meridian/txn/check"
	"github.com/meridiantime/meridian/txn/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var bg = context.Background()

func prep(t *testing.T, s *memory.Store, id string, readTS txn.Timestamp, reads, scans []string, writes ...string) txn.Timestamp {
	t.Helper()
	ts, err := s.Prepare(bg, req(id, readTS, reads, scans, writes...))
	if err != nil {
		t.Fatalf("prepare %s: %v", id, err)
	}
	return ts
}

func req(id string, readTS txn.Timestamp, reads, scans []string, writes ...string) txn.PrepareRequest {
	r := txn.PrepareRequest{Txn: txn.TxnID(id), Primary: txn.PrimaryRef{Shard: 0, Key: "p"}, IsPrimary: true,
		ReadTS: readTS, Reads: reads, Scans: scans, Lease: time.Hour}
	for _, w := range writes {
		r.Writes = append(r.Writes, txn.Write{Key: w, Value: []byte(id)})
	}
	return r
}

// readFloor asserts the first timestamp rule: a prepare after a read at ts
// returns more than ts.
func readFloor(s *memory.Store) error {
	if _, _, err := s.Get(bg, "k", 1_000_000); err != nil {
		return err
	}
	ts, err := s.Prepare(bg, req("w", 0, nil, nil, "k"))
	if err != nil {
		return err
	}
	if ts <= 1_000_000 {
		return fmt.Errorf("prepare after a read at 1000000 returned %d", ts)
	}
	return nil
}

func TestPrepareAboveEveryRead(t *testing.T) {
	if err := readFloor(memory.New(memory.Options{})); err != nil {
		t.Fatal(err)
	}
}

// Negative control: a store that does not record read timestamps fails it.
func TestNegativeControlPrepareAboveEveryRead(t *testing.T) {
	s := memory.New(memory.Options{})
	memory.SetUnsafe(s, true, false)
	if err := readFloor(s); err == nil {
		t.Fatal("a store without read recording passed")
	}
}

func TestPrepareAboveEveryCommitAndPrepare(t *testing.T) {
	s := memory.New(memory.Options{})
	p1 := prep(t, s, "a", 0, nil, nil, "x")
	if err := s.Commit(bg, "a", 5000); err != nil {
		t.Fatal(err)
	}
	p2 := prep(t, s, "b", 0, nil, nil, "y")
	p3 := prep(t, s, "c", 0, nil, nil, "z")
	if !(p1 < 5000 && p2 > 5000 && p3 > p2) {
		t.Fatalf("prepare timestamps %d, (commit 5000), %d, %d", p1, p2, p3)
	}
	if err := s.Commit(bg, "b", p2-1); !errors.Is(err, txn.ErrInvalid) {
		t.Fatalf("commit below the prepare timestamp: %v", err)
	}
}

// A read at ts waits for a pending lock prepared at ≤ ts and then sees the
// commit; a read below the prepare timestamp does not wait.
func TestReadWaitsForSafeTime(t *testing.T) {
	s := memory.New(memory.Options{})
	pts := prep(t, s, "a", 0, nil, nil, "k")
	if v, ok, err := s.Get(bg, "k", pts-1); err != nil || ok {
		t.Fatalf("read below the lock: %q %v %v", v, ok, err)
	}
	var got atomic.Value
	done := make(chan struct{})
	go func() {
		defer close(done)
		v, ok, err := s.Get(bg, "k", pts+10)
		got.Store(fmt.Sprintf("%s %v %v", v, ok, err))
	}()
	select {
	case <-done:
		t.Fatalf("read at %d returned %v while a lock prepared at %d was pending", pts+10, got.Load(), pts)
	case <-time.After(50 * time.Millisecond):
	}
	if err := s.Commit(bg, "a", pts+5); err != nil {
		t.Fatal(err)
	}
	<-done
	if g := got.Load(); g != "a true <nil>" {
		t.Fatalf("read after commit: %v", g)
	}
	// Committed above the read: invisible, and no wait.
	p2 := prep(t, s, "b", pts+5, nil, nil, "k")
	if err := s.Commit(bg, "b", p2+100); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := s.Get(bg, "k", p2+99); string(v) != "a" {
		t.Fatalf("read below a commit saw %q", v)
	}
}

// fakeResolver answers st for expired locks and live (Pending unless set)
// for live ones, as the DB does from a primary's record.
type fakeResolver struct {
	mu       sync.Mutex
	st, live txn.Status
	calls    []txn.LockInfo
}

func (f *fakeResolver) Resolve(_ context.Context, l txn.LockInfo) (txn.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, l)
	if !l.Expired {
		return f.live, nil
	}
	return f.st, nil
}

func (f *fakeResolver) expiredCalls() (n int, last txn.LockInfo) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.calls {
		if c.Expired {
			n, last = n+1, c
		}
	}
	return n, last
}

// A lock whose lease is live but whose primary already committed (its
// coordinator died after the commit point) is rolled forward after
// AskAfter, not after the lease.
func TestLiveLockCommittedAtPrimaryRolledForward(t *testing.T) {
	s := memory.New(memory.Options{AskAfter: 5 * time.Millisecond})
	r := &fakeResolver{}
	s.SetResolver(r)
	pts := prep(t, s, "gone", 0, nil, nil, "k") // lease: an hour
	r.mu.Lock()
	r.live = txn.Status{State: txn.Committed, TS: pts + 1}
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	v, ok, err := s.Get(ctx, "k", pts+5)
	if err != nil || !ok || string(v) != "gone" || s.Pending() != 0 {
		t.Fatalf("%q %v %v, %d pending", v, ok, err, s.Pending())
	}
}

// An expired lock is settled through the resolver: rolled forward at the
// primary's commit timestamp, or rolled back.
func TestExpiredLockResolved(t *testing.T) {
	for _, st := range []txn.Status{{State: txn.Committed, TS: 0}, {State: txn.Aborted}} {
		var now atomic.Int64
		now.Store(time.Now().UnixNano())
		s := memory.New(memory.Options{Now: func() time.Time { return time.Unix(0, now.Load()) }})
		r := &fakeResolver{}
		s.SetResolver(r)
		rq := req("dead", 0, nil, nil, "k")
		rq.Lease = time.Second
		pts, err := s.Prepare(bg, rq)
		if err != nil {
			t.Fatal(err)
		}
		if st.State == txn.Committed {
			st.TS = pts + 3
		}
		r.st = st
		ctx, cancel := context.WithTimeout(bg, 30*time.Millisecond)
		_, _, err = s.Get(ctx, "k", pts+10)
		cancel()
		if n, _ := r.expiredCalls(); !errors.Is(err, context.DeadlineExceeded) || n != 0 {
			t.Fatalf("live lock: %v, %d resolver calls as expired", err, n)
		}
		now.Add(int64(2 * time.Second))
		v, ok, err := s.Get(bg, "k", pts+10)
		if n, last := r.expiredCalls(); err != nil || n != 1 || last.Txn != "dead" {
			t.Fatalf("expired lock: %v, calls %+v", err, r.calls)
		}
		if st.State == txn.Committed && (!ok || string(v) != "dead") || st.State == txn.Aborted && ok {
			t.Fatalf("resolved %v: read %q %v", st, v, ok)
		}
		if st.State == txn.Committed {
			if v, ok, _ := s.Get(bg, "k", pts+2); ok {
				t.Fatalf("rolled forward below its commit timestamp: %q", v)
			}
		}
		if s.Pending() != 0 {
			t.Fatal("lock left")
		}
	}
}

func TestStatusRecord(t *testing.T) {
	s := memory.New(memory.Options{})
	prep(t, s, "a", 0, nil, nil, "k")
	if st, _ := s.Status(bg, "a"); st.State != txn.Pending {
		t.Fatalf("prepared: %+v", st)
	}
	if err := s.Commit(bg, "a", 100); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.AbortIfPending(bg, "a"); st != (txn.Status{State: txn.Committed, TS: 100}) {
		t.Fatalf("AbortIfPending after commit: %+v", st)
	}
	if err := s.Commit(bg, "a", 100); err != nil {
		t.Fatalf("repeated commit: %v", err)
	}
	prep(t, s, "b", 100, nil, nil, "j")
	if st, _ := s.AbortIfPending(bg, "b"); st.State != txn.Aborted || s.Pending() != 0 {
		t.Fatalf("AbortIfPending: %+v, %d pending", st, s.Pending())
	}
	if err := s.Commit(bg, "b", 500); !errors.Is(err, txn.ErrAborted) {
		t.Fatalf("commit after abort: %v", err)
	}
	if st, _ := s.AbortIfPending(bg, "never"); st.State != txn.Aborted {
		t.Fatalf("unknown transaction: %+v", st)
	}
	if _, err := s.Prepare(bg, req("never", 0, nil, nil, "q")); !errors.Is(err, txn.ErrAborted) {
		t.Fatalf("prepare after the record said aborted: %v", err)
	}
	if err := s.Abort(bg, "a"); !errors.Is(err, txn.ErrInvalid) {
		t.Fatalf("abort after commit: %v", err)
	}
}

func TestPrepareConflicts(t *testing.T) {
	s := memory.New(memory.Options{})
	prep(t, s, "w", 0, nil, nil, "k")
	if err := s.Commit(bg, "w", 100); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		r    txn.PrepareRequest
	}{
		{"stale read", req("a", 50, []string{"k"}, nil)},
		{"stale write", req("b", 50, nil, nil, "k")},
		{"phantom under a scanned prefix", req("c", 50, nil, []string{"k"})},
	} {
		if _, err := s.Prepare(bg, c.r); !errors.Is(err, txn.ErrConflict) || !strings.Contains(err.Error(), `"k"`) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	prep(t, s, "r", 200, []string{"k"}, []string{"p/"}, "other")
	for _, c := range []struct {
		name string
		r    txn.PrepareRequest
	}{
		{"write of a read key", req("d", 300, nil, nil, "k")},
		{"write under a scanned prefix", req("e", 300, nil, nil, "p/new")},
		{"read of a locked key", req("f", 300, []string{"other"}, nil)},
	} {
		if _, err := s.Prepare(bg, c.r); !errors.Is(err, txn.ErrConflict) || !strings.Contains(err.Error(), "locked by r") {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if err := s.Commit(bg, "r", 400); err != nil {
		t.Fatal(err)
	}
	prep(t, s, "g", 400, nil, nil, "k", "p/new")
}

// readLockHistory: T1 reads k at its snapshot and prepares (writing j);
// T2 then writes k and commits below T1's commit timestamp. Without read
// protection T1's read is stale at its commit timestamp, which the
// checker's replay shows.
func readLockHistory(s *memory.Store) (check.Result, error) {
	prep := func(id string, readTS txn.Timestamp, reads []string, writes ...string) (txn.Timestamp, error) {
		return s.Prepare(bg, req(id, readTS, reads, nil, writes...))
	}
	if _, err := prep("init", 0, nil, "k"); err != nil {
		return check.Result{}, err
	}
	if err := s.Commit(bg, "init", 10); err != nil {
		return check.Result{}, err
	}
	v, _, err := s.Get(bg, "k", 20)
	if err != nil {
		return check.Result{}, err
	}
	p1, err := prep("t1", 20, []string{"k"}, "j")
	if err != nil {
		return check.Result{}, err
	}
	p2, err := prep("t2", 20, nil, "k")
	if err != nil {
		return check.Result{}, nil // refused: T1's read is protected
	}
	if err := s.Commit(bg, "t2", p2); err != nil {
		return check.Result{}, err
	}
	s1 := max(p1, p2) + 10
	if err := s.Commit(bg, "t1", s1); err != nil {
		return check.Result{}, err
	}
	return check.Check([]check.Txn{
		{ID: 0, TS: 10, Ops: []check.Op{{Kind: check.Put, Key: "k", Value: []byte("init")}}},
		{ID: 1, TS: s1, Ops: []check.Op{{Kind: check.Get, Key: "k", Value: v, Found: true}, {Kind: check.Put, Key: "j", Value: []byte("t1")}}},
		{ID: 2, TS: p2, Ops: []check.Op{{Kind: check.Put, Key: "k", Value: []byte("t2")}}},
	}), nil
}

func TestPreparedReadsProtected(t *testing.T) {
	r, err := readLockHistory(memory.New(memory.Options{}))
	if err != nil || !r.OK() {
		t.Fatalf("%v %v", r, err)
	}
}

func TestNegativeControlPreparedReadsUnprotected(t *testing.T) {
	s := memory.New(memory.Options{})
	memory.SetUnsafe(s, false, true)
	r, err := readLockHistory(s)
	if err != nil || r.Serializability == 0 {
		t.Fatalf("unprotected reads went unnoticed: %v %v", r, err)
	}
}

// Property: after any sequence of committed writes and deletes, Get and
// Scan at any timestamp return exactly what a naive list of versions says.
func TestSnapshotReadsMatchModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		s := memory.New(memory.Options{})
		type ver struct {
			ts  txn.Timestamp
			val string
			del bool
		}
		model := map[string][]ver{}
		keyGen := rapid.SampledFrom([]string{"a", "a/1", "a/2", "ab", "b", "b/x", "c"})
		var ts txn.Timestamp
		for i := range rapid.IntRange(1, 30).Draw(rt, "txns") {
			ks := rapid.SliceOfNDistinct(keyGen, 1, 3, func(k string) string { return k }).Draw(rt, "keys")
			id := fmt.Sprintf("t%d", i)
			r := txn.PrepareRequest{Txn: txn.TxnID(id), Primary: txn.PrimaryRef{Key: ks[0]}, IsPrimary: true, ReadTS: ts, Lease: time.Hour}
			for _, k := range ks {
				r.Writes = append(r.Writes, txn.Write{Key: k, Value: []byte(id + k), Delete: rapid.Bool().Draw(rt, "del")})
			}
			p, err := s.Prepare(bg, r)
			if err != nil {
				rt.Fatal(err)
			}
			ts = p + rapid.Int64Range(0, 5).Draw(rt, "gap")
			if err := s.Commit(bg, r.Txn, ts); err != nil {
				rt.Fatal(err)
			}
			for _, w := range r.Writes {
				model[w.Key] = append(model[w.Key], ver{ts, string(w.Value), w.Delete})
			}
		}
		at := func(k string, rts txn.Timestamp) (string, bool) {
			var v string
			var ok bool
			for _, x := range model[k] {
				if x.ts <= rts {
					v, ok = x.val, !x.del
					if x.del {
						v = ""
					}
				}
			}
			return v, ok
		}
		for range 20 {
			rts := rapid.Int64Range(0, ts+2).Draw(rt, "readTS")
			k := keyGen.Draw(rt, "get")
			v, ok, err := s.Get(bg, k, rts)
			wv, wok := at(k, rts)
			if err != nil || ok != wok || string(v) != wv {
				rt.Fatalf("get %s at %d: %q %v %v, model %q %v", k, rts, v, ok, err, wv, wok)
			}
			pfx := rapid.SampledFrom([]string{"", "a", "a/", "b", "z"}).Draw(rt, "prefix")
			lim := rapid.IntRange(0, 4).Draw(rt, "limit")
			kvs, err := s.Scan(bg, pfx, lim, rts)
			if err != nil {
				rt.Fatal(err)
			}
			var want []string
			keys := make([]string, 0, len(model))
			for k := range model {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if v, ok := at(k, rts); ok && strings.HasPrefix(k, pfx) && (lim == 0 || len(want) < lim) {
					want = append(want, k+"="+v)
				}
			}
			var got []string
			for _, kv := range kvs {
				got = append(got, kv.Key+"="+string(kv.Value))
			}
			if !slices.Equal(got, want) {
				rt.Fatalf("scan %q limit %d at %d: %v, model %v", pfx, lim, rts, got, want)
			}
		}
	})
}

func TestBadRequests(t *testing.T) {
	s := memory.New(memory.Options{Limits: txn.Limits{MaxKeyBytes: 4, MaxValueBytes: 4, MaxPrepareKeys: 2}})
	for _, c := range []struct {
		r    txn.PrepareRequest
		is   error
		want string
	}{
		{req("", 0, nil, nil, "k"), txn.ErrInvalid, "empty transaction id"},
		{req("a", 0, nil, nil, ""), txn.ErrInvalid, "empty key"},
		{req("a", 0, nil, nil, "kkkkk"), txn.ErrTooLarge, "key of 5 bytes, limit 4"},
		{req("a", 0, []string{"x", "y"}, nil, "k"), txn.ErrTooLarge, "3 keys, limit 2"},
		{func() txn.PrepareRequest { r := req("a", 0, nil, nil, "k"); r.Lease = 0; return r }(), txn.ErrInvalid, "lease must be > 0"},
		{func() txn.PrepareRequest {
			r := req("a", 0, nil, nil, "k")
			r.Writes[0].Value = []byte("12345")
			return r
		}(), txn.ErrTooLarge, `value of key "k" is 5 bytes`},
	} {
		if _, err := s.Prepare(bg, c.r); !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %v with %q", c.r, err, c.is, c.want)
		}
	}
	if s.Pending() != 0 {
		t.Fatal("a refused prepare left locks")
	}
}
