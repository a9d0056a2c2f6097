package impair

import (
	"container/heap"
	"math"
	"math/rand/v2"
)

// frame is one queued Ethernet frame.
type frame struct {
	buf    []byte // backing buffer (pooled)
	n      int    // bytes used
	seq    uint64 // admission order: ties in due go FIFO
	readNS int64  // CLOCK_MONOTONIC when read
	dueNS  int64  // when to deliver
}

type frameHeap []*frame

func (h frameHeap) Len() int { return len(h) }
func (h frameHeap) Less(i, j int) bool {
	if h[i].dueNS != h[j].dueNS {
		return h[i].dueNS < h[j].dueNS
	}
	return h[i].seq < h[j].seq
}
func (h frameHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *frameHeap) Push(x any)   { *h = append(*h, x.(*frame)) }
func (h *frameHeap) Pop() any {
	old := *h
	f := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return f
}

// LinkStats counts one direction's frames.
type LinkStats struct {
	Forwarded uint64 // written out
	Dropped   uint64 // lost on purpose (LossPct)
	Overflow  uint64 // dropped because MaxQueue frames were in flight
	Reordered uint64 // admitted with a due instant before an earlier frame's
	WriteErr  uint64 // writes that failed
}

// link is one direction's scheduler: pure. It never reads a clock; the
// driver passes the arrival instant in.
type link struct {
	p           Path
	subtractNS  int64
	maxQueue    int
	ignoreDelay bool
	rng         *rand.Rand
	startNS     int64 // Changes count from here
	q           frameHeap
	seq         uint64
	maxDueNS    int64 // the latest due instant admitted so far
	stats       LinkStats
}

func newLink(p Path, seed uint64, dir uint64, c Config, startNS int64) *link {
	l := &link{maxDueNS: math.MinInt64}
	l.configure(p, seed, dir, c, startNS)
	return l
}

// configure replaces the impairment (and reseeds); queued frames keep their
// due instants.
func (l *link) configure(p Path, seed uint64, dir uint64, c Config, startNS int64) {
	l.p = p
	l.subtractNS = c.SubtractNS + p.SubtractNS
	l.maxQueue = c.MaxQueue
	if l.maxQueue == 0 {
		l.maxQueue = 4096
	}
	l.ignoreDelay = c.ignoreDelay
	l.rng = rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15^dir))
	l.startNS = startNS
}

// baseDelayNS is the base delay in force at nowNS (after route changes).
func (l *link) baseDelayNS(nowNS int64) int64 {
	d := l.p.Delay
	for _, ch := range l.p.Changes {
		if nowNS-l.startNS >= int64(ch.At) {
			d = ch.Delay
		}
	}
	return int64(d)
}

// jitterNS draws one jitter value.
func (l *link) jitterNS() int64 {
	j := l.p.Jitter
	switch j.Dist {
	case Uniform:
		return l.rng.Int64N(int64(j.Max))
	case Exponential:
		v := int64(l.rng.ExpFloat64() * float64(j.Mean))
		if j.Max > 0 && v > int64(j.Max) {
			v = int64(j.Max)
		}
		return v
	}
	return 0
}

// admit decides a frame's fate at its arrival nowNS: dropped (false) or
// queued with its due instant. Every frame draws the loss and the jitter
// alike, so the decisions for frame k depend only on the seed and k.
func (l *link) admit(nowNS int64, f *frame) bool {
	lost := l.rng.Float64()*100 < l.p.LossPct
	jit := l.jitterNS()
	if lost {
		l.stats.Dropped++
		return false
	}
	if len(l.q) >= l.maxQueue {
		l.stats.Overflow++
		return false
	}
	d := jit
	if !l.ignoreDelay {
		d += l.baseDelayNS(nowNS)
	}
	d = max(d-l.subtractNS, 0)
	due := nowNS + d
	if l.p.NoReorder {
		due = max(due, l.maxDueNS)
	} else if due < l.maxDueNS {
		l.stats.Reordered++
	}
	l.maxDueNS = max(l.maxDueNS, due)
	f.readNS, f.dueNS, f.seq = nowNS, due, l.seq
	l.seq++
	heap.Push(&l.q, f)
	return true
}

// next is the earliest due instant, false when nothing is queued.
func (l *link) next() (int64, bool) {
	if len(l.q) == 0 {
		return 0, false
	}
	return l.q[0].dueNS, true
}

// popDue appends the frames due at nowNS to out, earliest first.
func (l *link) popDue(nowNS int64, out []*frame) []*frame {
	for len(l.q) > 0 && l.q[0].dueNS <= nowNS {
		out = append(out, heap.Pop(&l.q).(*frame))
	}
	return out
}
