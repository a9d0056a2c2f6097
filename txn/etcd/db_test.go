package etcdstore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/meridiantime/meridian/internal/etcdtest"
	"github.com/meridiantime/meridian/txn"
	"github.com/meridiantime/meridian/txn/check"
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
