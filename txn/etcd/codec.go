package etcdstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/meridiantime/meridian/txn"
)

// Key layout under the store's prefix P (the user key never contains
// sep, so one user key's versions are contiguous and no key is a prefix
// of another's version range):
//
//	P h                     high-water mark: every read, prepare and commit ts seen
//	P d/<key>\x00<inv ts>   a committed version; inv ts = MaxInt64 − ts, 19 digits
//	P k/<key>               the key index: the key was ever prepared for writing (empty)
//	P l/<key>               the lock of a prepared write (txn id, primary, prepare ts)
//	P r/<key>\x00<txn>      a prepared transaction's read lock on a key it read
//	P q/<prefix>\x00<txn>   a prepared transaction's read lock on a prefix it scanned
//	P t/<txn>               the transaction's record on this shard (its buffered writes)
//	P a/<txn>               the liveness key, attached to the prepare's lease
//	P s/<txn>               the status record: C<ts> or A
const sep = "\x00"

// pad renders a non-negative int64 with 19 digits, so that etcd's
// lexicographic byte order is numeric order.
func pad(v int64) string { return fmt.Sprintf("%019d", v) }

func inv(ts txn.Timestamp) int64 { return math.MaxInt64 - ts }

type keys struct{ p string }

func (k keys) hw() string             { return k.p + "h" }
func (k keys) dataDir() string        { return k.p + "d/" }
func (k keys) data(key string) string { return k.p + "d/" + key + sep }
func (k keys) version(key string, ts txn.Timestamp) string {
	return k.data(key) + pad(inv(ts))
}
func (k keys) indexDir() string                         { return k.p + "k/" }
func (k keys) index(key string) string                  { return k.p + "k/" + key }
func (k keys) lockDir() string                          { return k.p + "l/" }
func (k keys) lock(key string) string                   { return k.p + "l/" + key }
func (k keys) readLock(key string, id txn.TxnID) string { return k.p + "r/" + key + sep + string(id) }
func (k keys) readLocks(key string) (string, string) {
	return k.p + "r/" + key + sep, k.p + "r/" + key + "\x01"
}
func (k keys) scanLockDir() string { return k.p + "q/" }
func (k keys) scanLock(prefix string, id txn.TxnID) string {
	return k.p + "q/" + prefix + sep + string(id)
}
func (k keys) rec(id txn.TxnID) string   { return k.p + "t/" + string(id) }
func (k keys) alive(id txn.TxnID) string { return k.p + "a/" + string(id) }
func (k keys) status(id txn.TxnID) string {
	return k.p + "s/" + string(id)
}

// parseVersion splits a data key (without the prefix P d/) into the user
// key and its commit timestamp.
func parseVersion(rest string) (string, txn.Timestamp, bool) {
	i := strings.LastIndex(rest, sep)
	if i < 0 || len(rest)-i-1 != 19 {
		return "", 0, false
	}
	var v int64
	for _, c := range rest[i+1:] {
		if c < '0' || c > '9' {
			return "", 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return rest[:i], inv(v), true
}

// A version's value: 'v' then the bytes, or 'x' for a tombstone.
func encodeVersion(w txn.Write) string {
	if w.Delete {
		return "x"
	}
	return "v" + string(w.Value)
}

func decodeVersion(b []byte) (value []byte, found bool) {
	if len(b) == 0 || b[0] != 'v' {
		return nil, false
	}
	return append([]byte{}, b[1:]...), true
}

func encodeStatus(s txn.Status) string {
	if s.State == txn.Aborted {
		return "A"
	}
	return "C" + pad(s.TS)
}

func decodeStatus(b []byte) (txn.Status, error) {
	switch {
	case len(b) == 1 && b[0] == 'A':
		return txn.Status{State: txn.Aborted}, nil
	case len(b) == 20 && b[0] == 'C':
		var v int64
		for _, c := range b[1:] {
			if c < '0' || c > '9' {
				return txn.Status{}, fmt.Errorf("etcdstore: bad status record %q", b)
			}
			v = v*10 + int64(c-'0')
		}
		return txn.Status{State: txn.Committed, TS: v}, nil
	}
	return txn.Status{}, fmt.Errorf("etcdstore: bad status record %q", b)
}

// lockRec is the value of a lock key.
type lockRec struct {
	Txn       txn.TxnID
	Primary   txn.PrimaryRef
	PrepareTS txn.Timestamp
}

// txnRec is the value of a transaction's record on a shard: what Commit
// writes and which locks it releases.
type txnRec struct {
	IsPrimary bool
	Primary   txn.PrimaryRef
	PrepareTS txn.Timestamp
	Writes    []txn.Write
	// Reads and Scans hold read locks (keys read but not written).
	Reads, Scans []string
}

var errCorrupt = errors.New("etcdstore: corrupt record")

type enc struct{ b []byte }

func (e *enc) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) bytes(s []byte)   { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *enc) str(s string)     { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }

type dec struct {
	b   []byte
	err error
}

func (d *dec) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errCorrupt
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *dec) str() string { return string(d.bytes()) }

