package etcdstore

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meridiantime/meridian/internal/etcdtest"
	"github.com/meridiantime/meridian/txn"
	"github.com/meridiantime/meridian/txn/storetest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, etcdtest.LeakOptions()...) }

var shardSeq atomic.Int64

// opener returns a storetest.Open over cluster c: each call a fresh shard
// (its own key prefix), each handle its own etcd client; knobs is applied
// to every store.
func opener(c *etcdtest.Cluster, knobs func(*Store)) storetest.Open {
	return func(t *testing.T, n int) []txn.Store {
		prefix := fmt.Sprintf("shard%d/", shardSeq.Add(1))
		out := make([]txn.Store, n)
		for i := range out {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			s, err := Open(ctx, c.Endpoints, Options{Prefix: prefix})
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			if knobs != nil {
				knobs(s)
			}
			t.Cleanup(func() { _ = s.Close() })
			out[i] = s
		}
		return out
	}
}

// etcdLimits are the sizes around the default --max-txn-ops 128 and
// --max-request-bytes 1.5 MiB.
var etcdLimits = storetest.Limits{
	FitWrites: 41, TooManyWrites: 42,
	FitValue: DefaultMaxRequestBytes - 8192, TooLargeValue: DefaultMaxRequestBytes,
	FitKey: DefaultMaxKeyBytes, TooLargeKey: DefaultMaxKeyBytes + 1,
}

func TestConformance(t *testing.T) {
	c := etcdtest.Embedded(t, 3)
	storetest.Run(t, opener(c, nil), storetest.WithLimits(etcdLimits), storetest.ValidatesInput())
}

// Negative controls: each knob breaks one rule and the suite's check for
// that rule fails; the same check passes without the knob (above).
func TestConformanceCatchesBrokenStores(t *testing.T) {
	c := etcdtest.Embedded(t, 1)
	for _, tc := range []struct {
		check string
		knob  func(*Store)
	}{
		{"ReadFence", func(s *Store) { s.noReadFence = true }},
		{"ReadWaitsForLock", func(s *Store) { s.noReadWait = true }},
		{"PrepareAboveEverything", func(s *Store) { s.noCommitFence = true }},
		{"ReadsProtectedUntilCommit", func(s *Store) { s.noReadLocks = true }},
	} {
		t.Run(tc.check, func(t *testing.T) {
			failed, msg := storetest.Fails(t, tc.check, opener(c, tc.knob))
			if !failed {
				t.Fatalf("check %s passed on a store with the rule disabled", tc.check)
			}
			t.Logf("caught: %s", msg)
		})
	}
	t.Run("VisibleExactlyAtCommitTS", func(t *testing.T) {
		// A wrapper that reads one nanosecond late sees commits below
		// their timestamp.
		base := opener(c, nil)
		late := func(t *testing.T, n int) []txn.Store {
			ss := base(t, n)
			for i := range ss {
				ss[i] = lateReader{ss[i]}
			}
			return ss
		}
		failed, msg := storetest.Fails(t, "VisibleExactlyAtCommitTS", late)
		if !failed {
			t.Fatal("a store reading at ts+1 passed the visibility check")
		}
		t.Logf("caught: %s", msg)
	})
}

type lateReader struct{ txn.Store }

func (l lateReader) Get(ctx context.Context, key string, ts txn.Timestamp) ([]byte, bool, error) {
	return l.Store.Get(ctx, key, ts+1)
}

// countingKV counts the Txn requests a store sends.
type countingKV struct {
	clientv3.KV
	txns *atomic.Int64
}

func (c countingKV) Txn(ctx context.Context) clientv3.Txn {
	c.txns.Add(1)
	return c.KV.Txn(ctx)
}

// Oversized transactions are refused before anything is sent; with the
// check disabled (negative control) etcd itself refuses them, which shows
// the limits are etcd's.
func TestLimitsCheckedBeforeSending(t *testing.T) {
	c := etcdtest.Embedded(t, 1)
	for _, disabled := range []bool{false, true} {
		cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		var n atomic.Int64
		cli.KV = countingKV{cli.KV, &n}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s, err := New(ctx, cli, Options{Prefix: fmt.Sprint("limits", disabled, "/")})
		if err != nil {
			t.Fatal(err)
		}
		s.noLimitCheck = disabled
		for _, tc := range []struct {
			what string
			ws   []txn.Write
		}{
			{"64 writes", func() []txn.Write {
				ws := make([]txn.Write, 64)
				for i := range ws {
					ws[i] = txn.Write{Key: fmt.Sprint("k", i), Value: []byte("v")}
				}
				return ws
			}()},
			// Above etcd's 1.5 MiB, below the gRPC client's 2 MiB: the
			// server's own check refuses it.
			{"a 1.6 MiB value", []txn.Write{{Key: "k0", Value: make([]byte, 1600<<10)}}},
		} {
			before := n.Load()
			_, err := s.Prepare(ctx, txn.PrepareRequest{Txn: storetest.NewTxnID(), Primary: txn.PrimaryRef{Key: "k0"}, IsPrimary: true, ReadTS: 1, Writes: tc.ws, Lease: time.Minute})
			sent := n.Load() - before
			t.Logf("check disabled=%v, %s: %d Txn sent, %v", disabled, tc.what, sent, err)
			if err == nil {
				t.Errorf("%s prepared", tc.what)
			}
			if !disabled && sent != 0 {
				t.Errorf("%s: %d Txn requests sent before the refusal", tc.what, sent)
			}
			if disabled && sent == 0 {
				t.Errorf("%s: with the check disabled nothing was sent: the control does not exercise etcd", tc.what)
			}
		}
		cancel()
		_ = cli.Close()
	}
}

// A coordinator that prepared on two shards, each its own etcd cluster,
// and died (never committed): a reader resolves it through the Resolver
// after its lease; one that died after committing the primary is rolled
// forward. Each open alternates between the two clusters, so the primary
// and the secondary share nothing.
func TestCoordinatorDiesAcrossClusters(t *testing.T) {
	cs := []*etcdtest.Cluster{etcdtest.Embedded(t, 1), etcdtest.Embedded(t, 1)}
	opens := []storetest.Open{opener(cs[0], nil), opener(cs[1], nil)}
	var n atomic.Int64
	alternate := func(t *testing.T, k int) []txn.Store { return opens[n.Add(1)%2](t, k) }
	storetest.RunCheck(t, "ExpiredLockResolved", alternate)
	storetest.RunCheck(t, "CommittedPrimaryRolledForward", alternate)
}

// The limits the store declares to the DB are the ones the conformance
// run proves: that many writes and that large a value fit.
func TestDeclaredLimits(t *testing.T) {
	s := &Store{opt: Options{MaxTxnOps: DefaultMaxTxnOps, MaxRequestBytes: DefaultMaxRequestBytes, MaxKeyBytes: DefaultMaxKeyBytes}}
	l := s.Limits()
	if l.MaxPrepareKeys != etcdLimits.FitWrites || l.MaxValueBytes != etcdLimits.FitValue || l.MaxKeyBytes != etcdLimits.FitKey {
		t.Errorf("declared %+v; the conformance run proves %d writes, %d-byte values, %d-byte keys", l, etcdLimits.FitWrites, etcdLimits.FitValue, etcdLimits.FitKey)
	}
}
