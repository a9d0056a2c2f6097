package etcdstore

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meridiantime/meridian/internal/etcdtest"
	"github.com/meridiantime/meridian/txn"
	"github.com/meridiantime/meridian/txn/storetest"
)

// expiryRecorder is a storetest.Resolver that also notes when it first
// heard of an expired lock.
type expiryRecorder struct {
	storetest.Resolver
	mu    sync.Mutex
	first time.Time
}

func (e *expiryRecorder) Resolve(ctx context.Context, l txn.LockInfo) (txn.Status, error) {
	if l.Expired {
		e.mu.Lock()
		if e.first.IsZero() {
			e.first = time.Now()
		}
		e.mu.Unlock()
	}
	return e.Resolver.Resolve(ctx, l)
}

// A lock protects its coordinator for at least the prepare's Lease: a
// reader blocked on it from the start is told it expired no sooner.
func TestLeaseProtectsAtLeastLease(t *testing.T) {
	c := etcdtest.Embedded(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, c.Endpoints, Options{Prefix: "lease/"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec := &expiryRecorder{}
	rec.Shards = map[int]txn.Store{0: s}
	s.SetResolver(rec)
	const lease = 1500 * time.Millisecond
	id := storetest.NewTxnID()
	start := time.Now()
	p, err := s.Prepare(ctx, txn.PrepareRequest{Txn: id, Primary: txn.PrimaryRef{Key: "k"}, IsPrimary: true, ReadTS: 1,
		Writes: []txn.Write{{Key: "k", Value: []byte("v")}}, Lease: lease})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Get(ctx, "k", p+1); err != nil || ok {
		t.Fatalf("read after the coordinator died: found %v, %v", ok, err)
	}
	after := rec.first.Sub(start)
	t.Logf("lease %v: the lock counted as expired after %v", lease, after)
	if rec.first.IsZero() || after < lease {
		t.Errorf("lease %v: the lock counted as expired after %v", lease, after)
	}
}

// Prepares racing reads at the current time and each other on one shard
// neither livelock nor run away from real time: each returns a timestamp
// at most 10 ms (the largest lead) past the host clock at its return.
func TestPrepareStaysNearRealTime(t *testing.T) {
	c := etcdtest.Embedded(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const clients = 8
	var wg sync.WaitGroup
	var n, worst atomic.Int64
	stop := time.Now().Add(time.Second)
	for w := range clients {
		s, err := Open(ctx, c.Endpoints, Options{Prefix: "rt/"})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				key := fmt.Sprintf("w%d/%d", w, i)
				r := time.Now().UnixNano()
				if _, _, err := s.Get(ctx, key, r); err != nil {
					t.Error(err)
					return
				}
				id := storetest.NewTxnID()
				p, err := s.Prepare(ctx, txn.PrepareRequest{Txn: id, Primary: txn.PrimaryRef{Key: key}, IsPrimary: true, ReadTS: r,
					Writes: []txn.Write{{Key: key, Value: []byte("v")}}, Lease: 10 * time.Second})
				now := time.Now().UnixNano()
				if err != nil {
					t.Errorf("prepare under load: %v", err)
					return
				}
				if ahead := p - now; ahead > worst.Load() {
					worst.Store(ahead)
				}
				if err := s.Commit(ctx, id, p); err != nil {
					t.Error(err)
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d transactions; the furthest prepare ts was %v past the clock", n.Load(), time.Duration(worst.Load()))
	if w := time.Duration(worst.Load()); w > 10*time.Millisecond {
		t.Errorf("a prepare ts ran %v ahead of the clock", w)
	}
	if n.Load() < clients {
		t.Errorf("only %d transactions in 1 s with %d clients", n.Load(), clients)
	}
}
