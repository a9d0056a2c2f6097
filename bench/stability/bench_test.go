package stability

import (
	"math/rand/v2"
	"testing"
)

func benchSeries(n int) []float64 {
	rng := rand.New(rand.NewPCG(7, 7))
	x := make([]float64, n)
	for i := range x {
		x[i] = 1e-6 * rng.NormFloat64()
	}
	return x
}

// MDEV at octave factors on 2^14 samples: the sliding inner sum (O(N) per
// factor) against the handbook's double sum transcribed literally
// (O(N·m)), in the same run. Compare the two ns/op.
func BenchmarkMDEV(b *testing.B) {
	x := benchSeries(1 << 14)
	ms := Octave(len(x) / 3)
	b.Run("sliding", func(b *testing.B) {
		for b.Loop() {
			if _, err := MDEV(x, 1, ms); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("literal", func(b *testing.B) {
		lit := bruteMDEV(0)
		for b.Loop() {
			_, _ = lit(x, 1, ms)
		}
	})
}

// Every statistic at octave factors for a day of 1 s samples.
func BenchmarkAnalyzeDay(b *testing.B) {
	x := benchSeries(86400)
	for b.Loop() {
		if _, err := Analyze(x, 1); err != nil {
			b.Fatal(err)
		}
	}
}
