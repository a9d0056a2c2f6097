package truetime

import (
	"math/rand/v2"
	"testing"
)

// JudgeFast against Judge on random publishes and reads without a suspend
// (boottime then advances as the raw clock does, give or take the kernel's
// slew of at most GapTolPPB): whenever the fast verdict is decided it is
// never more permissive than Judge's — Live only where Judge says Live —
// and it is decided whenever the offset is the recorded one. With sleep
// injected the offset differs and it never decides. Negative control: a
// fast judge that ignored the offset would call Live where Judge sees the
// gap.
func TestJudgeFastNeverMorePermissive(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const w2m = -1_700_000_000e9
	lenient := 0
	for range 100_000 {
		s := Stamp{
			RawNS: 1e12 + rng.Int64N(1e12), BootNS: 2e12 + rng.Int64N(1e12),
			GapSlackNS: int64(DefaultGapSlack), GapTolPPB: DefaultGapTolPPB, WallToMonoNS: w2m,
		}
		s.VoidAfterNS = s.BootNS + rng.Int64N(10e9)
		dr := rng.Int64N(12e9) - 2e6
		slew := (rng.Float64()*2 - 1) * s.GapTolPPB * 1e-9
		raw := s.RawNS + dr
		boot := s.BootNS + dr + int64(slew*float64(dr))
		want := Judge(s, raw, boot, 0)
		got, decided := JudgeFast(s, raw, w2m, 0)
		if !decided {
			t.Fatalf("offset unchanged, undecided: %+v raw %d", s, raw)
		}
		if got == Live && want != Live {
			t.Fatalf("fast Live where Judge says %v: stamp %+v, raw %d, boot %d", want, s, raw, boot)
		}
		// A suspend of sleep ns: boottime and the offset move, raw does not.
		sleep := 1 + rng.Int64N(1e10)
		if _, decided := JudgeFast(s, raw, w2m-sleep, 0); decided {
			t.Fatalf("sleep %d ns injected, yet decided", sleep)
		}
		// Negative control: the offset ignored.
		if got == Live && Judge(s, raw, boot+sleep, 0) != Live {
			lenient++
		}
	}
	if lenient == 0 {
		t.Fatal("negative control: ignoring the offset never called Live over a gap; the test cannot tell")
	}
}
