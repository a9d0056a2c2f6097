package engine

import "github.com/facebook/time/ptp/protocol"

// Dataset is what an Announce says about a grandmaster and the path to it:
// the fields the best master clock algorithm compares (1588-2019 §9.3.4).
type Dataset struct {
	Priority1    uint8
	Quality      protocol.ClockQuality
	Priority2    uint8
	GMIdentity   protocol.ClockIdentity
	StepsRemoved uint16
	Sender       protocol.PortIdentity // sourcePortIdentity of the Announce
}

// Compare reports whether a is a better master than b (-1), worse (+1) or
// equal (0), by 1588's dataset comparison: between different grandmasters
// priority1, clockClass, clockAccuracy, offsetScaledLogVariance, priority2,
// then the identity as the tie-break, lower winning at each step; for the
// same grandmaster reached over two paths, fewer steps removed, then the
// lower sender identity.
func Compare(a, b Dataset) int {
	if a.GMIdentity != b.GMIdentity {
		switch {
		case a.Priority1 != b.Priority1:
			return cmp(a.Priority1, b.Priority1)
		case a.Quality.ClockClass != b.Quality.ClockClass:
			return cmp(a.Quality.ClockClass, b.Quality.ClockClass)
		case a.Quality.ClockAccuracy != b.Quality.ClockAccuracy:
			return cmp(a.Quality.ClockAccuracy, b.Quality.ClockAccuracy)
		case a.Quality.OffsetScaledLogVariance != b.Quality.OffsetScaledLogVariance:
			return cmp(a.Quality.OffsetScaledLogVariance, b.Quality.OffsetScaledLogVariance)
		case a.Priority2 != b.Priority2:
			return cmp(a.Priority2, b.Priority2)
		}
		return cmp(a.GMIdentity, b.GMIdentity)
	}
	if a.StepsRemoved != b.StepsRemoved {
		return cmp(a.StepsRemoved, b.StepsRemoved)
	}
	return a.Sender.Compare(b.Sender)
}

func cmp[T ~uint8 | ~uint16 | ~uint64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
