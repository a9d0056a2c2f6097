package check

import (
	"fmt"
	"hash/fnv"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// kvState is porcupine's state: the whole store as one immutable map.
type kvState map[string]string

func (s kvState) apply(t *Txn) (bool, kvState) {
	st := &state{vals: map[string][]byte{}}
	for k, v := range s {
		st.set(k, []byte(v), false)
	}
	if bad, _ := st.replay(t); bad != "" {
		return false, s
	}
	if !t.Writes() {
		return true, s
	}
	next := maps.Clone(s)
	for _, o := range t.Ops {
		switch o.Kind {
		case Put:
			next[o.Key] = string(o.Value)
		case Delete:
			delete(next, o.Key)
		}
	}
	return true, next
}

// Model is the porcupine model of the store: each operation is one
// committed transaction (input *Txn, no output); it is legal in a state iff
// running its operations there reproduces what it read.
func Model() porcupine.Model {
	return porcupine.Model{
		Init: func() any { return kvState{} },
		Step: func(s, in, _ any) (bool, any) {
			return s.(kvState).apply(in.(*Txn))
		},
		Equal: func(a, b any) bool { return maps.Equal(a.(kvState), b.(kvState)) },
		Hash: func(s any) uint64 {
			m := s.(kvState)
			h := fnv.New64a()
			for _, k := range slices.Sorted(maps.Keys(m)) {
				fmt.Fprintf(h, "%s\x00%s\x00", k, m[k])
			}
			return h.Sum64()
		},
		DescribeOperation: func(in, _ any) string { return describe(in.(*Txn)) },
		DescribeState: func(s any) string {
			m := s.(kvState)
			var b strings.Builder
			for _, k := range slices.Sorted(maps.Keys(m)) {
				fmt.Fprintf(&b, "%s=%s ", k, m[k])
			}
			return b.String()
		},
	}
}

func describe(t *Txn) string {
	var b strings.Builder
	fmt.Fprintf(&b, "T%d@%d:", t.ID, t.TS)
	for _, o := range t.Ops {
		switch o.Kind {
		case Get:
			fmt.Fprintf(&b, " r(%s)=%s", o.Key, show(o.Value, o.Found))
		case Put:
			fmt.Fprintf(&b, " w(%s,%q)", o.Key, o.Value)
		case Delete:
			fmt.Fprintf(&b, " d(%s)", o.Key)
		case Scan:
			fmt.Fprintf(&b, " scan(%s)=%s", o.Key, showKVs(o.Result))
		}
	}
	return b.String()
}

// LinearizableResult is porcupine's verdict.
type LinearizableResult struct {
	Result porcupine.CheckResult // Ok, Illegal or Unknown (timed out)
	// HTML is the visualization written for an Illegal history ("" else).
	HTML string
}

// Linearizable asks porcupine whether the history, the whole store being
// one object and each transaction one operation over [Start, Ack], is
// linearizable. For an illegal history it writes porcupine's HTML
// visualization into dir (created if needed) and returns its path.
// Porcupine's search is exponential in the worst case: use it on small
// histories (hundreds of transactions) with a timeout.
func Linearizable(h []Txn, timeout time.Duration, dir string) (LinearizableResult, error) {
	ops := make([]porcupine.Operation, len(h))
	for i := range h {
		ops[i] = porcupine.Operation{ClientId: h[i].Client, Input: &h[i], Call: h[i].Start, Return: h[i].Ack}
	}
	m := Model()
	res, info := porcupine.CheckOperationsVerbose(m, ops, timeout)
	out := LinearizableResult{Result: res}
	if res != porcupine.Illegal {
		return out, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return out, fmt.Errorf("check: visualization dir %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, "porcupine-*.html")
	if err != nil {
		return out, fmt.Errorf("check: visualization: %w", err)
	}
	defer f.Close()
	if err := porcupine.Visualize(m, info, f); err != nil {
		return out, fmt.Errorf("check: visualization %s: %w", f.Name(), err)
	}
	out.HTML, _ = filepath.Abs(f.Name())
	return out, nil
}
