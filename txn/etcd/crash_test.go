package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meridiantime/meridian/internal/etcdtest"
	"github.com/meridiantime/meridian/txn"
	"github.com/meridiantime/meridian/txn/storetest"
)

// transfer moves a random amount between two of the accounts on s, as a
// coordinator would: snapshot reads, one prepare (the accounts and a log
// entry named by the transaction), commit at the prepare timestamp. A
// commit whose outcome is unknown (the member it went to died) is retried
// at the same timestamp until it answers: Commit is idempotent. It
// returns the committed transaction's id, or "" when it gave up after a
// conflict or a refused prepare.
func transfer(ctx context.Context, s txn.Store, rng *rand.Rand, accounts int) (txn.TxnID, error) {
	a, b := rng.IntN(accounts), rng.IntN(accounts-1)
	if b >= a {
		b++
	}
	ka, kb := fmt.Sprint("acct/", a), fmt.Sprint("acct/", b)
	r := time.Now().UnixNano()
	read := func(k string) (int, error) {
		v, ok, err := s.Get(ctx, k, r)
		if err != nil || !ok {
			return 0, fmt.Errorf("read %s at %d: %v (found %v)", k, r, err, ok)
		}
		return strconv.Atoi(string(v))
	}
	va, err := read(ka)
	if err != nil {
		return "", err
	}
	vb, err := read(kb)
	if err != nil {
		return "", err
	}
	amt := rng.IntN(10) + 1
	id := storetest.NewTxnID()
	req := txn.PrepareRequest{
		Txn: id, Primary: txn.PrimaryRef{Key: ka}, IsPrimary: true, ReadTS: r,
		Reads: []string{ka, kb},
		Writes: []txn.Write{
			{Key: ka, Value: []byte(strconv.Itoa(va - amt))},
			{Key: kb, Value: []byte(strconv.Itoa(vb + amt))},
			{Key: "log/" + string(id), Value: fmt.Appendf(nil, "%s %s %d", ka, kb, amt)},
		},
		Lease: 10 * time.Second,
	}
	p, err := s.Prepare(ctx, req)
	if err != nil {
		// Unknown whether it went through: abort it (records Aborted, so a
		// prepare that did land can never commit).
		for ctx.Err() == nil {
			if aerr := s.Abort(ctx, id); aerr == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if errors.Is(err, txn.ErrConflict) {
			return "", nil
		}
		// A failed prepare is a clean failure (nothing committed), but
		// reported: the store retries what the dead member lost.
		return "", fmt.Errorf("prepare %s: %w", id, err)
	}
	c := max(p, time.Now().UnixNano())
	for {
		err := s.Commit(ctx, id, c)
		if err == nil {
			return id, nil
		}
		if errors.Is(err, txn.ErrAborted) || errors.Is(err, txn.ErrInvalid) || ctx.Err() != nil {
			return "", fmt.Errorf("commit %s at %d: %w", id, c, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The etcd leader (a separate process) is killed by its PID in the middle
// of a run of transfers: transfers keep committing through the other two
// members or fail cleanly, and at the end every acknowledged transfer is
// in the log exactly once, nothing else is, and every balance is its
// initial value plus the logged transfers (so the total is constant).
func TestMemberKilledMidRun(t *testing.T) {
	if failed, first := memberKilledRun(t); failed != 0 {
		t.Errorf("%d transfers failed with an error after one member of three died: %v", failed, first)
	}
}

// Negative control: with the store's retries of transient errors off, the
// same run sees calls fail when the member dies (in at least one of three
// runs: a call must be in flight when the leader dies).
func TestMemberKilledWithoutRetriesIsCaught(t *testing.T) {
	retryAttempts = 1
	defer func() { retryAttempts = 8 }()
	for round := range 3 {
		if failed, first := memberKilledRun(t); failed > 0 {
			t.Logf("round %d: %d transfers failed without retries: %v", round, failed, first)
			return
		}
	}
	t.Fatal("without retries no call failed in 3 runs: the test does not exercise them")
}

// memberKilledRun runs the transfers, kills the leader, audits, and returns
// how many transfers failed with an error (not a conflict).
func memberKilledRun(t *testing.T) (int64, error) {
	c := etcdtest.Processes(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	open := func() *Store {
		s, err := Open(ctx, c.Endpoints, Options{Prefix: "bank/"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		s.SetResolver(&storetest.Resolver{Shards: map[int]txn.Store{0: s}})
		return s
	}
	const accounts, initial, workers, perWorker = 5, 1000, 3, 30
	setup := open()
	id := storetest.NewTxnID()
	var ws []txn.Write
	for i := range accounts {
		ws = append(ws, txn.Write{Key: fmt.Sprint("acct/", i), Value: []byte(strconv.Itoa(initial))})
	}
	p, err := setup.Prepare(ctx, txn.PrepareRequest{Txn: id, Primary: txn.PrimaryRef{Key: ws[0].Key}, IsPrimary: true, ReadTS: 1, Writes: ws, Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := setup.Commit(ctx, id, p); err != nil {
		t.Fatal(err)
	}

	var (
		mu      sync.Mutex
		acked   = map[txn.TxnID]bool{}
		done    atomic.Int64
		killed  = make(chan struct{})
		failed  atomic.Int64
		wg      sync.WaitGroup
		firstEr error
	)
	go func() {
		for done.Load() < workers*perWorker/3 && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		victim := leader(ctx, t, c)
		t.Logf("killing member %d, the leader (pid %d), after %d transfers", victim, c.PID(victim), done.Load())
		c.Kill(victim)
		close(killed)
	}()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := open()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range perWorker {
				id, err := transfer(ctx, s, rng, accounts)
				done.Add(1)
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if firstEr == nil {
						firstEr = err
					}
					mu.Unlock()
					continue
				}
				if id != "" {
					mu.Lock()
					acked[id] = true
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	<-killed
	t.Logf("%d transfers acknowledged, %d conflicted, %d failed with an error (first: %v)", len(acked), workers*perWorker-len(acked)-int(failed.Load()), failed.Load(), firstEr)

	if ctx.Err() != nil {
		t.Fatalf("run did not finish in time: %v", ctx.Err())
	}

	// Audit at a timestamp above everything, through the surviving members.
	audit := open()
	at := time.Now().UnixNano() + int64(time.Second)
	logs, err := audit.Scan(ctx, "log/", 0, at)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]int, accounts)
	for i := range want {
		want[i] = initial
	}
	seen := map[txn.TxnID]bool{}
	for _, kv := range logs {
		id := txn.TxnID(strings.TrimPrefix(kv.Key, "log/"))
		if !acked[id] {
			t.Errorf("log has %s, which was never acknowledged", id)
		}
		seen[id] = true
		var a, b string
		var amt int
		if _, err := fmt.Sscanf(string(kv.Value), "%s %s %d", &a, &b, &amt); err != nil {
			t.Fatalf("log %s: %q: %v", id, kv.Value, err)
		}
		ai, _ := strconv.Atoi(strings.TrimPrefix(a, "acct/"))
		bi, _ := strconv.Atoi(strings.TrimPrefix(b, "acct/"))
		want[ai] -= amt
		want[bi] += amt
	}
	for id := range acked {
		if !seen[id] {
			t.Errorf("acknowledged transfer %s is missing from the log: lost", id)
		}
	}
	total := 0
	for i := range accounts {
		v, ok, err := audit.Get(ctx, fmt.Sprint("acct/", i), at)
		if err != nil || !ok {
			t.Fatalf("audit read acct/%d: %v %v", i, ok, err)
		}
		n, _ := strconv.Atoi(string(v))
		total += n
		if n != want[i] {
			t.Errorf("acct/%d = %d, the log says %d", i, n, want[i])
		}
	}
	if total != accounts*initial {
		t.Errorf("total %d, want %d", total, accounts*initial)
	}
	if len(acked) < workers*perWorker/3 {
		t.Errorf("only %d of %d transfers committed: the store did not keep working with two members of three", len(acked), workers*perWorker)
	}
	return failed.Load(), firstEr
}

// leader returns the index of the cluster's leader.
func leader(ctx context.Context, t *testing.T, c *etcdtest.Cluster) int {
	cli := c.Client(t)
	for i, ep := range c.Endpoints {
		st, err := cli.Status(ctx, ep)
		if err == nil && st.Leader == st.Header.MemberId {
			return i
		}
	}
	t.Error("no member says it is the leader; killing member 0")
	return 0
}
