package discipline

import "sort"

// span is a closed interval of candidate offsets (local minus true, ns).
type span struct{ lo, hi float64 }

// intersect finds the hull of the points covered by at least need of the
// given intervals (Marzullo's algorithm as used by NTP's intersection step).
// ok is false when no point is covered that many times.
//
// With n candidates of which at most f lie, every honest interval contains
// true time, so true time is covered at least n−f times: it lies in the
// returned hull when need = n−f. That is the whole safety argument of
// source selection; the caller picks f as the largest minority.
func intersect(spans []span, need int) (lo, hi float64, ok bool) {
	if need <= 0 || len(spans) < need {
		return 0, 0, false
	}
	type edge struct {
		at    float64
		delta int // +1 opens, −1 closes
	}
	edges := make([]edge, 0, 2*len(spans))
	for _, s := range spans {
		edges = append(edges, edge{s.lo, +1}, edge{s.hi, -1})
	}
	// Opens sort before closes at the same point: closed intervals touching
	// at a point do overlap there.
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].at != edges[j].at {
			return edges[i].at < edges[j].at
		}
		return edges[i].delta > edges[j].delta
	})
	depth := 0
	found := false
	for _, e := range edges {
		if e.delta > 0 {
			depth++
			if depth >= need && !found {
				lo, found = e.at, true
			}
		} else {
			if depth >= need {
				hi = e.at
			}
			depth--
		}
	}
	return lo, hi, found
}

// maxLiars is the largest number of false sources among n that a majority
// of honest ones can outvote.
func maxLiars(n int) int {
	if n <= 0 {
		return 0
	}
	return (n - 1) / 2
}
