package txn_test

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/meridiantime/meridian/txn"
	"github.com/meridiantime/meridian/txn/check"
	"github.com/meridiantime/meridian/txn/txntest"
)

var errCrash = errors.New("test: coordinator died here")

// lyingStore installs a resolver that rolls every expired lock back, the
// bug a resolver that ignores the primary's record would have.
type lyingStore struct{ txn.Store }

type abortEverything struct{}

func (abortEverything) Resolve(_ context.Context, l txn.LockInfo) (txn.Status, error) {
	if !l.Expired {
		return txn.Status{}, nil
	}
	return txn.Status{State: txn.Aborted}, nil
}

func (l lyingStore) SetResolver(txn.Resolver) { l.Store.SetResolver(abortEverything{}) }

type crashOutcome struct {
	result     check.Result
	audits     int64
	badAudits  int64
	firstBad   string
	st1, st2   txn.Status
	ts2        txn.Timestamp
	pendingEnd int
}

// crashScenario runs bank transfers from a survivor node while a second
// node's coordinator dies twice: once after every participant prepared
// (the transfer must vanish: its locks are aborted from the primary's
// record after the lease) and, restarted as a new DB over the same stores,
// once right after the commit point (the transfer must appear whole: its
// secondary is rolled forward). A final audit after the lease reads every
// account, resolving whatever is left.
func crashScenario(t *testing.T, lie bool) crashOutcome {
	mem := memShards(3)
	shards := mem
	if lie {
		shards = make([]txn.Store, len(mem))
		for i := range mem {
			shards[i] = lyingStore{mem[i]}
		}
	}
	const lease = 150 * time.Millisecond
	const eps = 100_000
	clk := txntest.NewTrueClock()
	rec := txntest.NewRecorder(clk)
	bank := &txntest.Bank{Accounts: 12, Initial: 1000, AuditEvery: 3}
	open := func(off int64) *txn.DB {
		db, err := txn.Open(txn.Options{Shards: shards, Time: txntest.NewNode(clk, off, eps), LockLease: lease, MaxAttempts: 100})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	survivor := open(-eps / 2)
	if err := bank.Setup(ctx, survivor, rec); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	errs := make(chan error, 2)
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(w), 7))
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := bank.Step(ctx, survivor, rec, 10+w, rnd); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	// Two accounts on different shards, so the crashed transfers have a
	// secondary.
	from, to := -1, -1
	for i := 1; i < bank.Accounts && to < 0; i++ {
		if from < 0 {
			from = 0
		}
		if survivor.ShardOf(bank.Key(i)) != survivor.ShardOf(bank.Key(from)) {
			to = i
		}
	}
	transfer := func(db *txn.DB) (txn.Timestamp, []check.Op, int64, error) {
		start := clk.NowNS()
		ts, ops, err := rec.Update(ctx, db, 1, func(tx *txntest.Tx) error {
			fv, _, err := tx.Get(bank.Key(from))
			if err != nil {
				return err
			}
			tv, _, err := tx.Get(bank.Key(to))
			if err != nil {
				return err
			}
			f, _ := strconv.ParseInt(string(fv), 10, 64)
			g, _ := strconv.ParseInt(string(tv), 10, 64)
			if err := tx.Put(bank.Key(from), []byte(strconv.FormatInt(f-1, 10))); err != nil {
				return err
			}
			return tx.Put(bank.Key(to), []byte(strconv.FormatInt(g+1, 10)))
		})
		return ts, ops, start, err
	}
	rnd := rand.New(rand.NewPCG(3, 3))
	some := func(db *txn.DB, n int) {
		for range n {
			if err := bank.Transfer(ctx, db, rec, 2, rnd); err != nil {
				t.Fatal(err)
			}
		}
	}

	a := open(eps / 2)
	some(a, 5)
	var id1, id2 txn.TxnID
	var p1, p2 txn.PrimaryRef
	txn.SetTestHooks(a, func(id txn.TxnID, p txn.PrimaryRef, _ txn.Timestamp) error {
		id1, p1 = id, p
		return errCrash
	}, nil)
	if _, _, _, err := transfer(a); !errors.Is(err, errCrash) {
		t.Fatalf("crash after prepare: %v", err)
	}

	a2 := open(eps / 2) // the client restarted: a new coordinator over the same stores
	some(a2, 5)
	var ts2 txn.Timestamp
	txn.SetTestHooks(a2, nil, func(id txn.TxnID, p txn.PrimaryRef, ts txn.Timestamp) error {
		id2, p2, ts2 = id, p, ts
		return errCrash
	})
	_, ops2, start2, err := transfer(a2)
	if !errors.Is(err, errCrash) {
		t.Fatalf("crash after the commit point: %v", err)
	}
	// Committed but never acknowledged: it constrains nobody in real time.
	rec.Add(check.Txn{Client: 1, Start: start2, Ack: math.MaxInt64, TS: ts2, Ops: ops2})
	txn.SetTestHooks(a2, nil, nil)
	some(a2, 5)

	time.Sleep(lease + 20*time.Millisecond)
	close(stop)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	final := open(0)
	if err := bank.Audit(ctx, final, rec, 3); err != nil {
		t.Fatal(err)
	}
	var o crashOutcome
	o.result = check.Check(rec.History())
	o.audits, o.badAudits, o.firstBad = bank.Audits()
	o.st1, _ = mem[p1.Shard].Status(ctx, id1)
	o.st2, _ = mem[p2.Shard].Status(ctx, id2)
	o.ts2 = ts2
	o.pendingEnd = pending(mem)
	return o
}

