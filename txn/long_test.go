package txn_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/meridiantime/meridian/txn/check"
	"github.com/meridiantime/meridian/txn/txntest"
)

// TestLongRunBank is the ≥ 10⁵-transaction run behind `make txn-long`
// (MERIDIAN_TXN_LONG_TXNS steps; skipped without it): bank transfers and
// audits from 8 nodes with random offsets within ±0.9ε (ε = 200 µs) on
// three memory shards, through the checker; every audit must see the
// total.
func TestLongRunBank(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("MERIDIAN_TXN_LONG_TXNS"))
	if n <= 0 {
		t.Skip("set MERIDIAN_TXN_LONG_TXNS (make txn-long)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	bank := &txntest.Bank{Accounts: 200, Initial: 1000, AuditEvery: 10}
	rep, err := txntest.Run(ctx, txntest.Config{Shards: memShards(3), Nodes: 8, Workers: 4, Txns: n,
		EpsNS: 200_000, OffsetFrac: 0.9, Seed: 42, Workload: bank})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := check.Check(rep.History)
	checkTime := time.Since(start)
	done, bad, first := bank.Audits()
	t.Logf("%v", r)
	t.Logf("%d steps in %v (%.0f/s), %d gave up; %d audits, %d wrong; %d interval escapes; checker took %v",
		n, rep.Elapsed, float64(n)/rep.Elapsed.Seconds(), rep.GaveUp, done, bad, rep.Escapes, checkTime)
	if !r.OK() || bad != 0 || rep.Escapes != 0 {
		t.Fatalf("violations (first wrong audit: %s)", first)
	}
	if len(rep.History) < n*9/10 {
		t.Fatalf("only %d of %d steps committed", len(rep.History), n)
	}
}
