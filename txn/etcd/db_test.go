package etcdstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/meridiantime/meridian/internal/etcdtest"
	"github.com/meridiantime/meridian/txn"
	"github.com/meridiantime/meridian/txn/check"
	"github.com/meridiantime/meridian/txn/storetest"
	"github.com/meridiantime/meridian/txn/txntest"
)

// The skew of the DB runs on etcd: ε = 100 ms, client nodes alternately
// +0.9ε and −0.9ε from true time, so one node's latest is ~180 ms ahead
// of another's. It must exceed what a commit's etcd round trips take (on
// three 3-member clusters in one process under -race on two cores, tens
// of ms; they delay the acknowledgement as commit wait would), so that
// without commit wait an acknowledged commit is regularly still in a slow
// node's future.
const etcdEpsNS = 100_000_000

// threeClusters starts three independent 3-member embedded clusters.
func threeClusters(t *testing.T) []*etcdtest.Cluster {
	t.Helper()
	var cs []*etcdtest.Cluster
	for range 3 {
		cs = append(cs, etcdtest.Embedded(t, 3))
	}
	return cs
}

// shardsOn opens one fresh, empty shard on each cluster (a key prefix of
// its own): a DB's three shards share nothing but the test process.
func shardsOn(t *testing.T, cs []*etcdtest.Cluster) []txn.Store {
	t.Helper()
	var shards []txn.Store
	for _, c := range cs {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s, err := Open(ctx, c.Endpoints, Options{Prefix: fmt.Sprintf("db%d/", shardSeq.Add(1))})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		shards = append(shards, s)
	}
	return shards
}

func runDB(t *testing.T, cs []*etcdtest.Cluster, w txntest.Workload, skip bool, steps int, seed uint64) *txntest.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	eps, workers := int64(etcdEpsNS), 3
	if long() {
		// The long run checks the positive case: a smaller ε (still
		// skewed ±0.9ε) and more workers keep 10⁵ transactions within
		// minutes.
		eps, workers = 5_000_000, 8
	}
	rep, err := txntest.Run(ctx, txntest.Config{Shards: shardsOn(t, cs), Nodes: 4, Workers: workers, Txns: steps,
		EpsNS: eps, OffsetFrac: 0.9, Opposite: true, SkipCommitWait: skip, Seed: seed, Workload: w})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Escapes != 0 {
		t.Fatalf("harness: %d TrueTime intervals did not contain true time", rep.Escapes)
	}
	return rep
}

func long() bool { return os.Getenv("MERIDIAN_TXN_LONG_TXNS") != "" }

func envSteps(def int) int {
	if v, err := strconv.Atoi(os.Getenv("MERIDIAN_TXN_LONG_TXNS")); err == nil && v > 0 {
		return v
	}
	return def
}

// The DB's workloads with skewed clocks over three independent 3-member
// etcd clusters (one set of clusters, a fresh shard on each per run).
func TestDBOnThreeClusters(t *testing.T) {
	cs := threeClusters(t)
	t.Run("BankCommitWait", func(t *testing.T) { bankCommitWait(t, cs) })
	if !long() {
		t.Run("ClientRestart", func(t *testing.T) {
			if msg := clientRestart(t, cs, false); msg != "" {
				t.Fatal(msg)
			}
		})
		// Negative control: the restarted client's resolver lies (says
		// Aborted for every transaction): the rolled-forward transfer is
		// rolled back on its secondary and the check above fires.
		t.Run("ClientRestartLyingResolverIsCaught", func(t *testing.T) {
			msg := clientRestart(t, cs, true)
			if msg == "" {
				t.Fatal("a resolver that aborts committed transactions went unnoticed")
			}
			t.Logf("caught: %s", msg)
		})
	}
	if long() {
		return // the long run checks the positive case only
	}
	t.Run("BankWithoutCommitWaitIsCaught", func(t *testing.T) { bankWithoutCommitWait(t, cs) })
	t.Run("RegistersPorcupine", func(t *testing.T) { registersPorcupine(t, cs) })
}