// Coordinator killed between prepare and commit, a client restarted, a
// coordinator killed after the commit point: no lost or duplicated
// commits (the replay of the history reproduces every read, the final
// audit included), the bank total constant in every snapshot, both
// crashed transactions resolved as their primary's record says.
func TestCrashCoordinatorRestartBank(t *testing.T) {
	o := crashScenario(t, false)
	if !o.result.OK() {
		t.Fatalf("%v", o.result)
	}
	if o.badAudits != 0 {
		t.Fatalf("%d of %d audits wrong: %s", o.badAudits, o.audits, o.firstBad)
	}
	if o.st1.State != txn.Aborted {
		t.Errorf("transaction killed after prepare: record %+v, want aborted", o.st1)
	}
	if o.st2.State != txn.Committed || o.st2.TS != o.ts2 {
		t.Errorf("transaction killed after the commit point: record %+v, want committed at %d", o.st2, o.ts2)
	}
	if o.pendingEnd != 0 {
		t.Errorf("%d prepared transactions left", o.pendingEnd)
	}
	t.Logf("%v; %d audits", o.result, o.audits)
}

// Negative control: a resolver that rolls every expired lock back (the
// primary's record ignored) loses the secondary half of the transfer
// committed before its coordinator died: the audits and the replay see it.
func TestNegativeControlCrashResolverIgnoresRecord(t *testing.T) {
	o := crashScenario(t, true)
	if o.badAudits == 0 || o.result.OK() {
		t.Fatalf("a lying resolver went unnoticed: %d bad audits, %v", o.badAudits, o.result)
	}
	t.Logf("detected: %d of %d audits wrong (%s); %v", o.badAudits, o.audits, o.firstBad, o.result.Serializability)
}

func newRand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano())))
}

