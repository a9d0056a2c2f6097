package txn_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/meridiantime/meridian/txn"
	"github.com/meridiantime/meridian/txn/check"
	"github.com/meridiantime/meridian/txn/memory"
	"github.com/meridiantime/meridian/txn/txntest"
)

func memShards(n int) []txn.Store {
	s := make([]txn.Store, n)
	for i := range s {
		s[i] = memory.New(memory.Options{})
	}
	return s
}

// The skew every test here uses: ε = 2 ms, nodes alternately +0.9ε and
// −0.9ε from true time, so one node's latest is ~1.8ε ahead of the
// other's and only commit wait keeps their commits in real-time order.
const skewEpsNS = 2_000_000

func runBank(t *testing.T, skip bool, steps int, seed uint64) (*txntest.Report, *txntest.Bank) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bank := &txntest.Bank{Accounts: 40, Initial: 1000, AuditEvery: 4}
	rep, err := txntest.Run(ctx, txntest.Config{Shards: memShards(3), Nodes: 4, Workers: 3, Txns: steps,
		EpsNS: skewEpsNS, OffsetFrac: 0.9, Opposite: true, SkipCommitWait: skip, Seed: seed, Workload: bank})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Escapes != 0 {
		t.Fatalf("harness: %d TrueTime intervals did not contain true time", rep.Escapes)
	}
	return rep, bank
}

func runRegisters(t *testing.T, skip bool, steps int, seed uint64) *txntest.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := txntest.Run(ctx, txntest.Config{Shards: memShards(3), Nodes: 4, Workers: 3, Txns: steps,
		EpsNS: skewEpsNS, OffsetFrac: 0.9, Opposite: true, SkipCommitWait: skip, Seed: seed,
		Workload: &txntest.Registers{N: 3}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Escapes != 0 {
		t.Fatalf("harness: %d TrueTime intervals did not contain true time", rep.Escapes)
	}
	return rep
}

// vizDir is where porcupine's HTML goes when a history that should be
// linearizable is not: kept after the test (MERIDIAN_TXN_VIZ_DIR, or
// meridian-txn-porcupine in the temp directory).
func vizDir(t *testing.T) string {
	if d := os.Getenv("MERIDIAN_TXN_VIZ_DIR"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "meridian-txn-porcupine")
}

// With skewed clocks and commit wait on, bank transfers and audits on
// three memory shards break neither rule, and every audit sees the total.
// The negative control is TestNegativeControlBankWithoutCommitWait.
func TestSkewedClocksBankCommitWait(t *testing.T) {
	rep, bank := runBank(t, false, 1500, 1)
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
	if writers < 500 {
		t.Fatalf("only %d committed transfers: the run checked little", writers)
	}
	t.Logf("%v; %d audits, %d gave up, %v", r, done, rep.GaveUp, rep.Elapsed)
}

// Negative control: the same skew with commit wait off. Serializability in
// timestamp order still holds (MVCC gives it whatever the clocks say), but
// a node whose clock runs ahead commits at a timestamp that a node behind
// it does not reach for ~1.8ε, so audits that start after such a commit
// was acknowledged read below it: the external-consistency rule fires.
func TestNegativeControlBankWithoutCommitWait(t *testing.T) {
	for round := range 10 {
		rep, _ := runBank(t, true, 1500, uint64(10+round))
		r := check.Check(rep.History)
		if r.Serializability != 0 {
			t.Fatalf("serializability broke without commit wait (it should not): %v", r)
		}
		if r.ExternalConsistency > 0 {
			t.Logf("round %d: detected: %d external-consistency violations, e.g. %v", round, r.ExternalConsistency, r.Examples[0])
			return
		}
	}
	t.Fatal("commit wait off with ±0.9ε skew: the checker found no violation in 10 rounds")
}

// Registers, small enough for porcupine: both checkers agree the history
// with commit wait is fine.
func TestSkewedClocksRegistersPorcupine(t *testing.T) {
	rep := runRegisters(t, false, 300, 2)
	if r := check.Check(rep.History); !r.OK() {
		t.Fatalf("%v", r)
	}
	res, err := check.Linearizable(rep.History, 30*time.Second, vizDir(t))
	if err != nil {
		t.Fatal(err)
	}
	if res.Result != porcupine.Ok {
		t.Fatalf("porcupine: %v (visualization %s)", res.Result, res.HTML)
	}
	t.Logf("%d transactions linearizable; %v", len(rep.History), rep.Elapsed)
}

// Negative control: without commit wait both checkers reject the register
// history (porcupine's visualization path is logged).
func TestNegativeControlRegistersWithoutCommitWait(t *testing.T) {
	for round := range 10 {
		rep := runRegisters(t, true, 300, uint64(20+round))
		r := check.Check(rep.History)
		// Expected to be illegal: its visualization goes with the test.
		res, err := check.Linearizable(rep.History, 30*time.Second, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if r.ExternalConsistency > 0 && res.Result == porcupine.Illegal {
			t.Logf("round %d: detected by both: %d external-consistency violations; porcupine: illegal, visualization %s",
				round, r.ExternalConsistency, res.HTML)
			return
		}
		t.Logf("round %d: checker %v, porcupine %v", round, r, res.Result)
	}
	t.Fatal("commit wait off with ±0.9ε skew: the checkers did not both report violations in 10 rounds")
}
