package hlc

import "sync/atomic"

// Lamport is a Lamport clock (1978): Tick for local and send events,
// Observe for receive events. Safe for concurrent use.
type Lamport struct{ c atomic.Uint64 }

// Tick advances the clock and returns the event's time.
func (l *Lamport) Tick() uint64 { return l.c.Add(1) }

// Observe merges a received time: max(local, remote) + 1.
func (l *Lamport) Observe(remote uint64) uint64 {
	for {
		cur := l.c.Load()
		n := max(cur, remote) + 1
		if l.c.CompareAndSwap(cur, n) {
			return n
		}
	}
}

// Order is the result of comparing vector clocks.
type Order int

const (
	Equal Order = iota
	Before
	After
	Concurrent
)

func (o Order) String() string { return [...]string{"equal", "before", "after", "concurrent"}[o] }

// VectorClock maps node ids to event counts. The zero value is empty. Not
// safe for concurrent use; copy with Clone before sharing.
type VectorClock map[string]uint64

// Tick records a local event at node.
func (v VectorClock) Tick(node string) { v[node]++ }

// Merge takes the element-wise maximum with other (a receive, before Tick).
func (v VectorClock) Merge(other VectorClock) {
	for n, c := range other {
		if c > v[n] {
			v[n] = c
		}
	}
}

// Clone copies v.
func (v VectorClock) Clone() VectorClock {
	c := make(VectorClock, len(v))
	for n, x := range v {
		c[n] = x
	}
	return c
}

// Compare reports whether v happened before, after, equal to or
// concurrently with w.
func (v VectorClock) Compare(w VectorClock) Order {
	less, greater := false, false
	for n, a := range v {
		if b := w[n]; a < b {
			less = true
		} else if a > b {
			greater = true
		}
	}
	for n, b := range w {
		if _, ok := v[n]; !ok && b > 0 {
			less = true
		}
	}
	switch {
	case less && greater:
		return Concurrent
	case less:
		return Before
	case greater:
		return After
	}
	return Equal
}
