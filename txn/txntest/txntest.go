// Package txntest is the harness for transaction tests and benchmarks on
// any txn.Store: one harness clock that stands for true time, client nodes
// whose TrueTime intervals contain it but are centred at different
// offsets (so only commit wait orders their commits), a recorder that
// writes the history the checker reads, and two workloads (bank transfers
// with audits, registers for porcupine).
//
// It starts goroutines only inside Run, and joins them before returning.
package txntest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meridiantime/meridian/client"
	"github.com/meridiantime/meridian/clock/hostclock"
	"github.com/meridiantime/meridian/truetime"
	"github.com/meridiantime/meridian/txn"
	"github.com/meridiantime/meridian/txn/check"
)

// TrueClock is the harness clock: nanoseconds on the Unix scale, read
// from the monotonic clock (it cannot step), the one source of "true
// time" and of every start/ack instant in a history.
type TrueClock struct {
	baseNS int64
	start  time.Time
}

// NewTrueClock starts a harness clock at the host's current time.
func NewTrueClock() *TrueClock {
	now := time.Now()
	return &TrueClock{baseNS: now.UnixNano(), start: now}
}

// NowNS implements clock.Reader.
func (c *TrueClock) NowNS() int64 { return c.baseNS + time.Since(c.start).Nanoseconds() }

// Node is one client node's TrueTime: the interval
// [true+Offset−ε, true+Offset+ε], which contains true time while
// |Offset| ≤ ε. It is a truetime.Clock served through client.Local, the
// code path of an in-process TrueTime. Every Now is also checked against
// the harness clock (read before and after): Escapes counts intervals
// that did not contain true time.
type Node struct {
	clk      *TrueClock
	src      client.TimeSource
	OffsetNS int64
	EpsNS    int64
	escapes  atomic.Int64
}

// NewNode returns a node whose interval is centred offsetNS from true time.
func NewNode(c *TrueClock, offsetNS, epsNS int64) *Node {
	tt := truetime.NewClock(c, hostclock.RealTimers())
	tt.SetEstimate(truetime.Estimate{Status: truetime.Synchronized, LocalNS: c.NowNS(),
		OffsetNS: float64(-offsetNS), Eps0NS: epsNS})
	return &Node{clk: c, src: client.Local{C: tt}, OffsetNS: offsetNS, EpsNS: epsNS}
}

// Escapes is how many intervals missed true time (0 in a sound harness).
func (n *Node) Escapes() int64 { return n.escapes.Load() }

// Now implements client.TimeSource.
func (n *Node) Now(ctx context.Context) (truetime.Interval, error) {
	before := n.clk.NowNS()
	iv, err := n.src.Now(ctx)
	after := n.clk.NowNS()
	if err == nil && (iv.EarliestNS > after || iv.LatestNS < before) {
		n.escapes.Add(1)
	}
	return iv, err
}

// After implements client.TimeSource.
func (n *Node) After(ctx context.Context, t int64) (bool, error) { return n.src.After(ctx, t) }

// Before implements client.TimeSource.
func (n *Node) Before(ctx context.Context, t int64) (bool, error) { return n.src.Before(ctx, t) }

// WaitUntilAfter implements client.TimeSource.
func (n *Node) WaitUntilAfter(ctx context.Context, t int64) error {
	return n.src.WaitUntilAfter(ctx, t)
}

// Close implements client.TimeSource.
func (n *Node) Close() error { return nil }

// Status implements client.TimeSource.
func (n *Node) Status(ctx context.Context) (client.Status, error) { return n.src.Status(ctx) }

// Watch implements client.TimeSource.
func (n *Node) Watch(ctx context.Context) (<-chan client.Status, error) { return n.src.Watch(ctx) }

// Recorder collects the history of committed transactions.
type Recorder struct {
	Clock *TrueClock
	mu    sync.Mutex
	txns  []check.Txn
}

// NewRecorder records against clock c.
func NewRecorder(c *TrueClock) *Recorder { return &Recorder{Clock: c} }

// History returns a copy of the transactions recorded so far.
func (r *Recorder) History() []check.Txn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]check.Txn(nil), r.txns...)
}

