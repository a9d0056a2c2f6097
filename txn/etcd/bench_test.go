package etcdstore

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/meridiantime/meridian/internal/etcdtest"
	"github.com/meridiantime/meridian/txn"
	"github.com/meridiantime/meridian/txn/storetest"
)

// benchTxn runs one read-write transaction on s: read key at now, prepare
// a write of it, commit at the prepare timestamp. It returns the time
// prepare+commit took.
func benchTxn(ctx context.Context, b *testing.B, s txn.Store, key string) time.Duration {
	r := time.Now().UnixNano()
	if _, _, err := s.Get(ctx, key, r); err != nil {
		b.Fatal(err)
	}
	id := storetest.NewTxnID()
	start := time.Now()
	p, err := s.Prepare(ctx, txn.PrepareRequest{Txn: id, Primary: txn.PrimaryRef{Key: key}, IsPrimary: true, ReadTS: r,
		Reads: []string{key}, Writes: []txn.Write{{Key: key, Value: []byte("value")}}, Lease: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Commit(ctx, id, p); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

func reportLatency(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	if len(lat) == 0 {
		return
	}
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "txn/s")
}

// One client, one transaction at a time (read, prepare, commit) on a
// 3-member embedded cluster: latency of prepare+commit.
func BenchmarkTxnSerial(b *testing.B) {
	c := etcdtest.Embedded(b, 3)
	ctx := context.Background()
	s, err := Open(ctx, c.Endpoints, Options{Prefix: "bench/"})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	lat := make([]time.Duration, 0, b.N)
	i := 0
	for b.Loop() {
		lat = append(lat, benchTxn(ctx, b, s, fmt.Sprint("k", i%1000)))
		i++
	}
	reportLatency(b, lat)
}

// 16 clients on distinct keys at once: throughput of the cluster.
func BenchmarkTxnParallel(b *testing.B) {
	c := etcdtest.Embedded(b, 3)
	ctx := context.Background()
	const clients = 16
	stores := make([]*Store, clients)
	for i := range stores {
		s, err := Open(ctx, c.Endpoints, Options{Prefix: "bench/"})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		stores[i] = s
	}
	var mu sync.Mutex
	var lat []time.Duration
	var next int
	b.SetParallelism(clients / max(1, testingProcs()))
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		w := next
		next++
		mu.Unlock()
		s := stores[w%clients]
		var mine []time.Duration
		i := 0
		for pb.Next() {
			mine = append(mine, benchTxn(ctx, b, s, fmt.Sprintf("w%d/k%d", w, i%100)))
			i++
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	reportLatency(b, lat)
}

func testingProcs() int { return runtimeGOMAXPROCS() }

func runtimeGOMAXPROCS() int { return runtime.GOMAXPROCS(0) }
