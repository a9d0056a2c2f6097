package check_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"pgregory.net/rapid"

	"github.com/meridiantime/meridian/txn"
	"github.com/meridiantime/meridian/txn/check"
)

func put(k, v string) check.Op { return check.Op{Kind: check.Put, Key: k, Value: []byte(v)} }
func get(k, v string) check.Op {
	return check.Op{Kind: check.Get, Key: k, Value: []byte(v), Found: v != ""}
}

func TestExternalConsistencyRule(t *testing.T) {
	h := []check.Txn{
		{ID: 0, Start: 0, Ack: 10, TS: 100, Ops: []check.Op{put("x", "1")}},
		// Started after T0's ack with a smaller timestamp: a violation,
		// though its read is consistent with timestamp order.
		{ID: 1, Start: 11, Ack: 20, TS: 90, Ops: []check.Op{get("x", "")}},
		// Concurrent with T0 (started before its ack): no constraint.
		{ID: 2, Start: 5, Ack: 30, TS: 95, Ops: []check.Op{get("x", "")}},
		// A read-only T3 acknowledged before T4 started, T4 below it: no
		// commit to order, and T4 does not touch what T3 read.
		{ID: 3, Start: 40, Ack: 41, TS: 500, Ops: []check.Op{get("x", "1")}},
		{ID: 4, Start: 42, Ack: 50, TS: 300, Ops: []check.Op{put("y", "1")}},
	}
	r := check.Check(h)
	if r.ExternalConsistency != 1 || r.Serializability != 0 || r.Examples[0].T1 != 0 || r.Examples[0].T2 != 1 {
		t.Fatalf("%v", r)
	}
	// Equal timestamps are a violation too (s1 < s2 is required).
	h[1].TS = 100
	if r := check.Check(h[:2]); r.ExternalConsistency != 1 {
		t.Fatalf("equal timestamps: %v", r)
	}
}

func TestSerializabilityRule(t *testing.T) {
	base := []check.Txn{
		{ID: 0, Start: 0, Ack: 1, TS: 10, Ops: []check.Op{put("a/1", "x"), put("a/2", "y")}},
		{ID: 1, Start: 2, Ack: 3, TS: 20, Ops: []check.Op{get("a/1", "x"), put("a/1", "z"), get("a/1", "z"),
			{Kind: check.Delete, Key: "a/2"}, {Kind: check.Scan, Key: "a/", Result: []txn.KV{{Key: "a/1", Value: []byte("z")}}}}},
		{ID: 2, Start: 2, Ack: 5, TS: 20, Ops: []check.Op{{Kind: check.Scan, Key: "a/", Limit: 5, Result: []txn.KV{{Key: "a/1", Value: []byte("z")}}}}},
		{ID: 3, Start: 2, Ack: 5, TS: 19, Ops: []check.Op{get("a/1", "x"), get("a/2", "y")}},
	}
	if r := check.Check(base); !r.OK() {
		t.Fatalf("a correct history: %v", r)
	}
	mutations := map[string]func(h []check.Txn){
		"stale read":              func(h []check.Txn) { h[1].Ops[0] = get("a/1", "") },
		"read of a future commit": func(h []check.Txn) { h[3].Ops[0] = get("a/1", "z") },
		"scan missing a delete": func(h []check.Txn) {
			h[2].Ops[0].Result = append(h[2].Ops[0].Result, txn.KV{Key: "a/2", Value: []byte("y")})
		},
		"same-timestamp writers": func(h []check.Txn) { h[2].Ops = append(h[2].Ops, put("a/1", "w")) },
		"own write not seen":     func(h []check.Txn) { h[1].Ops[2] = get("a/1", "x") },
	}
	for name, m := range mutations {
		h := make([]check.Txn, len(base))
		for i := range base {
			h[i] = base[i]
			h[i].Ops = append([]check.Op(nil), base[i].Ops...)
		}
		m(h)
		if r := check.Check(h); r.Serializability == 0 {
			t.Errorf("%s: not detected: %v", name, r)
		}
	}
}

// A random serial history (one transaction after another, timestamps
// increasing, reads taken from a model) passes both checkers; changing one
// value read makes both fail.
func TestCheckersOnRandomSerialHistories(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(1, 25).Draw(rt, "n")
		state := map[string]string{}
		keys := []string{"r/0", "r/1", "r/2"}
		var h []check.Txn
		var reads []int
		for i := range n {
			tx := check.Txn{ID: i, Client: i % 3, Start: int64(10 * i), Ack: int64(10*i + 5), TS: int64(100 * (i + 1))}
			for j := range rapid.IntRange(1, 4).Draw(rt, "ops") {
				k := rapid.SampledFrom(keys).Draw(rt, "key")
				if rapid.Bool().Draw(rt, "write") {
					v := fmt.Sprintf("%d.%d", i, j)
					tx.Ops = append(tx.Ops, put(k, v))
					state[k] = v
				} else {
					tx.Ops = append(tx.Ops, get(k, state[k]))
					reads = append(reads, i)
				}
			}
			h = append(h, tx)
		}
		if r := check.Check(h); !r.OK() {
			rt.Fatalf("serial history: %v", r)
		}
		if res, err := check.Linearizable(h, 10*time.Second, t.TempDir()); err != nil || res.Result != porcupine.Ok {
			rt.Fatalf("porcupine on a serial history: %v %v", res, err)
		}
		if len(reads) == 0 {
			return
		}
		ti := rapid.SampledFrom(reads).Draw(rt, "mutate")
		for j, o := range h[ti].Ops {
			if o.Kind == check.Get {
				h[ti].Ops[j] = get(o.Key, string(o.Value)+"!")
				break
			}
		}
		if r := check.Check(h); r.Serializability == 0 {
			rt.Fatalf("mutated read of T%d not detected", ti)
		}
		if res, _ := check.Linearizable(h, 10*time.Second, t.TempDir()); res.Result != porcupine.Illegal {
			rt.Fatalf("porcupine accepted a mutated read of T%d: %v", ti, res.Result)
		}
	})
}

// Porcupine judges real time: a read that starts after a write was
// acknowledged must see it, whatever the timestamps say; the HTML
// visualization is written for the illegal history.
func TestLinearizableRealTime(t *testing.T) {
	h := []check.Txn{
		{ID: 0, Client: 0, Start: 0, Ack: 10, TS: 200, Ops: []check.Op{put("x", "1")}},
		{ID: 1, Client: 1, Start: 20, Ack: 30, TS: 100, Ops: []check.Op{get("x", "")}},
	}
	dir := t.TempDir()
	res, err := check.Linearizable(h, 10*time.Second, dir)
	if err != nil || res.Result != porcupine.Illegal || !strings.HasPrefix(res.HTML, dir) {
		t.Fatalf("%+v %v", res, err)
	}
	if b, err := os.ReadFile(res.HTML); err != nil || !strings.Contains(string(b), "<html") {
		t.Fatalf("visualization %s: %v", res.HTML, err)
	}
	h[1].Start = 5 // concurrent: either order is fine
	if res, err := check.Linearizable(h, 10*time.Second, dir); err != nil || res.Result != porcupine.Ok {
		t.Fatalf("concurrent: %+v %v", res, err)
	}
}
