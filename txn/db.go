package txn

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	mrand "math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridiantime/meridian/client"
)

// Defaults for the zero values of Options.
const (
	DefaultLockLease      = 5 * time.Second
	DefaultMaxAttempts    = 10
	DefaultBackoffBase    = time.Millisecond
	DefaultBackoffMax     = 100 * time.Millisecond
	DefaultMaxKeyBytes    = 4096
	DefaultMaxValueBytes  = 1 << 20
	DefaultMaxWrites      = 1000
	DefaultCommitTimeout  = 10 * time.Second
	DefaultCommitWaitSpin = 1500 * time.Microsecond
)

// Options configures a DB.
type Options struct {
	// Shards are the independent stores keys are spread over (by a stable
	// hash of the key: the same key always lands on the same index, so the
	// order and number of shards must not change over a store's life).
	Shards []Store
	// Time is TrueTime: in-process (client.Local), shm or gRPC.
	Time client.TimeSource

	// LockLease is how long a prepared transaction's locks protect a
	// coordinator that stops answering (default 5 s). It must exceed the
	// commit wait (2ε) by a wide margin.
	LockLease time.Duration
	// MaxAttempts bounds how often Update runs its function when commits
	// conflict (default 10); backoff between attempts doubles from
	// BackoffBase (1 ms) up to BackoffMax (100 ms), each sleep drawn
	// uniformly from [d/2, d].
	MaxAttempts int
	BackoffBase time.Duration
	BackoffMax  time.Duration

	// Limits (0: the defaults above). A shard implementing Limiter can
	// only make them tighter.
	MaxKeyBytes   int
	MaxValueBytes int
	// MaxWrites is the most distinct keys one transaction may write.
	MaxWrites int

	// CommitTimeout bounds the commit calls made after the commit wait
	// (they run even when the caller's context ends: the decision is made;
	// default 10 s).
	CommitTimeout time.Duration

	// CommitWaitSpin: the last stretch of a commit wait shorter than this
	// is spent re-reading TrueTime (yielding the processor between reads)
	// instead of sleeping on a timer, whose granularity (about 1 ms on many
	// hosts) would otherwise dominate a commit wait of a few µs. Longer
	// waits sleep until this much is left. 0: DefaultCommitWaitSpin
	// (1.5 ms); negative: always sleep (TimeSource.WaitUntilAfter).
	CommitWaitSpin time.Duration

	// UnsafeSkipCommitWait acknowledges and exposes commits without
	// waiting until their timestamp has surely passed. Transactions stay
	// serializable but are NO LONGER EXTERNALLY CONSISTENT when clocks
	// differ. For the negative control in tests and for benchmarks only.
	UnsafeSkipCommitWait bool

	// Registerer, if set, receives the DB's metrics (meridian_txn_*).
	Registerer prometheus.Registerer
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// ErrReadOnly is returned by Put and Delete inside View.
var ErrReadOnly = errors.New("txn: read-only transaction")

// ErrTxDone is returned by a Tx used after its function returned.
var ErrTxDone = errors.New("txn: transaction is finished")

// ErrCommitUnknown: the primary's commit call failed and its record could
// not be read, so the outcome is unknown until the resolver settles it
// (after the lock lease). It is not retried.
var ErrCommitUnknown = errors.New("txn: commit outcome unknown")

// RetryError is Update's error once MaxAttempts attempts conflicted. It
// matches ErrConflict with errors.Is, and the last attempt's error too.
type RetryError struct {
	Attempts int
	Last     error
}

func (e *RetryError) Error() string {
	return fmt.Sprintf("txn: gave up after %d conflicting attempts: %v", e.Attempts, e.Last)
}

// Unwrap lets errors.Is match ErrConflict and the last error.
func (e *RetryError) Unwrap() []error { return []error{ErrConflict, e.Last} }

// DB runs transactions over the shards. It is safe for concurrent use; each
// DB is one coordinator (its commit timestamps strictly increase).
type DB struct {
	o             Options
	shards        []Store
	tt            client.TimeSource
	maxKeyBytes   int
	maxValueBytes int
	prepareKeys   []int // per shard, 0: no limit
	log           *slog.Logger
	m             metrics

	mu   sync.Mutex
	last Timestamp

	// test hooks (export_test.go): a non-nil error from one stops the
	// commit at that point as if the coordinator died there.
	hookAfterPrepare       func(TxnID, PrimaryRef, Timestamp) error
	hookAfterPrimaryCommit func(TxnID, PrimaryRef, Timestamp) error
}

type metrics struct {
	commitWait prometheus.Histogram
	commits    prometheus.Counter
	retries    prometheus.Counter
}

func register[T prometheus.Collector](r prometheus.Registerer, c T) T {
	if r == nil {
		return c
	}
	if err := r.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(T); ok {
				return old
			}
		}
	}
	return c
}