// Add records a committed transaction (IDs are assigned here).
func (r *Recorder) Add(t check.Txn) {
	r.mu.Lock()
	t.ID = len(r.txns)
	r.txns = append(r.txns, t)
	r.mu.Unlock()
}

// Tx wraps a txn.Tx and records every operation with its result.
type Tx struct {
	tx  *txn.Tx
	ops []check.Op
}

// Get is txn.Tx.Get, recorded.
func (t *Tx) Get(key string) ([]byte, bool, error) {
	v, ok, err := t.tx.Get(key)
	if err == nil {
		t.ops = append(t.ops, check.Op{Kind: check.Get, Key: key, Value: v, Found: ok})
	}
	return v, ok, err
}

// Scan is txn.Tx.Scan, recorded.
func (t *Tx) Scan(prefix string, limit int) ([]txn.KV, error) {
	kvs, err := t.tx.Scan(prefix, limit)
	if err == nil {
		t.ops = append(t.ops, check.Op{Kind: check.Scan, Key: prefix, Limit: limit, Result: kvs})
	}
	return kvs, err
}

// Put is txn.Tx.Put, recorded.
func (t *Tx) Put(key string, v []byte) error {
	err := t.tx.Put(key, v)
	if err == nil {
		t.ops = append(t.ops, check.Op{Kind: check.Put, Key: key, Value: v})
	}
	return err
}

// Delete is txn.Tx.Delete, recorded.
func (t *Tx) Delete(key string) error {
	err := t.tx.Delete(key)
	if err == nil {
		t.ops = append(t.ops, check.Op{Kind: check.Delete, Key: key})
	}
	return err
}

// Update runs db.UpdateTS and records the transaction if it committed. It
// also returns the operations of the last attempt (for a caller that
// learns the outcome otherwise, e.g. after a simulated crash).
func (r *Recorder) Update(ctx context.Context, db *txn.DB, clientID int, fn func(*Tx) error) (txn.Timestamp, []check.Op, error) {
	return r.record(ctx, db.UpdateTS, clientID, fn)
}

// View runs db.ViewTS and records it if it succeeded.
func (r *Recorder) View(ctx context.Context, db *txn.DB, clientID int, fn func(*Tx) error) error {
	_, _, err := r.record(ctx, db.ViewTS, clientID, fn)
	return err
}

// record runs one transaction through run (db.UpdateTS or db.ViewTS),
// timing it on the harness clock, and adds it to the history when it
// succeeded.
func (r *Recorder) record(ctx context.Context, run func(context.Context, func(*txn.Tx) error) (txn.Timestamp, error),
	clientID int, fn func(*Tx) error) (txn.Timestamp, []check.Op, error) {
	var ops []check.Op
	start := r.Clock.NowNS()
	ts, err := run(ctx, func(tx *txn.Tx) error {
		t := &Tx{tx: tx}
		err := fn(t)
		ops = t.ops
		return err
	})
	ack := r.Clock.NowNS()
	if err == nil {
		r.Add(check.Txn{Client: clientID, Start: start, Ack: ack, TS: ts, Ops: ops})
	}
	return ts, ops, err
}

// Workload is what each worker runs.
type Workload interface {
	// Setup runs once before the workers, on the first node.
	Setup(ctx context.Context, db *txn.DB, rec *Recorder) error
	// Step runs one transaction.
	Step(ctx context.Context, db *txn.DB, rec *Recorder, clientID int, rnd *rand.Rand) error
}

// Bank moves money between Accounts accounts (keys Prefix+"%05d", each
// starting at Initial) and audits: every snapshot must hold the same total.
// One Step in AuditEvery is an audit (a View scanning all accounts).
type Bank struct {
	Accounts   int
	Initial    int64
	AuditEvery int

	audits    atomic.Int64
	badAudits atomic.Int64
	firstBad  atomic.Pointer[string]
}

// BankPrefix is the key prefix of the accounts.
const BankPrefix = "acct/"

// Key names account i.
func (b *Bank) Key(i int) string { return fmt.Sprintf("%s%05d", BankPrefix, i) }

// Total is the constant every audit must see.
func (b *Bank) Total() int64 { return int64(b.Accounts) * b.Initial }

