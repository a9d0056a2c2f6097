// Package check verifies a recorded history of committed transactions.
//
// A history holds, per committed transaction, its real-time start and
// acknowledgement instants taken from ONE harness clock (whatever the
// clients' own clocks say), its timestamp (commit timestamp, or the
// snapshot timestamp of a transaction that wrote nothing) and its
// operations in program order with what each read returned.
//
// Check tests two properties in O(n log n + total operations):
//   - External consistency: if T1 wrote something and was acknowledged
//     before T2 started, T1's timestamp is below T2's. (For a T1 that
//     wrote nothing there is no commit to order: whether it saw what it
//     had to see is the serializability rule below.)
//   - Serializability in timestamp order: replaying the transactions by
//     timestamp reproduces every value read. A transaction with writes
//     reads the state just before its timestamp (plus its own writes); one
//     without reads the state at its timestamp. Two writers may share a
//     timestamp only if neither touches what the other writes.
//
// Linearizable is an independent second opinion from porcupine, a checker
// written elsewhere: the whole store is one object and each committed
// transaction one operation over its real-time [start, ack].
//
// The package never trusts the system under test: it needs only the
// history.
package check

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/meridiantime/meridian/txn"
)

// OpKind is what an operation did.
type OpKind uint8

const (
	Get OpKind = iota
	Put
	Delete
	Scan
)

func (k OpKind) String() string {
	return [...]string{"get", "put", "delete", "scan"}[k]
}

// Op is one operation of a transaction, with what it returned.
type Op struct {
	Kind  OpKind
	Key   string // Get, Put, Delete: the key; Scan: the prefix
	Value []byte // Get: the value read; Put: the value written
	Found bool   // Get
	Limit int    // Scan (≤ 0: no limit)
	// Result is what a Scan returned.
	Result []txn.KV
}

// Txn is one committed transaction of a history.
type Txn struct {
	ID     int
	Client int
	// Start and Ack are instants of the one harness clock: just before the
	// transaction was called, just after it returned successfully.
	Start, Ack int64
	TS         txn.Timestamp
	Ops        []Op
}

// Writes reports whether the transaction wrote anything.
func (t *Txn) Writes() bool {
	for _, o := range t.Ops {
		if o.Kind == Put || o.Kind == Delete {
			return true
		}
	}
	return false
}

// Violation is one broken rule, naming the transactions (by ID).
type Violation struct {
	Rule   string // "external-consistency" | "serializability"
	T1, T2 int
	Detail string
}

func (v Violation) String() string {
	return fmt.Sprintf("%s: T%d/T%d: %s", v.Rule, v.T1, v.T2, v.Detail)
}

// Result counts violations of each rule and keeps the first few.
type Result struct {
	Txns                int
	ExternalConsistency int
	Serializability     int
	Examples            []Violation // at most MaxExamples
}

// MaxExamples bounds Result.Examples.
const MaxExamples = 20

// OK reports whether no rule was broken.
func (r Result) OK() bool { return r.ExternalConsistency == 0 && r.Serializability == 0 }

func (r Result) String() string {
	s := fmt.Sprintf("%d transactions: %d external-consistency, %d serializability violations",
		r.Txns, r.ExternalConsistency, r.Serializability)
	for _, v := range r.Examples {
		s += "\n  " + v.String()
	}
	return s
}

func (r *Result) add(v Violation) {
	if v.Rule == "external-consistency" {
		r.ExternalConsistency++
	} else {
		r.Serializability++
	}
	if len(r.Examples) < MaxExamples {
		r.Examples = append(r.Examples, v)
	}
}

// Check runs both rules over a history of committed transactions.
func Check(h []Txn) Result {
	r := Result{Txns: len(h)}
	externalConsistency(h, &r)
	serializability(h, &r)
	return r
}

// externalConsistency sweeps transactions by start instant while adding
// writers by acknowledgement instant, keeping the largest timestamp of the
// writers acknowledged so far.
func externalConsistency(h []Txn, r *Result) {
	var writers []*Txn
	all := make([]*Txn, len(h))
	for i := range h {
		all[i] = &h[i]
		if h[i].Writes() {
			writers = append(writers, &h[i])
		}
	}
	sort.Slice(writers, func(i, j int) bool { return writers[i].Ack < writers[j].Ack })
	sort.Slice(all, func(i, j int) bool { return all[i].Start < all[j].Start })
	var best *Txn
	w := 0
	for _, t2 := range all {
		for w < len(writers) && writers[w].Ack < t2.Start {
			if best == nil || writers[w].TS > best.TS {
				best = writers[w]
			}
			w++
		}
		if best != nil && best.TS >= t2.TS {
			r.add(Violation{Rule: "external-consistency", T1: best.ID, T2: t2.ID,
				Detail: fmt.Sprintf("T%d acknowledged at %d before T%d started at %d, but its timestamp %d ≥ %d",
					best.ID, best.Ack, t2.ID, t2.Start, best.TS, t2.TS)})
		}
	}
}

// state is the replayed store: values and their sorted keys.
type state struct {
	vals map[string][]byte
	keys []string
}

