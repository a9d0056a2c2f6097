package txn_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridiantime/meridian/txn"
	"github.com/meridiantime/meridian/txn/memory"
	"github.com/meridiantime/meridian/txn/txntest"
)

func openDB(t *testing.T, shards []txn.Store, epsNS int64, o txn.Options) (*txn.DB, *txntest.TrueClock) {
	t.Helper()
	c := txntest.NewTrueClock()
	o.Shards, o.Time = shards, txntest.NewNode(c, 0, epsNS)
	db, err := txn.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return db, c
}

func pending(shards []txn.Store) int {
	n := 0
	for _, s := range shards {
		n += s.(*memory.Store).Pending()
	}
	return n
}

// get reads key in a fresh snapshot.
func get(t *testing.T, db *txn.DB, key string) (string, bool) {
	t.Helper()
	var v []byte
	var ok bool
	err := db.View(context.Background(), func(tx *txn.Tx) error {
		var err error
		v, ok, err = tx.Get(key)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(v), ok
}

func TestOpenRejectsBadOptions(t *testing.T) {
	node := txntest.NewNode(txntest.NewTrueClock(), 0, 1000)
	for _, c := range []struct {
		o    txn.Options
		want string
	}{
		{txn.Options{Time: node}, "Options.Shards"},
		{txn.Options{Shards: []txn.Store{nil}, Time: node}, "Options.Shards[0]"},
		{txn.Options{Shards: memShards(1)}, "Options.Time"},
		{txn.Options{Shards: memShards(1), Time: node, LockLease: -time.Second}, "Options.LockLease: must be ≥ 0, got -1s"},
		{txn.Options{Shards: memShards(1), Time: node, MaxWrites: -3}, "Options.MaxWrites: must be ≥ 0, got -3"},
	} {
		if _, err := txn.Open(c.o); err == nil || !errors.Is(err, txn.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open: %v, want ErrInvalid naming %q", err, c.want)
		}
	}
}

// Reads see the snapshot plus the transaction's own writes; Scan merges
// the shards in key order, honours the limit and hides own deletes.
func TestReadYourWritesAndScanAcrossShards(t *testing.T) {
	shards := memShards(4)
	db, _ := openDB(t, shards, 1000, txn.Options{})
	ctx := context.Background()
	if err := db.Update(ctx, func(tx *txn.Tx) error {
		for i := range 20 {
			if err := tx.Put(fmt.Sprintf("k/%02d", i), []byte{byte(i)}); err != nil {
				return err
			}
		}
		return tx.Put("other", []byte("x"))
	}); err != nil {
		t.Fatal(err)
	}
	used := map[int]bool{}
	for i := range 20 {
		used[db.ShardOf(fmt.Sprintf("k/%02d", i))] = true
	}
	if len(used) < 3 {
		t.Fatalf("20 keys landed on %d of 4 shards", len(used))
	}
	err := db.Update(ctx, func(tx *txn.Tx) error {
		if err := tx.Delete("k/00"); err != nil {
			return err
		}
		if err := tx.Delete("k/02"); err != nil {
			return err
		}
		if err := tx.Put("k/015", []byte("new")); err != nil {
			return err
		}
		if v, ok, err := tx.Get("k/015"); err != nil || !ok || string(v) != "new" {
			return fmt.Errorf("own write: %q %v %v", v, ok, err)
		}
		if _, ok, err := tx.Get("k/00"); err != nil || ok {
			return fmt.Errorf("own delete still visible: %v %v", ok, err)
		}
		kvs, err := tx.Scan("k/", 4)
		if err != nil {
			return err
		}
		var got []string
		for _, kv := range kvs {
			got = append(got, kv.Key)
		}
		if want := "k/01 k/015 k/03 k/04"; strings.Join(got, " ") != want {
			return fmt.Errorf("scan: %v, want %s", got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = db.View(ctx, func(tx *txn.Tx) error {
		kvs, err := tx.Scan("k/", 0)
		if err != nil {
			return err
		}
		if len(kvs) != 19 || kvs[0].Key != "k/01" || kvs[1].Key != "k/015" {
			return fmt.Errorf("after commit: %d pairs starting %v", len(kvs), kvs[:2])
		}
		return tx.Put("x", nil)
	})
	if !errors.Is(err, txn.ErrReadOnly) {
		t.Fatalf("Put in View: %v, want ErrReadOnly", err)
	}
}

// Bad input gets a clear error naming the problem and the limit, and
// nothing of the transaction becomes visible, even when the function
// ignores the error of the bad write.
func TestBadInputNoPartialCommit(t *testing.T) {
	shards := []txn.Store{memory.New(memory.Options{}), memory.New(memory.Options{Limits: txn.Limits{MaxValueBytes: 100, MaxPrepareKeys: 8}})}
	db, _ := openDB(t, shards, 1000, txn.Options{MaxKeyBytes: 64, MaxWrites: 5})
	ctx := context.Background()
	big := strings.Repeat("v", 101)
	cases := []struct {
		name string
		fn   func(tx *txn.Tx) error
		is   error
		want string
	}{
		{"empty key", func(tx *txn.Tx) error { return tx.Put("", []byte("x")) }, txn.ErrInvalid, "empty key"},
		{"oversized key", func(tx *txn.Tx) error { return tx.Put(strings.Repeat("k", 65), nil) }, txn.ErrTooLarge, "is 65 bytes, limit 64"},
		{"value over the store's limit", func(tx *txn.Tx) error { return tx.Put("big", []byte(big)) }, txn.ErrTooLarge, `value of key "big" is 101 bytes, limit 100`},
		{"too many writes", func(tx *txn.Tx) error {
			for i := range 6 {
				if err := tx.Put(fmt.Sprintf("w%d", i), nil); err != nil {
					return err
				}
			}
			return nil
		}, txn.ErrTooLarge, "more than 5 keys written"},
		{"error ignored", func(tx *txn.Tx) error {
			_ = tx.Put("big", []byte(big))
			return nil
		}, txn.ErrTooLarge, "101 bytes"},
	}
	for _, c := range cases {
		err := db.Update(ctx, func(tx *txn.Tx) error {
			if err := tx.Put("marker-"+c.name, []byte("1")); err != nil {
				return err
			}
			return c.fn(tx)
		})
		if !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %v containing %q", c.name, err, c.is, c.want)
		}
		if _, ok := get(t, db, "marker-"+c.name); ok {
			t.Errorf("%s: a write of the failed transaction is visible", c.name)
		}
	}
	// The store's per-prepare limit (8 keys on shard 1): reads count too.
	err := db.Update(ctx, func(tx *txn.Tx) error {
		for i := 0; ; i++ {
			k := fmt.Sprintf("r%d", i)
			if db.ShardOf(k) != 1 {
				continue
			}
			if _, _, err := tx.Get(k); err != nil {
				return err
			}
			if i > 200 {
				break
			}
		}
		return tx.Put("marker-prepare", []byte("1"))
	})
	if !errors.Is(err, txn.ErrTooLarge) || !strings.Contains(err.Error(), "store's limit is 8") {
		t.Errorf("prepare limit: %v", err)
	}
	if _, ok := get(t, db, "marker-prepare"); ok || pending(shards) != 0 {
		t.Errorf("prepare limit: partial commit (visible %v, %d pending)", ok, pending(shards))
	}
}

// Cancelled during commit wait (before the commit point): an error, every
// participant aborted, nothing visible. Cancelled right after the primary
// committed: the transaction is committed, Update says so, and every write
// is visible.
func TestContextCancelledMidCommit(t *testing.T) {
	shards := memShards(3)
	const eps = 250_000_000 // 250 ms: the commit wait would last ~500 ms
	db, _ := openDB(t, shards, eps, txn.Options{})
	keys := []string{"a", "b", "c", "d", "e", "f"}
	// Cancelled before prepare: refused, nothing left behind.
	dead, kill := context.WithCancel(context.Background())
	kill()
	err := db.Update(dead, func(tx *txn.Tx) error { return tx.Put("a", []byte("0")) })
	if !errors.Is(err, context.Canceled) || pending(shards) != 0 {
		t.Fatalf("cancelled before prepare: %v, %d pending", err, pending(shards))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var start time.Time
	// Cancel 20 ms into the commit wait (every participant has prepared).
	txn.SetTestHooks(db, func(txn.TxnID, txn.PrimaryRef, txn.Timestamp) error {
		start = time.Now()
		time.AfterFunc(20*time.Millisecond, cancel)
		return nil
	}, nil)
	err = db.Update(ctx, func(tx *txn.Tx) error {
		for _, k := range keys {
			if err := tx.Put(k, []byte("1")); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "nothing committed") {
		t.Fatalf("cancelled in commit wait: %v", err)
	}
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Errorf("cancel took %v to return", d)
	}
	if n := pending(shards); n != 0 {
		t.Fatalf("%d prepared transactions left after the abort", n)
	}
	for _, k := range keys {
		if _, ok := get(t, db, k); ok {
			t.Fatalf("key %s visible after a cancelled commit", k)
		}
	}

	db, _ = openDB(t, shards, 1_000_000, txn.Options{})
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	txn.SetTestHooks(db, nil, func(txn.TxnID, txn.PrimaryRef, txn.Timestamp) error { cancel2(); return nil })
	ts, err := db.UpdateTS(ctx2, func(tx *txn.Tx) error {
		for _, k := range keys {
			if err := tx.Put(k, []byte("2")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || ts == 0 || ctx2.Err() == nil {
		t.Fatalf("cancelled after the commit point: ts %d, %v (ctx %v)", ts, err, ctx2.Err())
	}
	for _, k := range keys {
		if v, ok := get(t, db, k); !ok || v != "2" {
			t.Fatalf("key %s = %q %v after a commit whose caller cancelled", k, v, ok)
		}
	}
}

// Conflicting writers: the loser retries; with a retry budget of one
// attempt it gets the typed error, which still matches ErrConflict.
func TestConflictRetryBudget(t *testing.T) {
	shards := memShards(2)
	db, _ := openDB(t, shards, 1000, txn.Options{MaxAttempts: 1})
	ctx := context.Background()
	inner := 0
	err := db.Update(ctx, func(tx *txn.Tx) error {
		if _, _, err := tx.Get("hot"); err != nil {
			return err
		}
		if inner == 0 { // a concurrent writer commits after our read
			inner++
			if err := db.Update(ctx, func(tx2 *txn.Tx) error { return tx2.Put("hot", []byte("them")) }); err != nil {
				return err
			}
		}
		return tx.Put("hot", []byte("us"))
	})
	var re *txn.RetryError
	if !errors.As(err, &re) || !errors.Is(err, txn.ErrConflict) || re.Attempts != 1 {
		t.Fatalf("%v, want RetryError after 1 attempt matching ErrConflict", err)
	}
	if v, _ := get(t, db, "hot"); v != "them" {
		t.Fatalf("hot = %q", v)
	}
	db2, _ := openDB(t, shards, 1000, txn.Options{MaxAttempts: 3})
	inner, runs := 0, 0
	err = db2.Update(ctx, func(tx *txn.Tx) error {
		runs++
		if _, _, err := tx.Get("hot"); err != nil {
			return err
		}
		if inner == 0 {
			inner++
			if err := db2.Update(ctx, func(tx2 *txn.Tx) error { return tx2.Put("hot", []byte("them2")) }); err != nil {
				return err
			}
		}
		return tx.Put("hot", []byte("us"))
	})
	if err != nil || runs != 2 {
		t.Fatalf("retry: %v after %d runs", err, runs)
	}
	if v, _ := get(t, db, "hot"); v != "us" {
		t.Fatalf("hot = %q after the retried commit", v)
	}
}

// commitWaitHolds commits n transactions from a node centred on true time
// and counts those acknowledged before true time passed their timestamp.
func commitWaitHolds(t *testing.T, skip bool, spin time.Duration) (early int) {
	t.Helper()
	c := txntest.NewTrueClock()
	db, err := txn.Open(txn.Options{Shards: memShards(2), Time: txntest.NewNode(c, 0, 300_000),
		UnsafeSkipCommitWait: skip, CommitWaitSpin: spin})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		ts, err := db.UpdateTS(context.Background(), func(tx *txn.Tx) error {
			return tx.Put(fmt.Sprint("k", i), []byte("v"))
		})
		if err != nil {
			t.Fatal(err)
		}
		if c.NowNS() <= ts {
			early++
		}
	}
	return early
}

// Update returns only after true time (the harness clock) has passed the
// commit timestamp, with the spinning tail and with timers only.
func TestCommitAcknowledgedAfterItsTimestamp(t *testing.T) {
	for _, spin := range []time.Duration{0, -1} {
		if early := commitWaitHolds(t, false, spin); early != 0 {
			t.Errorf("spin %v: %d of 30 commits acknowledged before true time reached their timestamp", spin, early)
		}
	}
}

// Negative control: without commit wait, commits at TrueTime's latest are
// acknowledged while their timestamp is still ahead of true time.
func TestNegativeControlCommitAcknowledgedEarly(t *testing.T) {
	if early := commitWaitHolds(t, true, 0); early == 0 {
		t.Fatal("no commit was acknowledged early with commit wait off")
	}
}

// The commit-wait histogram counts one observation per committed
// read-write transaction; ShardOf is FNV-1a 64 of the key mod the shard count (golden values computed independently
// values: changing it would strand every stored key).
func TestMetricsAndStableSharding(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := txntest.NewTrueClock()
	db, err := txn.Open(txn.Options{Shards: memShards(3), Time: txntest.NewNode(c, 0, 20_000), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := db.Update(context.Background(), func(tx *txn.Tx) error { return tx.Put(fmt.Sprint(i), nil) }); err != nil {
			t.Fatal(err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		if h := m.GetHistogram(); h != nil {
			got[mf.GetName()] = float64(h.GetSampleCount())
			if h.GetSampleSum() < 3*20e-6 {
				t.Errorf("3 commit waits at ε = 20 µs summed to %v s, want ≥ 3ε (each waits ~2ε less the time since its timestamp was read)", h.GetSampleSum())
			}
		} else {
			got[mf.GetName()] = m.GetCounter().GetValue()
		}
	}
	if got["meridian_txn_commit_wait_seconds"] != 3 || got["meridian_txn_commits_total"] != 3 {
		t.Fatalf("metrics %v", got)
	}
	for key, want := range map[string]int{"a": 1, "account/001": 2, "reg/0": 2, "zz": 2} {
		if s := db.ShardOf(key); s != want {
			t.Errorf("ShardOf(%q) = %d, golden %d", key, s, want)
		}
	}
}