// Audits returns the audits done and those that saw a wrong total or a
// wrong number of accounts.
func (b *Bank) Audits() (done, bad int64, first string) {
	if p := b.firstBad.Load(); p != nil {
		first = *p
	}
	return b.audits.Load(), b.badAudits.Load(), first
}

// Setup implements Workload.
func (b *Bank) Setup(ctx context.Context, db *txn.DB, rec *Recorder) error {
	const chunk = 100
	for lo := 0; lo < b.Accounts; lo += chunk {
		_, _, err := rec.Update(ctx, db, 0, func(tx *Tx) error {
			for i := lo; i < min(lo+chunk, b.Accounts); i++ {
				if err := tx.Put(b.Key(i), []byte(strconv.FormatInt(b.Initial, 10))); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("bank setup: %w", err)
		}
	}
	return nil
}

func balance(v []byte, found bool, key string) (int64, error) {
	if !found {
		return 0, fmt.Errorf("bank: account %s missing", key)
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bank: account %s: %w", key, err)
	}
	return n, nil
}

// Transfer moves a random amount between two random accounts.
func (b *Bank) Transfer(ctx context.Context, db *txn.DB, rec *Recorder, clientID int, rnd *rand.Rand) error {
	from, to := rnd.IntN(b.Accounts), rnd.IntN(b.Accounts-1)
	if to >= from {
		to++
	}
	amount := 1 + rnd.Int64N(10)
	_, _, err := rec.Update(ctx, db, clientID, func(tx *Tx) error {
		fk, tk := b.Key(from), b.Key(to)
		fv, ff, err := tx.Get(fk)
		if err != nil {
			return err
		}
		tv, tf, err := tx.Get(tk)
		if err != nil {
			return err
		}
		fb, err := balance(fv, ff, fk)
		if err != nil {
			return err
		}
		tb, err := balance(tv, tf, tk)
		if err != nil {
			return err
		}
		if fb < amount {
			return nil // read-only: nothing to move
		}
		if err := tx.Put(fk, []byte(strconv.FormatInt(fb-amount, 10))); err != nil {
			return err
		}
		return tx.Put(tk, []byte(strconv.FormatInt(tb+amount, 10)))
	})
	return err
}

// Audit reads every account in one snapshot and checks the total.
func (b *Bank) Audit(ctx context.Context, db *txn.DB, rec *Recorder, clientID int) error {
	var total int64
	var n int
	err := rec.View(ctx, db, clientID, func(tx *Tx) error {
		kvs, err := tx.Scan(BankPrefix, 0)
		if err != nil {
			return err
		}
		total, n = 0, len(kvs)
		for _, kv := range kvs {
			v, err := balance(kv.Value, true, kv.Key)
			if err != nil {
				return err
			}
			total += v
		}
		return nil
	})
	if err != nil {
		return err
	}
	b.audits.Add(1)
	if total != b.Total() || n != b.Accounts {
		b.badAudits.Add(1)
		s := fmt.Sprintf("audit saw %d accounts totalling %d, want %d totalling %d", n, total, b.Accounts, b.Total())
		b.firstBad.CompareAndSwap(nil, &s)
	}
	return nil
}

// Step implements Workload.
func (b *Bank) Step(ctx context.Context, db *txn.DB, rec *Recorder, clientID int, rnd *rand.Rand) error {
	if b.AuditEvery > 0 && rnd.IntN(b.AuditEvery) == 0 {
		return b.Audit(ctx, db, rec, clientID)
	}
	return b.Transfer(ctx, db, rec, clientID, rnd)
}

// Registers is a register workload small enough for porcupine: N keys;
// half the steps read every register in a View, the others read one
// register and write one or two with values unique in the history.
type Registers struct {
	N   int
	seq atomic.Int64
}

// RegisterKey names register i.
func RegisterKey(i int) string { return fmt.Sprintf("reg/%d", i) }

// Setup implements Workload (registers start absent).
func (w *Registers) Setup(context.Context, *txn.DB, *Recorder) error { return nil }

// Step implements Workload.
func (w *Registers) Step(ctx context.Context, db *txn.DB, rec *Recorder, clientID int, rnd *rand.Rand) error {
	if rnd.IntN(2) == 0 {
		return rec.View(ctx, db, clientID, func(tx *Tx) error {
			for i := range w.N {
				if _, _, err := tx.Get(RegisterKey(i)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	r, a, b := rnd.IntN(w.N), rnd.IntN(w.N), rnd.IntN(w.N)
	v := strconv.FormatInt(w.seq.Add(1), 10)
	_, _, err := rec.Update(ctx, db, clientID, func(tx *Tx) error {
		if _, _, err := tx.Get(RegisterKey(r)); err != nil {
			return err
		}
		if err := tx.Put(RegisterKey(a), []byte(v+"a")); err != nil {
			return err
		}
		return tx.Put(RegisterKey(b), []byte(v+"b"))
	})
	return err
}

// Config describes a run.
type Config struct {
	Shards []txn.Store
	// Nodes client nodes (each its own DB and TrueTime), Workers
	// goroutines on each, Txns steps in all.
	Nodes, Workers, Txns int
	// EpsNS is every node's ε. Node offsets are ±OffsetFrac·ε: alternating
	// in sign (Opposite), else uniform in [−OffsetFrac·ε, +OffsetFrac·ε].
	EpsNS      int64
	OffsetFrac float64
	Opposite   bool
	// SkipCommitWait turns commit wait off (negative control only).
	SkipCommitWait bool
	Lease          time.Duration
	Seed           uint64
	Workload       Workload
	// Clock and Recorder may be shared with the caller (created if nil).
	Clock *TrueClock
}

// Report is what a run produced.
type Report struct {
	History []check.Txn
	Nodes   []*Node
	DBs     []*txn.DB
	// GaveUp counts Updates that ran out of retries (ErrConflict).
	GaveUp  int64
	Escapes int64
	Elapsed time.Duration
}

// Run opens one DB per node over the shards and runs the workload.
func Run(ctx context.Context, c Config) (*Report, error) {
	if c.Clock == nil {
		c.Clock = NewTrueClock()
	}
	rec := NewRecorder(c.Clock)
	rnd := rand.New(rand.NewPCG(c.Seed, 1))
	rep := &Report{}
	for i := range c.Nodes {
		off := int64(c.OffsetFrac * float64(c.EpsNS))
		if c.Opposite {
			if i%2 == 1 {
				off = -off
			}
		} else {
			off = int64((rnd.Float64()*2 - 1) * c.OffsetFrac * float64(c.EpsNS))
		}
		n := NewNode(c.Clock, off, c.EpsNS)
		db, err := txn.Open(txn.Options{Shards: c.Shards, Time: n, LockLease: c.Lease,
			UnsafeSkipCommitWait: c.SkipCommitWait, MaxAttempts: 50})
		if err != nil {
			return nil, err
		}
		rep.Nodes = append(rep.Nodes, n)
		rep.DBs = append(rep.DBs, db)
	}
	if err := c.Workload.Setup(ctx, rep.DBs[0], rec); err != nil {
		return nil, err
	}
	// Without commit wait the set-up may still be in some node's future:
	// let it pass for every node before the workers start.
	time.Sleep(time.Duration(2*c.EpsNS) + time.Millisecond)
	var left atomic.Int64
	left.Store(int64(c.Txns))
	var gaveUp atomic.Int64
	errs := make(chan error, c.Nodes*c.Workers)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range c.Nodes * c.Workers {
		node := i % c.Nodes
		wr := rand.New(rand.NewPCG(c.Seed, uint64(i)+2))
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				err := c.Workload.Step(ctx, rep.DBs[node], rec, i, wr)
				if err != nil {
					var re *txn.RetryError
					if errors.As(err, &re) {
						gaveUp.Add(1)
						continue
					}
					errs <- fmt.Errorf("node %d worker %d: %w", node, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	rep.Elapsed = time.Since(start)
	close(errs)
	rep.History = rec.History()
	rep.GaveUp = gaveUp.Load()
	for _, n := range rep.Nodes {
		rep.Escapes += n.Escapes()
	}
	return rep, <-errs
}
