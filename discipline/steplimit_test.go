package discipline

import (
	"testing"

	"github.com/meridiantime/meridian/truetime"
)

// stepHost runs a discipline on a host whose clock reads true time plus
// off, polling one honest source (100 µs each way) once per second for n
// updates. At update jumpAt the host clock jumps 1 s ahead (someone set it).
// Every step the discipline asks for is applied to the clock. It returns
// the update numbers (1-based) at which a step was asked for, and the clock
// error after the last update.
func stepHost(t *testing.T, stepLimit, jumpAt, n int) (steps []int, finalOff int64) {
	t.Helper()
	const start = int64(1_790_000_000) * 1e9
	cfg := DefaultConfig()
	cfg.StepLimit = stepLimit
	trueNS, off := start, int64(0)
	d, err := New(cfg, trueNS+off)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		trueNS += 1e9
		if i == jumpAt {
			off += 1e9
		}
		// Request leaves at trueNS, the server (true time) answers 10 µs
		// after receiving, the reply arrives 100 µs later.
		s := Sample{T1NS: trueNS + off, T2NS: trueNS + 100_000, T3NS: trueNS + 110_000, T4NS: trueNS + 210_000 + off,
			Stratum: 1, RootDispersionNS: 1000}
		if err := d.AddSample("ref", s); err != nil {
			t.Fatal(err)
		}
		now := trueNS + 300_000
		u := d.Update(now + off)
		if u.Correction.StepNS != 0 {
			steps = append(steps, i)
			off += u.Correction.StepNS
		}
		// Independent truth: the interval after the correction contains true time.
		if iv := truetime.Bound(now+off, u.Estimate); iv.Status != truetime.Unsynchronized && (iv.EarliestNS > now || iv.LatestNS < now) {
			t.Fatalf("update %d: interval [%d, %d] misses true time %d", i, iv.EarliestNS, iv.LatestNS, now)
		}
	}
	return steps, off
}

// The discipline steps only during the first StepLimit updates: a 1 s jump
// of the host clock at update 2 (limit 3) is stepped out at once, the same
// jump at update 6 is not stepped (the servo slews), and with StepLimit < 0
// it is stepped whenever it comes. Negative control: with the limit check
// removed from the servo (`d.updates <= d.cfg.StepLimit` dropped) the
// update-6 case steps and this test fails.
func TestStepLimitIsEnforced(t *testing.T) {
	steps, off := stepHost(t, 3, 2, 8)
	if len(steps) != 1 || steps[0] != 2 || off > 1_000_000 || off < -1_000_000 {
		t.Fatalf("jump within the step limit: steps at %v, clock left %d ns off, want one step at update 2", steps, off)
	}
	steps, off = stepHost(t, 3, 6, 8)
	if len(steps) != 0 {
		t.Fatalf("jump after the step limit (3 updates) was stepped at updates %v", steps)
	}
	if off != 1e9 {
		t.Fatalf("clock moved by %d ns without a step", off-1e9)
	}
	steps, _ = stepHost(t, -1, 6, 8)
	if len(steps) != 1 || steps[0] != 6 {
		t.Fatalf("StepLimit −1 (always): steps at %v, want one at update 6", steps)
	}
	// The boundary: the StepLimit-th update may step, the next may not.
	if steps, _ = stepHost(t, 3, 3, 5); len(steps) != 1 || steps[0] != 3 {
		t.Fatalf("jump at update 3 = StepLimit: steps at %v, want [3]", steps)
	}
	if steps, _ = stepHost(t, 3, 4, 6); len(steps) != 0 {
		t.Fatalf("jump at update 4 > StepLimit: steps at %v, want none", steps)
	}
}
