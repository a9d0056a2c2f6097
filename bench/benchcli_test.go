package bench

import (
	"context"
	"strings"
	"testing"
	"time"
)

// BestOfRounds keeps each function's own minimum: a function that sleeps
// is measured as slower than one that does nothing, whatever their order.
func TestBestOfRoundsOrdersByCost(t *testing.T) {
	best := BestOfRounds(3, 5, func() { time.Sleep(200 * time.Microsecond) }, func() {})
	if len(best) != 2 || !(best[0] >= 200e3) || !(best[1] < best[0]) {
		t.Fatalf("best %v: want [≥ 200 µs, less]", best)
	}
}

func TestRunCommitWaitRejectsBadInput(t *testing.T) {
	for _, c := range []struct {
		cw   CommitWait
		want string
	}{
		{CommitWait{Eps: nil, Txns: 1, Workers: 1, Duration: time.Millisecond}, "needs ε values"},
		{CommitWait{Eps: []time.Duration{time.Second}, Txns: 1, Workers: 1, Duration: time.Millisecond}, "ε 1s"},
		{CommitWait{Eps: []time.Duration{time.Millisecond}, Txns: 0, Workers: 1, Duration: time.Millisecond}, "got 0"},
		{CommitWait{Eps: []time.Duration{time.Millisecond}, Txns: 1, Workers: 1, Duration: 3 * time.Minute}, "got 3m0s"},
	} {
		if _, err := RunCommitWait(context.Background(), c.cw); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cw, err, c.want)
		}
	}
}

// Commit wait lasts at least 2ε of real time (read from the host's
// monotonic clock by the caller), and without it a transaction does not.
func TestRunCommitWaitAgainstTheClock(t *testing.T) {
	const eps = 2 * time.Millisecond
	r, err := RunCommitWait(context.Background(), CommitWait{Eps: []time.Duration{eps}, Txns: 10, Workers: 2, Duration: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	row := r.Rows[0]
	if row.WaitP50NS < 2*eps.Nanoseconds() || row.NoWaitP50NS >= 2*eps.Nanoseconds() || row.WaitCommits == 0 || row.NoWaitCommits == 0 {
		t.Errorf("%+v", row)
	}
	if len(r.Samples) != 20 || r.Escapes != 0 {
		t.Errorf("%d samples, %d escapes", len(r.Samples), r.Escapes)
	}
}

func TestRunSimNamesTheDirectory(t *testing.T) {
	if _, err := RunSim(SimRun{Dir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "yaml") {
		t.Errorf("empty directory: %v", err)
	}
	if _, err := RunSim(SimRun{Dir: "../sim/scenarios", Worlds: -1}); err == nil || !strings.Contains(err.Error(), "--worlds -1") {
		t.Errorf("negative worlds: %v", err)
	}
}