func newMetrics(r prometheus.Registerer) metrics {
	return metrics{
		commitWait: register(r, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meridian_txn_commit_wait_seconds",
			Help:    "Time read-write transactions spent in commit wait (until TrueTime surely passed the commit timestamp).",
			Buckets: prometheus.ExponentialBuckets(1e-6, 4, 12),
		})),
		commits: register(r, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_txn_commits_total", Help: "Read-write transactions committed.",
		})),
		retries: register(r, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_txn_retries_total", Help: "Update attempts retried after a conflict or an abort by a resolver.",
		})),
	}
}

func minLimit(a, b int) int {
	if b > 0 && b < a {
		return b
	}
	return a
}

// Open checks the options and returns a DB; it installs the DB as every
// shard's Resolver.
func Open(o Options) (*DB, error) {
	if len(o.Shards) == 0 {
		return nil, fmt.Errorf("txn: Options.Shards: need at least one store: %w", ErrInvalid)
	}
	for i, s := range o.Shards {
		if s == nil {
			return nil, fmt.Errorf("txn: Options.Shards[%d]: nil store: %w", i, ErrInvalid)
		}
	}
	if o.Time == nil {
		return nil, fmt.Errorf("txn: Options.Time: a TrueTime source is required: %w", ErrInvalid)
	}
	for _, c := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{{"LockLease", &o.LockLease, DefaultLockLease}, {"BackoffBase", &o.BackoffBase, DefaultBackoffBase},
		{"BackoffMax", &o.BackoffMax, DefaultBackoffMax}, {"CommitTimeout", &o.CommitTimeout, DefaultCommitTimeout}} {
		if *c.v < 0 {
			return nil, fmt.Errorf("txn: Options.%s: must be ≥ 0, got %v: %w", c.name, *c.v, ErrInvalid)
		}
		if *c.v == 0 {
			*c.v = c.def
		}
	}
	for _, c := range []struct {
		name string
		v    *int
		def  int
	}{{"MaxAttempts", &o.MaxAttempts, DefaultMaxAttempts}, {"MaxKeyBytes", &o.MaxKeyBytes, DefaultMaxKeyBytes},
		{"MaxValueBytes", &o.MaxValueBytes, DefaultMaxValueBytes}, {"MaxWrites", &o.MaxWrites, DefaultMaxWrites}} {
		if *c.v < 0 {
			return nil, fmt.Errorf("txn: Options.%s: must be ≥ 0, got %d: %w", c.name, *c.v, ErrInvalid)
		}
		if *c.v == 0 {
			*c.v = c.def
		}
	}
	if o.CommitWaitSpin == 0 {
		o.CommitWaitSpin = DefaultCommitWaitSpin
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	db := &DB{
		o: o, shards: slices.Clone(o.Shards), tt: o.Time,
		maxKeyBytes: o.MaxKeyBytes, maxValueBytes: o.MaxValueBytes,
		prepareKeys: make([]int, len(o.Shards)),
		log:         o.Logger, m: newMetrics(o.Registerer),
	}
	for i, s := range db.shards {
		if l, ok := s.(Limiter); ok {
			lim := l.Limits()
			db.maxKeyBytes = minLimit(db.maxKeyBytes, lim.MaxKeyBytes)
			db.maxValueBytes = minLimit(db.maxValueBytes, lim.MaxValueBytes)
			db.prepareKeys[i] = lim.MaxPrepareKeys
		}
		s.SetResolver(db)
	}
	return db, nil
}

// ShardOf returns the index of the shard that holds key (FNV-1a 64 of the
// key modulo the number of shards).
func (db *DB) ShardOf(key string) int {
	h := fnv.New64a()
	h.Write([]byte(key))
	return int(h.Sum64() % uint64(len(db.shards)))
}

func newTxnID() TxnID {
	var b [16]byte
	rand.Read(b[:])
	return TxnID(hex.EncodeToString(b[:]))
}

func (db *DB) nowLatest(ctx context.Context) (Timestamp, error) {
	iv, err := db.tt.Now(ctx)
	if err != nil {
		return 0, fmt.Errorf("txn: TrueTime: %w", err)
	}
	return iv.LatestNS, nil
}

// View runs fn in a read-only transaction: a snapshot at TrueTime's
// latest at the start, which contains every transaction acknowledged
// before View was called. Reads wait for each shard's safe time. No
// commit wait, no retries.
func (db *DB) View(ctx context.Context, fn func(tx *Tx) error) error {
	_, err := db.ViewTS(ctx, fn)
	return err
}

// ViewTS is View that also returns the snapshot timestamp.
func (db *DB) ViewTS(ctx context.Context, fn func(tx *Tx) error) (Timestamp, error) {
	ts, err := db.nowLatest(ctx)
	if err != nil {
		return 0, err
	}
	tx := db.newTx(ctx, ts, false)
	err = fn(tx)
	tx.done = true
	return ts, err
}

// Update runs fn in a read-write transaction and commits it. fn may run
// several times (each conflicting attempt is retried with jittered
// backoff), so it must not have effects outside tx. When Update returns
// nil, the commit is durable on every store it needs and its timestamp
// has surely passed (commit wait): every transaction that starts later,
// on any node, sees it. When it returns an error, nothing of fn's writes
// is visible, except with ErrCommitUnknown.
func (db *DB) Update(ctx context.Context, fn func(tx *Tx) error) error {
	_, err := db.UpdateTS(ctx, fn)
	return err
}

// UpdateTS is Update that also returns the commit timestamp (the snapshot
// timestamp when fn wrote nothing).
func (db *DB) UpdateTS(ctx context.Context, fn func(tx *Tx) error) (Timestamp, error) {
	var last error
	for attempt := 1; ; attempt++ {
		ts, err := db.attempt(ctx, fn)
		if err == nil {
			return ts, nil
		}
		if !errors.Is(err, ErrConflict) && !errors.Is(err, ErrAborted) || errors.Is(err, ErrCommitUnknown) {
			return 0, err
		}
		last = err
		if attempt >= db.o.MaxAttempts {
			return 0, &RetryError{Attempts: attempt, Last: last}
		}
		db.m.retries.Inc()
		if err := db.backoff(ctx, attempt); err != nil {
			return 0, fmt.Errorf("txn: waiting to retry after %v: %w", last, err)
		}
	}
}

func (db *DB) backoff(ctx context.Context, attempt int) error {
	d := db.o.BackoffBase << min(attempt-1, 30)
	if d > db.o.BackoffMax || d <= 0 {
		d = db.o.BackoffMax
	}
	return SleepJittered(ctx, d)
}

// SleepJittered sleeps for a duration drawn uniformly from [d/2, d] (so
// that retrying clients spread out), or until ctx ends. Backends use it
// for their own retries too.
func SleepJittered(ctx context.Context, d time.Duration) error {
	d = d/2 + mrand.N(d/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (db *DB) attempt(ctx context.Context, fn func(tx *Tx) error) (Timestamp, error) {
	readTS, err := db.nowLatest(ctx)
	if err != nil {
		return 0, err
	}
	tx := db.newTx(ctx, readTS, true)
	err = fn(tx)
	tx.done = true
	if err != nil {
		return 0, err
	}
	if tx.err != nil {
		return 0, tx.err
	}
	return db.commit(ctx, tx)
}

// part is one shard's share of a commit.
type part struct {
	shard int
	req   PrepareRequest
}

func (db *DB) parts(tx *Tx, id TxnID) ([]*part, error) {
	byShard := map[int]*part{}
	get := func(i int) *part {
		p := byShard[i]
		if p == nil {
			p = &part{shard: i, req: PrepareRequest{Txn: id, ReadTS: tx.readTS, Lease: db.o.LockLease}}
			byShard[i] = p
		}
		return p
	}
	primary := PrimaryRef{Shard: db.ShardOf(tx.order[0]), Key: tx.order[0]}
	for _, k := range tx.order {
		w := tx.writes[k]
		get(db.ShardOf(k)).req.Writes = append(get(db.ShardOf(k)).req.Writes, *w)
	}
	for i, keys := range tx.reads {
		for k := range keys {
			get(i).req.Reads = append(get(i).req.Reads, k)
		}
	}
	for i, pfx := range tx.scans {
		for p := range pfx {
			get(i).req.Scans = append(get(i).req.Scans, p)
		}
	}
	out := make([]*part, 0, len(byShard))
	for _, p := range byShard {
		p.req.Primary = primary
		p.req.IsPrimary = p.shard == primary.Shard
		slices.Sort(p.req.Reads)
		slices.Sort(p.req.Scans)
		if lim := db.prepareKeys[p.shard]; lim > 0 {
			if n := len(p.req.Reads) + len(p.req.Scans) + len(p.req.Writes); n > lim {
				return nil, fmt.Errorf("txn: shard %d: %d keys read, scanned or written in one transaction, the store's limit is %d: %w",
					p.shard, n, lim, ErrTooLarge)
			}
		}
		out = append(out, p)
	}
	// The primary first: the commit point, and the order of secondaries is
	// irrelevant.
	slices.SortFunc(out, func(a, b *part) int {
		if a.req.IsPrimary != b.req.IsPrimary {
			if a.req.IsPrimary {
				return -1
			}
			return 1
		}
		return a.shard - b.shard
	})
	return out, nil
}

// each runs f on every part concurrently and returns the first error.
func each(parts []*part, f func(p *part) error) error {
	if len(parts) == 1 {
		return f(parts[0])
	}
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, p := range parts {
		wg.Go(func() { errs[i] = f(p) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (db *DB) detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), db.o.CommitTimeout)
}

// abortAll aborts the transaction on every participant (before the commit
// point only).
func (db *DB) abortAll(ctx context.Context, id TxnID, parts []*part) {
	actx, cancel := db.detached(ctx)
	defer cancel()
	if err := each(parts, func(p *part) error { return db.shards[p.shard].Abort(actx, id) }); err != nil {
		// The locks stay until their lease ends; the resolver then finds the
		// primary's record (Aborted, or aborts it).
		db.log.Warn("txn: abort failed; locks are resolved after the lease", "txn", id, "err", err)
	}
}

func (db *DB) commitTS(ctx context.Context, maxPrepare Timestamp) (Timestamp, error) {
	latest, err := db.nowLatest(ctx)
	if err != nil {
		return 0, err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	s := max(latest, maxPrepare, db.last+1)
	db.last = s
	return s, nil
}

func (db *DB) commit(ctx context.Context, tx *Tx) (Timestamp, error) {
	if len(tx.order) == 0 {
		// Nothing written: the snapshot reads are the transaction.
		return tx.readTS, nil
	}
	id := newTxnID()
	parts, err := db.parts(tx, id)
	if err != nil {
		return 0, err
	}
	primary := parts[0]
	var pmu sync.Mutex
	var maxPrepare Timestamp
	err = each(parts, func(p *part) error {
		ts, err := db.shards[p.shard].Prepare(ctx, p.req)
		if err != nil {
			return fmt.Errorf("txn: prepare on shard %d: %w", p.shard, err)
		}
		pmu.Lock()
		maxPrepare = max(maxPrepare, ts)
		pmu.Unlock()
		return nil
	})
	if err != nil {
		db.abortAll(ctx, id, parts)
		return 0, err
	}
	s, err := db.commitTS(ctx, maxPrepare)
	if err != nil {
		db.abortAll(ctx, id, parts)
		return 0, err
	}
	if h := db.hookAfterPrepare; h != nil {
		if err := h(id, primary.req.Primary, s); err != nil {
			return 0, err
		}
	}
	if !db.o.UnsafeSkipCommitWait {
		start := time.Now()
		if err := db.commitWait(ctx, s); err != nil {
			db.abortAll(ctx, id, parts)
			return 0, fmt.Errorf("txn: commit wait for %d (aborted, nothing committed): %w", s, err)
		}
		db.m.commitWait.Observe(time.Since(start).Seconds())
	}
	// From here on the caller's context no longer stops anything: the
	// decision is made by the primary's Commit, the commit point.
	cctx, cancel := db.detached(ctx)
	defer cancel()
	ps := db.shards[primary.shard]
	if err := ps.Commit(cctx, id, s); err != nil {
		st, serr := ps.Status(cctx, id)
		switch {
		case serr == nil && st.State == Committed && st.TS == s:
			// The commit took effect; only its answer was lost.
		case errors.Is(err, ErrAborted) || serr == nil && st.State == Aborted:
			db.abortAll(ctx, id, parts[1:])
			return 0, fmt.Errorf("txn: commit on primary shard %d: %w", primary.shard, err)
		default:
			return 0, fmt.Errorf("txn: commit %s at %d on primary shard %d: %w (%w; status: %v)",
				id, s, primary.shard, ErrCommitUnknown, err, serr)
		}
	}
	db.m.commits.Inc()
	if h := db.hookAfterPrimaryCommit; h != nil {
		if err := h(id, primary.req.Primary, s); err != nil {
			return s, err
		}
	}
	if err := each(parts[1:], func(p *part) error { return db.shards[p.shard].Commit(cctx, id, s) }); err != nil {
		// Committed at the primary: readers that meet the remaining locks
		// roll them forward from its record.
		db.log.Warn("txn: committed; some secondaries are rolled forward later", "txn", id, "ts", s, "err", err)
	}
	return s, nil
}

// commitWait returns once TrueTime has been observed to be surely past s
// (Interval.After(s)), or when ctx ends.
func (db *DB) commitWait(ctx context.Context, s Timestamp) error {
	spin := db.o.CommitWaitSpin
	for {
		iv, err := db.tt.Now(ctx)
		if err != nil {
			// Unsynchronized or unreachable: the source's own wait keeps
			// waiting until it can show s has passed, or ctx ends.
			return db.tt.WaitUntilAfter(ctx, s)
		}
		if iv.After(s) {
			return nil
		}
		if spin < 0 {
			return db.tt.WaitUntilAfter(ctx, s)
		}
		if rem := time.Duration(iv.UntilAfterNS(s)); rem > spin {
			if err := db.tt.WaitUntilAfter(ctx, s-spin.Nanoseconds()); err != nil {
				return err
			}
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		runtime.Gosched()
	}
}

// Resolve implements Resolver from the primary's status record: a final
// record is returned as it is; a pending one whose lock lease ended is
// aborted on the primary (atomically, unless it committed meanwhile).
func (db *DB) Resolve(ctx context.Context, l LockInfo) (Status, error) {
	if l.Primary.Shard < 0 || l.Primary.Shard >= len(db.shards) {
		return Status{}, fmt.Errorf("txn: resolve %s: primary shard %d of %d: %w", l.Txn, l.Primary.Shard, len(db.shards), ErrInvalid)
	}
	p := db.shards[l.Primary.Shard]
	st, err := p.Status(ctx, l.Txn)
	if err != nil || st.State != Pending || !l.Expired {
		return st, err
	}
	return p.AbortIfPending(ctx, l.Txn)
}
