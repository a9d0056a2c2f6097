package shm

import (
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meridiantime/meridian/clock"
	"github.com/meridiantime/meridian/clock/hostclock"
	"github.com/meridiantime/meridian/truetime"
)

// freshness runs a writer publishing generation g as a model whose reading
// is T0 + g seconds + the raw clock, while readers check every read: a
// read that starts after Publish(g) returned must see generation ≥ g, and
// no reader ever sees a generation older than one it saw before. It
// returns the number of violations.
func freshness(t *testing.T, trustCache bool) int64 {
	path := filepath.Join(t.TempDir(), "tt.shm")
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const t0 = int64(1_800_000_000e9)
	publish := func(g int64) {
		raw := hostclock.MonoRawNS()
		m := clock.Linear{BaseNS: t0 + g*1e9, BaseRawNS: 0}
		w.Publish(m, truetime.Estimate{Status: truetime.Synchronized, LocalNS: m.At(raw), Eps0NS: 10, DriftBoundPPB: 15000})
	}
	var published atomic.Int64
	publish(0)
	var violations atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for k := 0; k < 4; k++ {
		r, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		r.trustCache = trustCache
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := int64(-1)
			for {
				select {
				case <-stop:
					return
				default:
				}
				pre := published.Load()
				r0 := hostclock.MonoRawNS()
				iv, err := r.Now()
				if err != nil {
					t.Errorf("read: %v", err)
					return
				}
				mid := iv.EarliestNS/2 + iv.LatestNS/2
				g := (mid - t0 - r0 + 5e8) / 1e9
				if g < pre || g < last {
					violations.Add(1)
				}
				last = g
			}
		}()
	}
	deadline := time.Now().Add(500 * time.Millisecond)
	for g := int64(1); time.Now().Before(deadline); g++ {
		publish(g)
		published.Store(g)
		time.Sleep(50 * time.Microsecond)
	}
	close(stop)
	wg.Wait()
	return violations.Load()
}

// The cached fast path never serves a snapshot older than one published
// before the read began, and never goes back to an older one.
func TestCachedReadsAreFresh(t *testing.T) {
	if v := freshness(t, false); v != 0 {
		t.Fatalf("%d stale reads", v)
	}
}

// Negative control: a cache that is never revalidated serves stale
// snapshots, and the same check counts them.
func TestStaleCacheIsCaught(t *testing.T) {
	if v := freshness(t, true); v == 0 {
		t.Fatal("a cache that is never revalidated passed the freshness check")
	}
}