// Bank transfers and audits, commit wait on: neither checker rule breaks
// and every audit sees the constant total. MERIDIAN_TXN_LONG_TXNS=N runs N
// steps (make txn-long); the default is a short run.
func bankCommitWait(t *testing.T, cs []*etcdtest.Cluster) {
	bank := &txntest.Bank{Accounts: 40, Initial: 1000, AuditEvery: 4}
	steps := envSteps(300)
	rep := runDB(t, cs, bank, false, steps, 1)
	r := check.Check(rep.History)
	if !r.OK() {
		t.Fatalf("%v", r)
	}
	done, bad, first := bank.Audits()
	if bad != 0 || done == 0 {
		t.Fatalf("%d of %d audits wrong: %s", bad, done, first)
	}
	writers := 0
	for i := range rep.History {
		if rep.History[i].Writes() {
			writers++
		}
	}
	if writers < steps/2 {
		t.Fatalf("only %d committed transfers of %d steps: the run checked little", writers, steps)
	}
	t.Logf("%v; %d transfers, %d audits, %d gave up, %v (%.0f txn/s)", r, writers, done, rep.GaveUp, rep.Elapsed,
		float64(len(rep.History))/rep.Elapsed.Seconds())
}

// Negative control: the same skew and clusters with commit wait off: the
// external-consistency rule fires.
func bankWithoutCommitWait(t *testing.T, cs []*etcdtest.Cluster) {
	for round := range 6 {
		bank := &txntest.Bank{Accounts: 40, Initial: 1000, AuditEvery: 4}
		rep := runDB(t, cs, bank, true, 300, uint64(10+round))
		r := check.Check(rep.History)
		if r.ExternalConsistency > 0 {
			t.Logf("round %d: detected: %v, e.g. %v", round, r, r.Examples[0])
			return
		}
		t.Logf("round %d: %v", round, r)
	}
	t.Fatal("commit wait off with ±0.9ε skew on etcd: the checker found no violation in 6 rounds")
}

// Registers on etcd, small enough for porcupine: both checkers accept the
// history with commit wait; without it (negative control) both reject.
func registersPorcupine(t *testing.T, cs []*etcdtest.Cluster) {
	dir := filepath.Join(t.TempDir(), "porcupine")
	rep := runDB(t, cs, &txntest.Registers{N: 3}, false, 150, 2)
	if r := check.Check(rep.History); !r.OK() {
		t.Fatalf("commit wait on: %v", r)
	}
	res, err := check.Linearizable(rep.History, 30*time.Second, dir)
	if err != nil {
		t.Fatal(err)
	}
	if res.Result != porcupine.Ok {
		t.Fatalf("commit wait on: porcupine: %v (visualization %s)", res.Result, res.HTML)
	}
	t.Logf("commit wait on: %d transactions linearizable", len(rep.History))
	for round := range 6 {
		rep := runDB(t, cs, &txntest.Registers{N: 3}, true, 150, uint64(20+round))
		r := check.Check(rep.History)
		res, err := check.Linearizable(rep.History, 30*time.Second, dir)
		if err != nil {
			t.Fatal(err)
		}
		if r.ExternalConsistency > 0 && res.Result == porcupine.Illegal {
			t.Logf("commit wait off, round %d: both reject: %v; porcupine illegal (%s)", round, r, res.HTML)
			return
		}
		t.Logf("commit wait off, round %d: checker %v, porcupine %v", round, r, res.Result)
	}
	t.Fatal("commit wait off: the checkers did not both report violations in 6 rounds")
}

// reopen opens new handles (new etcd clients) on the shards' prefixes: a
// restarted client.
func reopen(t *testing.T, cs []*etcdtest.Cluster, prefixes []string) []txn.Store {
	t.Helper()
	var out []txn.Store
	for i, c := range cs {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s, err := Open(ctx, c.Endpoints, Options{Prefix: prefixes[i]})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		out = append(out, s)
	}
	return out
}

