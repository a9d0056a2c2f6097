// Package txn runs externally consistent read-write and read-only
// transactions over several independent shards, as Spanner does: two-phase
// commit with TrueTime commit timestamps and commit wait, snapshot reads
// that wait for each shard's safe time, and recovery of a dead
// coordinator's transactions from the primary shard's status record.
//
// Each shard is a Store (store.go); backends live in txn/memory (the
// embedded default) and txn/etcd (each shard its own etcd cluster).
package txn
