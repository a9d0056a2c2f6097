package etcdstore

import (
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/meridiantime/meridian/txn"
)

// Version keys: etcd's byte order is newest-first within a key, keys
// never interleave, and the key parses back to (key, ts).
func FuzzVersionKeyOrder(f *testing.F) {
	f.Add("a", "ab", int64(1), int64(2))
	f.Add("k", "k", int64(math.MaxInt64-1), int64(1))
	f.Fuzz(func(t *testing.T, k1, k2 string, ts1, ts2 int64) {
		if k1 == "" || k2 == "" || strings.Contains(k1+k2, sep) || ts1 <= 0 || ts2 <= 0 || ts1 == math.MaxInt64 || ts2 == math.MaxInt64 {
			return
		}
		ks := keys{p: "P/"}
		v1, v2 := ks.version(k1, ts1), ks.version(k2, ts2)
		for _, c := range []struct {
			v  string
			k  string
			ts int64
		}{{v1, k1, ts1}, {v2, k2, ts2}} {
			k, ts, ok := parseVersion(strings.TrimPrefix(c.v, ks.dataDir()))
			if !ok || k != c.k || ts != c.ts {
				t.Fatalf("parse %q: %q %d %v, want %q %d", c.v, k, ts, ok, c.k, c.ts)
			}
			// Inside the key's own range, outside every other key's.
			if !strings.HasPrefix(c.v, ks.data(c.k)) {
				t.Fatalf("%q outside %q's range", c.v, c.k)
			}
		}
		if k1 == k2 && ts1 != ts2 && (ts1 > ts2) != (v1 < v2) {
			t.Fatalf("ts %d vs %d: keys %q vs %q not newest-first", ts1, ts2, v1, v2)
		}
		if k1 != k2 && (k1 < k2) != (v1 < v2) {
			t.Fatalf("keys %q < %q: versions %q, %q out of key order", k1, k2, v1, v2)
		}
		if k1 != k2 && strings.HasPrefix(v2, ks.data(k1)) {
			t.Fatalf("a version of %q lies in %q's range", k2, k1)
		}
	})
}

// Records and locks round-trip; a truncated record is refused, never
// misread.
func FuzzRecordRoundTrip(f *testing.F) {
	f.Add("p", "k", []byte("v"), false, "r", "s", int64(5), 3, true)
	f.Fuzz(func(t *testing.T, pk, wk string, val []byte, del bool, rk, sk string, pts int64, shard int, prim bool) {
		if pts < 0 || shard < 0 {
			return
		}
		w := txn.Write{Key: wk, Value: val, Delete: del}
		if del {
			w.Value = nil
		}
		r := txnRec{IsPrimary: prim, Primary: txn.PrimaryRef{Shard: shard, Key: pk}, PrepareTS: pts,
			Writes: []txn.Write{w}, Reads: []string{rk}, Scans: []string{sk}}
		enc := encodeRec(r)
		got, err := decodeRec([]byte(enc))
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Writes[0].Value) == 0 {
			got.Writes[0].Value = w.Value
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("round trip: %+v → %+v", r, got)
		}
		for n := range len(enc) {
			if _, err := decodeRec([]byte(enc[:n])); err == nil {
				t.Fatalf("a record cut to %d of %d bytes decoded", n, len(enc))
			}
		}
		l := lockRec{Txn: txn.TxnID(rk), Primary: r.Primary, PrepareTS: pts}
		gl, err := decodeLock([]byte(encodeLock(l)))
		if err != nil || gl != l {
			t.Fatalf("lock round trip: %+v → %+v, %v", l, gl, err)
		}
		for _, st := range []txn.Status{{State: txn.Aborted}, {State: txn.Committed, TS: pts}} {
			if g, err := decodeStatus([]byte(encodeStatus(st))); err != nil || g != st {
				t.Fatalf("status round trip: %+v → %+v, %v", st, g, err)
			}
		}
	})
}
