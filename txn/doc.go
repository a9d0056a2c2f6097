// Package txn runs externally consistent read-write and read-only
// transactions over several independent shards, as Spanner does: two-phase
// commit with TrueTime commit timestamps and commit wait, snapshot reads
// that wait for each shard's safe time, and recovery of a dead
// coordinator's transactions from the primary shard's status record.
//
// Each shard is a Store (store.go); backends live in txn/memory (the
// embedded default) and txn/etcd (each shard its own etcd cluster). The
// DB (db.go, tx.go) is the coordinator; txn/check verifies histories and
// txn/txntest drives skewed-clock workloads. docs/transactions.md is the
// user's guide.
//
// Invariants of the DB:
//   - A read-write commit timestamp is max(TT.Now().Latest, every prepare
//     timestamp, this DB's previous commit + 1).
//   - Nothing is committed on any shard, and Update does not return nil,
//     before TrueTime was observed with After(s) (commit wait), unless
//     Options.UnsafeSkipCommitWait is set.
//   - The primary's Commit is the commit point: before it every failure
//     aborts every participant; after it the caller's context no longer
//     stops anything and the transaction is reported committed.
//   - Resolve never aborts a transaction whose lock lease is live, and
//     aborts a pending one only through the primary's AbortIfPending.
//
// It must never read the host clock for timestamps (only Options.Time),
// nor retry a transaction whose commit outcome is unknown.
package txn
