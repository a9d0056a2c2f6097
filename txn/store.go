package txn

import (
	"context"
	"errors"
	"time"
)

// Timestamp is a commit, prepare or read timestamp: nanoseconds since the
// Unix epoch on TrueTime's scale. Zero means "none".
type Timestamp = int64

// TxnID names one transaction attempt. It is 32 lower-case hex digits
// (128 random bits), safe to embed in a key.
type TxnID string

// Write is one buffered mutation. Delete writes a tombstone version.
type Write struct {
	Key    string
	Value  []byte
	Delete bool
}

// KV is one visible key/value pair.
type KV struct {
	Key   string
	Value []byte
}

// PrimaryRef says where a transaction's status record lives: the shard
// index and the key (the first written key, in the coordinator's order).
type PrimaryRef struct {
	Shard int
	Key   string
}

// PrepareRequest is one participant shard's part of a read-write
// transaction.
type PrepareRequest struct {
	Txn     TxnID
	Primary PrimaryRef
	// IsPrimary is true on the shard that holds the status record.
	IsPrimary bool
	// ReadTS is the snapshot the transaction read at.
	ReadTS Timestamp
	// Reads are the keys read on this shard; Scans the prefixes scanned.
	// Prepare fails with ErrConflict if any of them has a committed version
	// newer than ReadTS or a lock of another transaction (serializability:
	// nothing the transaction read changed before it commits). From a
	// successful Prepare until Commit or Abort the shard also refuses, with
	// ErrConflict, another transaction's Prepare that writes one of these
	// keys or a key under one of these prefixes (the reads stay protected
	// up to the commit timestamp, which is chosen after every prepare).
	Reads []string
	Scans []string
	// Writes are this shard's mutations, locked until Commit or Abort.
	Writes []Write
	// Lease is how long the locks protect a coordinator that stops
	// answering; after it another transaction may resolve them from the
	// primary's status record.
	Lease time.Duration
}

// State is a transaction's fate as its primary records it.
type State uint8

const (
	// Pending: prepared (or unknown to this shard) with no decision yet.
	Pending State = iota
	// Committed at Status.TS.
	Committed
	// Aborted: will never commit.
	Aborted
)

// Status is a primary's status record.
type Status struct {
	State State
	TS    Timestamp // commit timestamp when State == Committed
}

// LockInfo describes a lock a reader or preparer ran into.
type LockInfo struct {
	Txn       TxnID
	Primary   PrimaryRef
	PrepareTS Timestamp
	// Expired is true when the lock's lease has ended.
	Expired bool
}

// Resolver decides the fate of a foreign transaction whose lock blocks a
// read or a prepare. The DB implements it from the primary's status
// record: Committed → roll the lock forward at that timestamp; Aborted →
// roll it back; Pending with an expired lease → abort it on the primary
// (atomically: only if it has not committed) and roll back.
type Resolver interface {
	Resolve(ctx context.Context, l LockInfo) (Status, error)
}

// Store is one shard: an independent multi-version key/value store. The
// memory and etcd backends implement it; the DB runs two-phase commit over
// several of them.
//
// Timestamp rules every implementation keeps (they make snapshot reads
// and commit wait correct):
//   - A read at ts records ts; every later prepare on this shard returns a
//     prepare timestamp > ts, so no commit can ever appear below a
//     snapshot that was already read.
//   - A read at ts waits (within ctx) while a lock with prepare timestamp
//     ≤ ts is pending, resolving expired ones through the Resolver; its
//     result is exactly the versions with commit timestamp ≤ ts.
//   - Prepare returns a timestamp greater than every read, prepare and
//     commit timestamp this shard has seen.
//   - Commit(ts) requires ts ≥ the prepare timestamp; it makes every write
//     of the transaction on this shard visible at ts atomically and
//     releases its locks. On the primary it also records Committed@ts, and
//     fails with ErrAborted if the record says Aborted.
//   - Everything a call did is durable when it returns nil (for etcd:
//     committed by the cluster).
type Store interface {
	// SetResolver is called once by the DB, before any other method.
	SetResolver(r Resolver)
	Get(ctx context.Context, key string, ts Timestamp) (value []byte, found bool, err error)
	// Scan returns up to limit visible pairs whose keys start with prefix,
	// in key order (limit ≤ 0: no limit).
	Scan(ctx context.Context, prefix string, limit int, ts Timestamp) ([]KV, error)
	Prepare(ctx context.Context, req PrepareRequest) (Timestamp, error)
	Commit(ctx context.Context, txn TxnID, ts Timestamp) error
	Abort(ctx context.Context, txn TxnID) error
	// Status reads (IsPrimary shards) the transaction's record.
	Status(ctx context.Context, txn TxnID) (Status, error)
	// AbortIfPending atomically records Aborted unless the record says
	// Committed, and returns the record as it stands afterwards.
	AbortIfPending(ctx context.Context, txn TxnID) (Status, error)
	Close() error
}

// Limits are a backend's own bounds (0: none). A Store that has tighter
// bounds than the DB's options implements Limiter; the DB enforces the
// smaller of the two before anything reaches the shard.
type Limits struct {
	MaxKeyBytes   int
	MaxValueBytes int
	// MaxPrepareKeys bounds len(Reads)+len(Scans)+len(Writes) of one
	// PrepareRequest (etcd: the operations of one Txn).
	MaxPrepareKeys int
}

// Limiter is implemented by a Store with limits of its own.
type Limiter interface {
	Limits() Limits
}

// Errors every backend returns (wrapped with detail; match with errors.Is).
var (
	// ErrConflict: another transaction holds a lock or committed a newer
	// version of a key this one read or writes. The DB retries.
	ErrConflict = errors.New("txn: conflict")
	// ErrAborted: the transaction was aborted (by a resolver) and will not
	// commit.
	ErrAborted = errors.New("txn: transaction aborted")
	// ErrTooLarge: a key, value or transaction exceeds a backend's limits.
	ErrTooLarge = errors.New("txn: too large")
	// ErrInvalid: malformed input (empty key, key with reserved bytes...).
	ErrInvalid = errors.New("txn: invalid input")
)