// A client dies twice mid-transfer — once between the prepares and any
// commit, once after committing only the primary — and a restarted client
// (new etcd clients, new DB) carries on: the first transfer is rolled back
// after its lease, the second rolled forward, every audit sees the
// constant total, and later transfers commit. It returns what went wrong
// ("" if nothing); lie gives the restarted DB a resolver that says Aborted
// for everything.
func clientRestart(t *testing.T, cs []*etcdtest.Cluster, lie bool) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var prefixes []string
	for range cs {
		prefixes = append(prefixes, fmt.Sprintf("restart%d/", shardSeq.Add(1)))
	}
	node := txntest.NewNode(txntest.NewTrueClock(), 0, 1_000_000)
	open := func(shards []txn.Store) *txn.DB {
		db, err := txn.Open(txn.Options{Shards: shards, Time: node, LockLease: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	first := reopen(t, cs, prefixes)
	db := open(first)
	bank := &txntest.Bank{Accounts: 12, Initial: 100}
	rec := txntest.NewRecorder(txntest.NewTrueClock())
	if err := bank.Setup(ctx, db, rec); err != nil {
		t.Fatal(err)
	}
	// Two accounts on different shards.
	a, b := bank.Key(0), ""
	for i := 1; i < bank.Accounts; i++ {
		if db.ShardOf(bank.Key(i)) != db.ShardOf(a) {
			b = bank.Key(i)
			break
		}
	}
	// The dying coordinator's part of a transfer of amt from a to b, read
	// at a fresh snapshot, prepared on both shards (a's is the primary).
	crashTransfer := func(amt int, commitPrimary bool) {
		iv, err := node.Now(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r := iv.LatestNS
		bal := map[string]int{}
		for _, k := range []string{a, b} {
			v, ok, err := first[db.ShardOf(k)].Get(ctx, k, r)
			if err != nil || !ok {
				t.Fatalf("read %s: %v %v", k, ok, err)
			}
			bal[k], _ = strconv.Atoi(string(v))
		}
		id := txn.TxnID(fmt.Sprintf("%032x", shardSeq.Add(1)))
		prim := txn.PrimaryRef{Shard: db.ShardOf(a), Key: a}
		var pts int64
		for _, k := range []string{a, b} {
			v := bal[k] + amt
			if k == a {
				v = bal[k] - amt
			}
			p, err := first[db.ShardOf(k)].Prepare(ctx, txn.PrepareRequest{Txn: id, Primary: prim, IsPrimary: k == a, ReadTS: r,
				Reads: []string{k}, Writes: []txn.Write{{Key: k, Value: []byte(strconv.Itoa(v))}}, Lease: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			pts = max(pts, p)
		}
		if commitPrimary {
			if err := first[db.ShardOf(a)].Commit(ctx, id, pts); err != nil {
				t.Fatal(err)
			}
		}
	}
	crashTransfer(7, false)
	for _, s := range first {
		_ = s.Close() // the client dies
	}
	second := reopen(t, cs, prefixes)
	// The restarted coordinator resolves what it meets from the
	// primaries' records, as a DB would.
	res := &storetest.Resolver{Shards: map[int]txn.Store{}}
	for i, s := range second {
		res.Shards[i] = s
		s.SetResolver(res)
	}
	crashTransfer2 := func() {
		first = second
		crashTransfer(5, true)
	}
	crashTransfer2() // reads wait for the first one's lease, then it dies again
	restarted := reopen(t, cs, prefixes)
	if lie {
		for i := range restarted {
			restarted[i] = lyingStore{restarted[i]}
		}
	}
	db2 := open(restarted)
	balances := func() map[string]int {
		out := map[string]int{}
		err := db2.View(ctx, func(tx *txn.Tx) error {
			for i := range bank.Accounts {
				v, ok, err := tx.Get(bank.Key(i))
				if err != nil || !ok {
					return fmt.Errorf("%s: %v %v", bank.Key(i), ok, err)
				}
				out[bank.Key(i)], _ = strconv.Atoi(string(v))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	got := balances()
	total := 0
	for _, v := range got {
		total += v
	}
	if total != int(bank.Total()) || got[a] != 95 || got[b] != 105 {
		return fmt.Sprintf("after two crashed clients: total %d (want %d), %s=%d (want 95: the rolled-back 7 absent, the rolled-forward 5 present), %s=%d (want 105)",
			total, bank.Total(), a, got[a], b, got[b])
	}
	rnd := rand.New(rand.NewPCG(5, 5))
	for range 10 {
		if err := bank.Transfer(ctx, db2, rec, 0, rnd); err != nil {
			t.Fatal(err)
		}
	}
	total = 0
	for _, v := range balances() {
		total += v
	}
	if total != int(bank.Total()) {
		return fmt.Sprintf("after transfers by the restarted client: total %d, want %d", total, bank.Total())
	}
	return ""
}

// lyingStore installs a resolver that calls every transaction Aborted.
type lyingStore struct{ txn.Store }

type abortAll struct{}

func (abortAll) Resolve(context.Context, txn.LockInfo) (txn.Status, error) {
	return txn.Status{State: txn.Aborted}, nil
}

func (l lyingStore) SetResolver(txn.Resolver) { l.Store.SetResolver(abortAll{}) }
