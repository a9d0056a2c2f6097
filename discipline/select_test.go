package discipline

import (
	"testing"

	"pgregory.net/rapid"
)

func TestIntersectTable(t *testing.T) {
	for _, tc := range []struct {
		name   string
		spans  []span
		need   int
		lo, hi float64
		ok     bool
	}{
		{"one", []span{{-1, 1}}, 1, -1, 1, true},
		{"two overlap", []span{{-1, 1}, {0, 2}}, 2, 0, 1, true},
		{"two disjoint", []span{{-1, 1}, {2, 3}}, 2, 0, 0, false},
		{"touching counts", []span{{-1, 1}, {1, 3}}, 2, 1, 1, true},
		{"liar outvoted", []span{{-1, 1}, {-0.5, 1.5}, {100, 101}}, 2, -0.5, 1, true},
		// Two separate majority regions: the hull covers both.
		{"hull of regions", []span{{0, 10}, {8, 20}, {9, 30}}, 2, 8, 20, true},
		{"need more than have", []span{{0, 1}}, 2, 0, 0, false},
		{"no majority", []span{{0, 1}, {10, 11}, {-10, -9}}, 2, 0, 0, false},
	} {
		lo, hi, ok := intersect(tc.spans, tc.need)
		if ok != tc.ok || (ok && (lo != tc.lo || hi != tc.hi)) {
			t.Errorf("%s: intersect = [%v, %v] %v, want [%v, %v] %v", tc.name, lo, hi, ok, tc.lo, tc.hi, tc.ok)
		}
	}
}

// Whatever the liars do, as long as they are a minority, the hull of points
// covered by n − maxLiars(n) intervals contains the truth that every honest
// interval contains.
func TestIntersectContainsTruthProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		truth := rapid.Float64Range(-1e6, 1e6).Draw(t, "truth")
		n := rapid.IntRange(1, 9).Draw(t, "n")
		liars := rapid.IntRange(0, maxLiars(n)).Draw(t, "liars")
		var spans []span
		for i := 0; i < n; i++ {
			if i < liars {
				c := rapid.Float64Range(-1e7, 1e7).Draw(t, "liarCenter")
				h := rapid.Float64Range(0, 1e6).Draw(t, "liarHalf")
				spans = append(spans, span{c - h, c + h})
				continue
			}
			lo := truth - rapid.Float64Range(0, 1e5).Draw(t, "below")
			hi := truth + rapid.Float64Range(0, 1e5).Draw(t, "above")
			spans = append(spans, span{lo, hi})
		}
		lo, hi, ok := intersect(spans, n-maxLiars(n))
		if !ok {
			t.Fatalf("no intersection though %d of %d are honest", n-liars, n)
		}
		if truth < lo || truth > hi {
			t.Fatalf("truth %v outside [%v, %v] with %d liars of %d", truth, lo, hi, liars, n)
		}
	})
}

// Negative control for the property above: requiring agreement of all
// sources (ignoring that some may lie) does lose the truth.
func TestIntersectAllAgreeLosesTruth(t *testing.T) {
	spans := []span{{0, 10}, {8, 20}, {9, 30}} // truth 8.5 is in the two honest ones
	lo, hi, ok := intersect(spans, 3)
	if !ok || (8.5 >= lo && 8.5 <= hi) {
		t.Fatalf("all-agree intersection [%v, %v] %v should exclude the truth 8.5", lo, hi, ok)
	}
}