const recVersion = 1

func encodeLock(l lockRec) string {
	e := enc{b: []byte{recVersion}}
	e.str(string(l.Txn))
	e.uvarint(uint64(l.Primary.Shard))
	e.str(l.Primary.Key)
	e.uvarint(uint64(l.PrepareTS))
	return string(e.b)
}

func decodeLock(b []byte) (lockRec, error) {
	if len(b) == 0 || b[0] != recVersion {
		return lockRec{}, errCorrupt
	}
	d := dec{b: b[1:]}
	l := lockRec{Txn: txn.TxnID(d.str())}
	l.Primary.Shard = int(d.uvarint())
	l.Primary.Key = d.str()
	l.PrepareTS = int64(d.uvarint())
	if d.err != nil || len(d.b) != 0 {
		return lockRec{}, errCorrupt
	}
	return l, nil
}

func encodeRec(r txnRec) string {
	e := enc{b: []byte{recVersion}}
	flags := uint64(0)
	if r.IsPrimary {
		flags = 1
	}
	e.uvarint(flags)
	e.uvarint(uint64(r.Primary.Shard))
	e.str(r.Primary.Key)
	e.uvarint(uint64(r.PrepareTS))
	e.uvarint(uint64(len(r.Writes)))
	for _, w := range r.Writes {
		e.str(w.Key)
		if w.Delete {
			e.uvarint(1)
		} else {
			e.uvarint(0)
			e.bytes(w.Value)
		}
	}
	for _, list := range [][]string{r.Reads, r.Scans} {
		e.uvarint(uint64(len(list)))
		for _, k := range list {
			e.str(k)
		}
	}
	return string(e.b)
}

func decodeRec(b []byte) (txnRec, error) {
	if len(b) == 0 || b[0] != recVersion {
		return txnRec{}, errCorrupt
	}
	d := dec{b: b[1:]}
	var r txnRec
	r.IsPrimary = d.uvarint() == 1
	r.Primary.Shard = int(d.uvarint())
	r.Primary.Key = d.str()
	r.PrepareTS = int64(d.uvarint())
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		return txnRec{}, errCorrupt
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		w := txn.Write{Key: d.str()}
		if d.uvarint() == 1 {
			w.Delete = true
		} else {
			w.Value = d.bytes()
		}
		r.Writes = append(r.Writes, w)
	}
	for _, list := range []*[]string{&r.Reads, &r.Scans} {
		n := d.uvarint()
		if n > uint64(len(d.b)) {
			return txnRec{}, errCorrupt
		}
		for i := uint64(0); i < n && d.err == nil; i++ {
			*list = append(*list, d.str())
		}
	}
	if d.err != nil || len(d.b) != 0 {
		return txnRec{}, errCorrupt
	}
	return r, nil
}