// A coordinator that dies right after the commit point leaves its
// secondaries locked; a reader gets the committed values from the
// primary's record long before the 5 s lease ends. One that dies before
// it leaves nothing visible once the lease (here 200 ms) has ended.
func TestCrashedCommitRolledForwardBeforeLease(t *testing.T) {
	shards := memShards(2)
	db, _ := openDB(t, shards, 10_000, txn.Options{})
	k1, k2 := twoShardKeys(db)
	txn.SetTestHooks(db, nil, func(txn.TxnID, txn.PrimaryRef, txn.Timestamp) error { return errCrash })
	if err := db.Update(context.Background(), func(tx *txn.Tx) error {
		if err := tx.Put(k1, []byte("1")); err != nil {
			return err
		}
		return tx.Put(k2, []byte("2"))
	}); !errors.Is(err, errCrash) {
		t.Fatal(err)
	}
	if pending(shards) != 1 {
		t.Fatalf("%d prepared transactions, want the secondary's", pending(shards))
	}
	start := time.Now()
	reader, _ := openDB(t, shards, 10_000, txn.Options{})
	if v, ok := get(t, reader, k2); !ok || v != "2" {
		t.Fatalf("secondary %s = %q %v", k2, v, ok)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("roll-forward took %v: the reader waited for the lease", d)
	}
	if pending(shards) != 0 {
		t.Fatal("lock left after roll-forward")
	}

	db2, _ := openDB(t, shards, 10_000, txn.Options{LockLease: 200 * time.Millisecond})
	txn.SetTestHooks(db2, func(txn.TxnID, txn.PrimaryRef, txn.Timestamp) error { return errCrash }, nil)
	if err := db2.Update(context.Background(), func(tx *txn.Tx) error {
		if err := tx.Put(k1, []byte("lost")); err != nil {
			return err
		}
		return tx.Put(k2, []byte("lost"))
	}); !errors.Is(err, errCrash) {
		t.Fatal(err)
	}
	if v1, _ := get(t, reader, k1); v1 != "1" {
		t.Fatalf("%s = %q after the lease of a transaction that died before its commit point", k1, v1)
	}
	if v2, _ := get(t, reader, k2); v2 != "2" {
		t.Fatalf("%s = %q", k2, v2)
	}
	if pending(shards) != 0 {
		t.Fatal("locks left after the abort")
	}
}

// flakyStore loses the answers of Commit (after applying it, or instead
// of it) and, if statusDown, of Status too.
type flakyStore struct {
	txn.Store
	apply, statusDown bool
}

var errLost = errors.New("test: connection lost")

func (f *flakyStore) Commit(ctx context.Context, id txn.TxnID, ts txn.Timestamp) error {
	if f.apply {
		if err := f.Store.Commit(ctx, id, ts); err != nil {
			return err
		}
	}
	return errLost
}

func (f *flakyStore) Status(ctx context.Context, id txn.TxnID) (txn.Status, error) {
	if f.statusDown {
		return txn.Status{}, errLost
	}
	return f.Store.Status(ctx, id)
}

// A primary whose commit answer is lost: if its record says committed,
// Update succeeds; if the record cannot be read either, Update reports
// ErrCommitUnknown and does not run the function again.
func TestCommitAnswerLost(t *testing.T) {
	for _, c := range []struct {
		apply, statusDown bool
	}{{true, false}, {false, true}} {
		mem := memShards(1)
		f := &flakyStore{Store: mem[0], apply: c.apply, statusDown: c.statusDown}
		db, _ := openDB(t, []txn.Store{f}, 10_000, txn.Options{LockLease: 100 * time.Millisecond})
		runs := 0
		err := db.Update(context.Background(), func(tx *txn.Tx) error {
			runs++
			return tx.Put("k", []byte("v"))
		})
		f.apply, f.statusDown = true, false
		switch {
		case c.apply && err != nil:
			t.Errorf("commit applied, answer lost, record committed: %v", err)
		case !c.apply && (!errors.Is(err, txn.ErrCommitUnknown) || !errors.Is(err, errLost) || runs != 1):
			t.Errorf("nothing known: %v after %d runs, want ErrCommitUnknown after 1", err, runs)
		}
		// Either way the record settles it: committed, or aborted by the
		// first reader after the lease.
		if v, ok := get(t, db, "k"); ok != c.apply || ok && v != "v" || pending(mem) != 0 {
			t.Errorf("apply %v: afterwards k = %q %v, %d pending", c.apply, v, ok, pending(mem))
		}
		t.Logf("apply %v: %v", c.apply, err)
	}
}
