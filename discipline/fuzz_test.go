package discipline

import (
	"math"
	"testing"

	"github.com/meridiantime/meridian/truetime"
)

// Arbitrary (even hostile) timestamps from a source must never panic the
// discipline or produce a non-finite estimate.
func FuzzAddSampleUpdate(f *testing.F) {
	f.Add(int64(1e9), int64(1e9+50_000), int64(1e9+60_000), int64(1e9+100_000), int64(1000), int64(0), uint8(1), int64(2e9))
	f.Add(int64(0), int64(math.MaxInt64), int64(math.MaxInt64), int64(1), int64(0), int64(0), uint8(2), int64(1))
	f.Add(int64(-5), int64(math.MinInt64), int64(0), int64(5), int64(math.MaxInt64), int64(math.MaxInt64), uint8(15), int64(math.MaxInt64))
	f.Fuzz(func(t *testing.T, t1, t2, t3, t4, disp, rdelay int64, stratum uint8, now int64) {
		d, err := New(DefaultConfig(), 0)
		if err != nil {
			t.Fatal(err)
		}
		s := Sample{T1NS: t1, T2NS: t2, T3NS: t3, T4NS: t4, RootDispersionNS: disp, RootDelayNS: rdelay, Stratum: stratum}
		_ = d.AddSample("x", s)
		for _, n := range []int64{now, now + 1e9} {
			u := d.Update(n)
			e := u.Estimate
			for _, v := range []float64{e.OffsetNS, e.SkewPPB, e.FreqUncPPB, e.FreqPPB, u.Correction.FreqPPB} {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					t.Fatalf("non-finite value in %+v", u)
				}
			}
			if e.Status != truetime.Unsynchronized && e.Eps0NS < 0 {
				t.Fatalf("negative ε in %+v", e)
			}
			if math.Abs(u.Correction.FreqPPB) > DefaultConfig().MaxFreqPPB {
				t.Fatalf("frequency beyond the clamp: %+v", u.Correction)
			}
		}
	})
}
