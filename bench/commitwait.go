package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/meridiantime/meridian/txn"
	"github.com/meridiantime/meridian/txn/memory"
	"github.com/meridiantime/meridian/txn/txntest"
)

// CommitWait configures RunCommitWait: for each ε, transactions over three
// in-process memory shards with commit wait on and, as the peer in the
// same run, off (txn.Options.UnsafeSkipCommitWait).
type CommitWait struct {
	Eps []time.Duration // the node's TrueTime half-width, each > 0 and ≤ 100 ms
	// Txns: latency samples per ε and mode, one transaction at a time,
	// alternating the modes (≤ 100000).
	Txns int
	// Duration of each throughput run (per ε and mode, ≤ 2 min), Workers
	// goroutines each running transactions back to back.
	Duration time.Duration
	Workers  int
	// Progress, if set, is called after each of the 2·len(Eps) phases.
	Progress func(done, total int)
}

// CommitWaitRow is one ε.
type CommitWaitRow struct {
	EpsNS                      int64
	WaitP50NS, WaitP99NS       int64 // commit wait on: latency of one transaction
	NoWaitP50NS, NoWaitP99NS   int64 // commit wait off
	OverheadNS                 int64 // WaitP50NS − NoWaitP50NS
	BoundNS                    int64 // 2ε + 50 µs, what the overhead should stay under
	OverheadPerBound           float64
	WaitTPS, NoWaitTPS         float64 // throughput, Workers in parallel
	WaitCommits, NoWaitCommits int     // commits in the throughput runs
}

// CommitSample is one committed transaction of the latency runs.
type CommitSample struct {
	EpsNS, LatencyNS int64
	Wait             bool
}

// CommitWaitResult is RunCommitWait's outcome.
type CommitWaitResult struct {
	Backend string
	Rows    []CommitWaitRow
	Samples []CommitSample
	Escapes int64 // TrueTime intervals that missed the harness's true time (0)
}

func quantileNS(sorted []time.Duration, permille int) int64 {
	return latencies(sorted).q(permille).Nanoseconds()
}

// RunCommitWait measures commit latency and throughput against ε.
func RunCommitWait(ctx context.Context, c CommitWait) (CommitWaitResult, error) {
	if len(c.Eps) == 0 || c.Txns < 1 || c.Txns > 100000 || c.Workers < 1 || c.Duration <= 0 || c.Duration > 2*time.Minute {
		return CommitWaitResult{}, fmt.Errorf("bench: commit wait needs ε values, 1 ≤ txns ≤ 100000 (got %d), workers ≥ 1 (got %d), 0 < duration ≤ 2m (got %v)", c.Txns, c.Workers, c.Duration)
	}
	for _, e := range c.Eps {
		if e <= 0 || e > 100*time.Millisecond {
			return CommitWaitResult{}, fmt.Errorf("bench: ε %v: want 0 < ε ≤ 100ms", e)
		}
	}
	res := CommitWaitResult{Backend: "memory"}
	clk := txntest.NewTrueClock()
	for i, eps := range c.Eps {
		shards := []txn.Store{memory.New(memory.Options{}), memory.New(memory.Options{}), memory.New(memory.Options{})}
		node := txntest.NewNode(clk, 0, eps.Nanoseconds())
		open := func(skip bool) (*txn.DB, error) {
			return txn.Open(txn.Options{Shards: shards, Time: node, UnsafeSkipCommitWait: skip, MaxAttempts: 1000})
		}
		wait, err := open(false)
		if err != nil {
			return res, err
		}
		nowait, err := open(true)
		if err != nil {
			return res, err
		}
		// Latency: one transaction at a time, reading and writing two
		// keys on different shards, the modes alternating.
		k1, k2 := "cw/0", ""
		for j := 1; k2 == ""; j++ {
			if k := "cw/" + strconv.Itoa(j); wait.ShardOf(k) != wait.ShardOf(k1) {
				k2 = k
			}
		}
		fn := rwTwo(k1, k2)
		var tw, tn []time.Duration
		for range c.Txns {
			for _, db := range []*txn.DB{wait, nowait} {
				t0 := time.Now()
				if err := db.Update(ctx, fn); err != nil {
					return res, fmt.Errorf("ε %v: %w", eps, err)
				}
				d := time.Since(t0)
				if db == wait {
					tw = append(tw, d)
				} else {
					tn = append(tn, d)
				}
				res.Samples = append(res.Samples, CommitSample{EpsNS: eps.Nanoseconds(), LatencyNS: d.Nanoseconds(), Wait: db == wait})
			}
		}
		if c.Progress != nil {
			c.Progress(2*i+1, 2*len(c.Eps))
		}
		slices.Sort(tw)
		slices.Sort(tn)
		row := CommitWaitRow{EpsNS: eps.Nanoseconds(),
			WaitP50NS: quantileNS(tw, 500), WaitP99NS: quantileNS(tw, 990),
			NoWaitP50NS: quantileNS(tn, 500), NoWaitP99NS: quantileNS(tn, 990),
			BoundNS: (2*eps + 50*time.Microsecond).Nanoseconds()}
		row.OverheadNS = row.WaitP50NS - row.NoWaitP50NS
		row.OverheadPerBound = float64(row.OverheadNS) / float64(row.BoundNS)
		// Throughput: the modes one after the other, each for Duration.
		if row.WaitCommits, row.WaitTPS, err = throughput(ctx, wait, c.Workers, c.Duration); err != nil {
			return res, fmt.Errorf("ε %v, commit wait: %w", eps, err)
		}
		if row.NoWaitCommits, row.NoWaitTPS, err = throughput(ctx, nowait, c.Workers, c.Duration); err != nil {
			return res, fmt.Errorf("ε %v, no commit wait: %w", eps, err)
		}
		res.Rows = append(res.Rows, row)
		if c.Progress != nil {
			c.Progress(2*i+2, 2*len(c.Eps))
		}
		res.Escapes += node.Escapes()
	}
	return res, nil
}

// rwTwo reads two keys and writes both.
func rwTwo(k1, k2 string) func(*txn.Tx) error {
	return func(tx *txn.Tx) error {
		if _, _, err := tx.Get(k1); err != nil {
			return err
		}
		if _, _, err := tx.Get(k2); err != nil {
			return err
		}
		if err := tx.Put(k1, []byte("x")); err != nil {
			return err
		}
		return tx.Put(k2, []byte("y"))
	}
}

// throughput runs workers goroutines of two-key read-write transactions
// over 1000 keys for d and returns the commits and commits per second.
func throughput(ctx context.Context, db *txn.DB, workers int, d time.Duration) (int, float64, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	counts := make([]int, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(w), 14))
			for ctx.Err() == nil {
				a, b := rnd.IntN(1000), rnd.IntN(999)
				if b >= a {
					b++
				}
				err := db.Update(ctx, rwTwo("tp/"+strconv.Itoa(a), "tp/"+strconv.Itoa(b)))
				if err != nil {
					if ctx.Err() == nil {
						errs[w] = err
					}
					return
				}
				counts[w]++
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return 0, 0, err
	}
	n := 0
	for _, k := range counts {
		n += k
	}
	return n, float64(n) / el.Seconds(), nil
}
