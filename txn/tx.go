package txn

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Tx is one attempt of a transaction, valid only inside the function given
// to Update or View, and not safe for concurrent use.
type Tx struct {
	db       *DB
	ctx      context.Context
	readTS   Timestamp
	writable bool
	done     bool

	writes map[string]*Write
	order  []string // written keys in first-write order; order[0] is the primary
	reads  []map[string]struct{}
	scans  []map[string]struct{}
	err    error // first invalid write: the commit is refused
}

func (db *DB) newTx(ctx context.Context, readTS Timestamp, writable bool) *Tx {
	tx := &Tx{db: db, ctx: ctx, readTS: readTS, writable: writable}
	if writable {
		tx.writes = map[string]*Write{}
		tx.reads = make([]map[string]struct{}, len(db.shards))
		tx.scans = make([]map[string]struct{}, len(db.shards))
	}
	return tx
}

// ReadTS is the snapshot timestamp the transaction reads at.
func (tx *Tx) ReadTS() Timestamp { return tx.readTS }

func short(key string) string {
	if len(key) > 32 {
		return fmt.Sprintf("%q… (%d bytes)", key[:32], len(key))
	}
	return fmt.Sprintf("%q", key)
}

func (tx *Tx) checkKey(op, key string) error {
	if tx.done {
		return ErrTxDone
	}
	if key == "" {
		return fmt.Errorf("txn: %s: empty key: %w", op, ErrInvalid)
	}
	if len(key) > tx.db.maxKeyBytes {
		return fmt.Errorf("txn: %s: key %s is %d bytes, limit %d: %w", op, short(key), len(key), tx.db.maxKeyBytes, ErrTooLarge)
	}
	return nil
}

// Get returns key's value in the transaction's snapshot (its own writes
// included).
func (tx *Tx) Get(key string) (value []byte, found bool, err error) {
	if err := tx.checkKey("get", key); err != nil {
		return nil, false, err
	}
	if w := tx.writes[key]; w != nil {
		if w.Delete {
			return nil, false, nil
		}
		return bytes.Clone(w.Value), true, nil
	}
	i := tx.db.ShardOf(key)
	v, ok, err := tx.db.shards[i].Get(tx.ctx, key, tx.readTS)
	if err != nil {
		return nil, false, fmt.Errorf("txn: get %s on shard %d: %w", short(key), i, err)
	}
	if tx.writable {
		if tx.reads[i] == nil {
			tx.reads[i] = map[string]struct{}{}
		}
		tx.reads[i][key] = struct{}{}
	}
	return v, ok, nil
}

// Scan returns up to limit pairs (limit ≤ 0: all) whose keys start with
// prefix, in key order, from every shard, with the transaction's own
// writes applied.
func (tx *Tx) Scan(prefix string, limit int) ([]KV, error) {
	if tx.done {
		return nil, ErrTxDone
	}
	// Own deletes may hide keys a shard returns: ask for that many more.
	own := 0
	for k, w := range tx.writes {
		if w.Delete && strings.HasPrefix(k, prefix) {
			own++
		}
	}
	perShard := limit
	if limit > 0 {
		perShard = limit + own
	}
	res := make([][]KV, len(tx.db.shards))
	errs := make([]error, len(tx.db.shards))
	var wg sync.WaitGroup
	for i, s := range tx.db.shards {
		wg.Go(func() { res[i], errs[i] = s.Scan(tx.ctx, prefix, perShard, tx.readTS) })
	}
	wg.Wait()
	merged := map[string][]byte{}
	for i := range res {
		if errs[i] != nil {
			return nil, fmt.Errorf("txn: scan %s on shard %d: %w", short(prefix), i, errs[i])
		}
		for _, kv := range res[i] {
			merged[kv.Key] = kv.Value
		}
		if tx.writable {
			if tx.scans[i] == nil {
				tx.scans[i] = map[string]struct{}{}
			}
			tx.scans[i][prefix] = struct{}{}
		}
	}
	// A shard that returned perShard pairs may have more beyond its last
	// key: only keys up to the smallest such cut are complete.
	cut := ""
	if limit > 0 {
		for i := range res {
			if len(res[i]) == perShard && perShard > 0 {
				if last := res[i][len(res[i])-1].Key; cut == "" || last < cut {
					cut = last
				}
			}
		}
	}
	for k, w := range tx.writes {
		if !strings.HasPrefix(k, prefix) || cut != "" && k > cut {
			continue
		}
		if w.Delete {
			delete(merged, k)
		} else {
			merged[k] = bytes.Clone(w.Value)
		}
	}
	out := make([]KV, 0, len(merged))
	for k, v := range merged {
		if cut == "" || k <= cut {
			out = append(out, KV{Key: k, Value: v})
		}
	}
	slices.SortFunc(out, func(a, b KV) int { return strings.Compare(a.Key, b.Key) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (tx *Tx) write(op string, w Write) error {
	if err := tx.checkKey(op, w.Key); err != nil {
		tx.err = firstErr(tx.err, err)
		return err
	}
	if !tx.writable {
		return fmt.Errorf("txn: %s %s: %w", op, short(w.Key), ErrReadOnly)
	}
	if len(w.Value) > tx.db.maxValueBytes {
		err := fmt.Errorf("txn: %s: value of key %s is %d bytes, limit %d: %w", op, short(w.Key), len(w.Value), tx.db.maxValueBytes, ErrTooLarge)
		tx.err = firstErr(tx.err, err)
		return err
	}
	if tx.writes[w.Key] == nil {
		if len(tx.order) >= tx.db.o.MaxWrites {
			err := fmt.Errorf("txn: %s %s: more than %d keys written in one transaction: %w", op, short(w.Key), tx.db.o.MaxWrites, ErrTooLarge)
			tx.err = firstErr(tx.err, err)
			return err
		}
		tx.order = append(tx.order, w.Key)
	}
	w.Value = bytes.Clone(w.Value)
	tx.writes[w.Key] = &w
	return nil
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// Put buffers a write of value to key; it becomes visible when the
// transaction commits. An invalid Put fails the whole transaction even if
// its error is ignored.
func (tx *Tx) Put(key string, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	return tx.write("put", Write{Key: key, Value: value})
}

// Delete buffers a deletion of key.
func (tx *Tx) Delete(key string) error {
	return tx.write("delete", Write{Key: key, Delete: true})
}