func (s *state) set(k string, v []byte, del bool) {
	_, had := s.vals[k]
	if del {
		if had {
			delete(s.vals, k)
			i := sort.SearchStrings(s.keys, k)
			s.keys = slices.Delete(s.keys, i, i+1)
		}
		return
	}
	if !had {
		i := sort.SearchStrings(s.keys, k)
		s.keys = slices.Insert(s.keys, i, k)
	}
	s.vals[k] = v
}

// scan is the expected result of a Scan over the state with an overlay of
// own writes (nil value with present key: deleted).
func (s *state) scan(prefix string, limit int, own map[string]*Op) []txn.KV {
	var out []txn.KV
	i := sort.SearchStrings(s.keys, prefix)
	var ownKeys []string
	for k := range own {
		if strings.HasPrefix(k, prefix) {
			ownKeys = append(ownKeys, k)
		}
	}
	slices.Sort(ownKeys)
	j := 0
	for limit <= 0 || len(out) < limit {
		var k string
		fromState := i < len(s.keys) && strings.HasPrefix(s.keys[i], prefix)
		switch {
		case fromState && (j >= len(ownKeys) || s.keys[i] <= ownKeys[j]):
			k = s.keys[i]
			if j < len(ownKeys) && ownKeys[j] == k {
				j++
			}
			i++
		case j < len(ownKeys):
			k = ownKeys[j]
			j++
		default:
			return out
		}
		if o, ok := own[k]; ok {
			if o.Kind == Put {
				out = append(out, txn.KV{Key: k, Value: o.Value})
			}
			continue
		}
		out = append(out, txn.KV{Key: k, Value: s.vals[k]})
	}
	return out
}

// replay runs t's operations on s (unchanged) and returns the first
// mismatch, and t's writes in order.
func (s *state) replay(t *Txn) (string, map[string]*Op) {
	own := map[string]*Op{}
	for i := range t.Ops {
		o := &t.Ops[i]
		switch o.Kind {
		case Put, Delete:
			own[o.Key] = o
		case Get:
			want, found := s.vals[o.Key]
			if w, ok := own[o.Key]; ok {
				want, found = w.Value, w.Kind == Put
			}
			if found != o.Found || found && !bytes.Equal(want, o.Value) {
				return fmt.Sprintf("op %d: get %q read %s, replay at %d has %s", i, o.Key, show(o.Value, o.Found), t.TS, show(want, found)), own
			}
		case Scan:
			want := s.scan(o.Key, o.Limit, own)
			if !sameKVs(want, o.Result) {
				return fmt.Sprintf("op %d: scan %q limit %d read %s, replay at %d has %s", i, o.Key, o.Limit, showKVs(o.Result), t.TS, showKVs(want)), own
			}
		}
	}
	return "", own
}

func show(v []byte, found bool) string {
	if !found {
		return "nothing"
	}
	return fmt.Sprintf("%q", v)
}

func showKVs(kvs []txn.KV) string {
	var b strings.Builder
	b.WriteString("[")
	for i, kv := range kvs {
		if i == 8 {
			fmt.Fprintf(&b, " …%d more", len(kvs)-8)
			break
		}
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%q", kv.Key, kv.Value)
	}
	return b.String() + "]"
}

func sameKVs(a, b []txn.KV) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

func serializability(h []Txn, r *Result) {
	order := make([]*Txn, len(h))
	for i := range h {
		order[i] = &h[i]
	}
	sort.SliceStable(order, func(i, j int) bool { return order[i].TS < order[j].TS })
	s := &state{vals: map[string][]byte{}}
	for g := 0; g < len(order); {
		e := g
		for e < len(order) && order[e].TS == order[g].TS {
			e++
		}
		group := order[g:e]
		// Writers read the state before their timestamp.
		writtenBy := map[string]*Txn{}
		type pending struct {
			t   *Txn
			own map[string]*Op
		}
		var ws []pending
		for _, t := range group {
			if !t.Writes() {
				continue
			}
			bad, own := s.replay(t)
			if bad != "" {
				r.add(Violation{Rule: "serializability", T1: t.ID, T2: t.ID, Detail: bad})
			}
			for k := range own {
				if o := writtenBy[k]; o != nil {
					r.add(Violation{Rule: "serializability", T1: o.ID, T2: t.ID,
						Detail: fmt.Sprintf("both write %q at the same timestamp %d", k, t.TS)})
				}
				writtenBy[k] = t
			}
			ws = append(ws, pending{t, own})
		}
		for _, w := range ws {
			for _, o := range w.t.Ops {
				if o.Kind != Get && o.Kind != Scan {
					continue
				}
				for k, other := range writtenBy {
					if other != w.t && (o.Kind == Get && k == o.Key || o.Kind == Scan && strings.HasPrefix(k, o.Key)) {
						r.add(Violation{Rule: "serializability", T1: w.t.ID, T2: other.ID,
							Detail: fmt.Sprintf("T%d reads %q which T%d writes at the same timestamp %d", w.t.ID, k, other.ID, w.t.TS)})
					}
				}
			}
		}
		for _, w := range ws {
			for k, o := range w.own {
				s.set(k, o.Value, o.Kind == Delete)
			}
		}
		// Readers see everything up to and including their timestamp.
		for _, t := range group {
			if t.Writes() {
				continue
			}
			if bad, _ := s.replay(t); bad != "" {
				r.add(Violation{Rule: "serializability", T1: t.ID, T2: t.ID, Detail: bad})
			}
		}
		g = e
	}
}
