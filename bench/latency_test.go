package bench

import (
	"testing"
	"time"
)

func TestLatencyQuantiles(t *testing.T) {
	var a, b []time.Duration
	for i := 1; i <= 1000; i++ { // 1..1000 µs, split over two workers
		if i%2 == 0 {
			a = append(a, time.Duration(i)*time.Microsecond)
		} else {
			b = append(b, time.Duration(i)*time.Microsecond)
		}
	}
	l := mergeLatencies([][]time.Duration{a, b})
	for _, c := range []struct {
		permille int
		want     time.Duration
	}{{500, 501 * time.Microsecond}, {990, 991 * time.Microsecond}, {999, 1000 * time.Microsecond}, {1000, 1000 * time.Microsecond}} {
		if got := l.q(c.permille); got != c.want {
			t.Errorf("q(%d) = %v, want %v", c.permille, got, c.want)
		}
	}
	if mergeLatencies(nil).q(990) != 0 {
		t.Error("empty run has a p99")
	}
}
