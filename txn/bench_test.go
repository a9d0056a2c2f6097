package txn_test

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/meridiantime/meridian/txn"
	"github.com/meridiantime/meridian/txn/txntest"
)

// twoShardKeys returns two keys on different shards.
func twoShardKeys(db *txn.DB) (string, string) {
	for i := 1; ; i++ {
		k := "bench/" + strconv.Itoa(i)
		if db.ShardOf(k) != db.ShardOf("bench/0") {
			return "bench/0", k
		}
	}
}

func median(d []time.Duration) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2]
}

// BenchmarkCommitWait: one read-write transaction over two memory shards
// (read two keys, write both), with and without commit wait, alternately
// in the same loop, for ε from 10 µs to 10 ms. Reported: the median
// latency of each, the overhead (difference of medians) and the bound
// 2ε + 50 µs it should stay under, and their ratio.
func BenchmarkCommitWait(b *testing.B) {
	for _, eps := range []time.Duration{10 * time.Microsecond, 100 * time.Microsecond, time.Millisecond, 10 * time.Millisecond} {
		b.Run(fmt.Sprintf("eps=%v", eps), func(b *testing.B) {
			shards := memShards(3)
			c := txntest.NewTrueClock()
			node := txntest.NewNode(c, 0, eps.Nanoseconds())
			open := func(skip bool) *txn.DB {
				db, err := txn.Open(txn.Options{Shards: shards, Time: node, UnsafeSkipCommitWait: skip})
				if err != nil {
					b.Fatal(err)
				}
				return db
			}
			wait, nowait := open(false), open(true)
			k1, k2 := twoShardKeys(wait)
			ctx := context.Background()
			fn := func(tx *txn.Tx) error {
				v, _, err := tx.Get(k1)
				if err != nil {
					return err
				}
				if _, _, err := tx.Get(k2); err != nil {
					return err
				}
				if err := tx.Put(k1, append(v, 'x')[:1]); err != nil {
					return err
				}
				return tx.Put(k2, []byte("y"))
			}
			var tw, tn []time.Duration
			b.ResetTimer()
			for range b.N {
				for _, db := range []*txn.DB{wait, nowait} {
					start := time.Now()
					if err := db.Update(ctx, fn); err != nil {
						b.Fatal(err)
					}
					if db == wait {
						tw = append(tw, time.Since(start))
					} else {
						tn = append(tn, time.Since(start))
					}
				}
			}
			mw, mn := median(tw), median(tn)
			bound := 2*eps + 50*time.Microsecond
			b.ReportMetric(float64(mw.Microseconds()), "wait-µs")
			b.ReportMetric(float64(mn.Microseconds()), "nowait-µs")
			b.ReportMetric(float64((mw - mn).Microseconds()), "overhead-µs")
			b.ReportMetric(float64(bound.Microseconds()), "bound-µs")
			b.ReportMetric(float64(mw-mn)/float64(bound), "overhead/bound")
		})
	}
}

// BenchmarkThroughput: bank transfers over 3 memory shards from parallel
// goroutines on one node (ε = 100 µs), with commit wait and, as the peer
// in the same run, without.
func BenchmarkThroughput(b *testing.B) {
	for _, skip := range []bool{false, true} {
		b.Run(fmt.Sprintf("commitwait=%v", !skip), func(b *testing.B) {
			shards := memShards(3)
			c := txntest.NewTrueClock()
			db, err := txn.Open(txn.Options{Shards: shards, Time: txntest.NewNode(c, 0, 100_000),
				UnsafeSkipCommitWait: skip, MaxAttempts: 1000})
			if err != nil {
				b.Fatal(err)
			}
			rec := txntest.NewRecorder(c)
			bank := &txntest.Bank{Accounts: 1000, Initial: 1000}
			if err := bank.Setup(context.Background(), db, rec); err != nil {
				b.Fatal(err)
			}
			b.SetParallelism(16)
			b.ResetTimer()
			start := time.Now()
			var seed uint64
			b.RunParallel(func(pb *testing.PB) {
				seed++
				rnd := newRand(seed)
				for pb.Next() {
					if err := bank.Transfer(context.Background(), db, rec, 0, rnd); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "txn/s")
		})
	}
}
