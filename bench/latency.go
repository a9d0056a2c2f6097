package bench

import (
	"slices"
	"time"
)

// latencies merges the per-worker latency records of one run and sorts
// them, for quantiles.
type latencies []time.Duration

func mergeLatencies(per [][]time.Duration) latencies {
	var all latencies
	for _, l := range per {
		all = append(all, l...)
	}
	slices.Sort(all)
	return all
}

// q is the permille-th quantile (500: median, 990: p99), 0 when empty.
func (l latencies) q(permille int) time.Duration {
	if len(l) == 0 {
		return 0
	}
	return l[min(len(l)-1, len(l)*permille/1000)]
}
