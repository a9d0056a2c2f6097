package sim

import (
	"reflect"
	"testing"

	"github.com/meridiantime/meridian/discipline"
)

// make test's share of the random-world campaign (make sim-long runs
// 20,000): every world inside the assumptions keeps every promise.
func TestRandomWorlds(t *testing.T) {
	const worlds = 300
	rep, err := Fuzz(worlds, 20261125, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Shrunk != nil {
		y, _ := MarshalScenario(*rep.Shrunk)
		t.Fatalf("world %s broke the promise (%d violations, %d backwards, %d shm mismatches); shrunk:\n%s",
			rep.Failing.Name, rep.FailResult.Violations, rep.FailResult.Backwards, rep.FailResult.ShmMismatches, y)
	}
	if rep.Worlds != worlds || rep.Reads < worlds*1000 {
		t.Fatalf("ran %d worlds with %d checked reads", rep.Worlds, rep.Reads)
	}
	if rep.ByMode[TruthReference] == 0 || rep.ByMode[TruthTrue] < worlds/2 {
		t.Fatalf("generator mix: %v", rep.ByMode)
	}
	t.Logf("%d worlds, %d checked reads, %v", rep.Worlds, rep.Reads, rep.ByMode)
}

// The shrinker on a deliberately broken bound (δ/2 omitted): the campaign
// finds a broken world, shrinks it, and the printed scenario file reads
// back as a smaller scenario that is still broken.
func TestFuzzShrinksBrokenBound(t *testing.T) {
	opt := Options{Ablation: discipline.Ablation{OmitPathDelay: true}}
	rep, err := Fuzz(200, 3, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Shrunk == nil {
		t.Fatal("without δ/2 some random world must break containment")
	}
	y, err := MarshalScenario(*rep.Shrunk)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseScenario(y)
	if err != nil {
		t.Fatalf("shrunk scenario does not parse: %v\n%s", err, y)
	}
	r, err := Run(back, opt)
	if err != nil || !Broken(r) {
		t.Fatalf("shrunk scenario read back is not broken (%v):\n%s", err, y)
	}
	if size(back) >= size(*rep.Failing) {
		t.Fatalf("shrinking did not shrink: %d ≥ %d\n%s", size(back), size(*rep.Failing), y)
	}
	if r2, _ := Run(back, Options{}); Broken(r2) {
		t.Fatalf("the shrunk world breaks even with the full bound:\n%s", y)
	}
	t.Logf("shrunk %s from size %d to %d in %d runs:\n%s", rep.Failing.Name, size(*rep.Failing), size(back), rep.ShrinkRuns, y)
}

// size counts what a scenario asks the simulator to do.
func size(sc Scenario) int {
	n := int(sc.DurationS/60) + len(sc.Host.TempSteps)
	for _, s := range sc.Sources {
		n += 10 + len(s.Errors) + len(s.Outages) + len(s.Routes)
		for _, v := range []float64{s.JitterUS, s.LossPct, s.AsymmetryUS} {
			if v != 0 {
				n++
			}
		}
	}
	return n
}

// Every generated world written as a scenario file reads back as the same
// scenario: what the fuzzer prints is what it ran.
func TestMarshalRoundTrip(t *testing.T) {
	for i := range 200 {
		sc := Generate(99, i)
		y, err := MarshalScenario(sc)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseScenario(y)
		if err != nil {
			t.Fatalf("world %d: %v\n%s", i, err, y)
		}
		norm := func(s Scenario) Scenario {
			for j := range s.Sources {
				if len(s.Sources[j].Errors) == 0 {
					s.Sources[j].Errors = nil
				}
				if len(s.Sources[j].Outages) == 0 {
					s.Sources[j].Outages = nil
				}
				if len(s.Sources[j].Routes) == 0 {
					s.Sources[j].Routes = nil
				}
			}
			if len(s.Host.TempSteps) == 0 {
				s.Host.TempSteps = nil
			}
			return s
		}
		if !reflect.DeepEqual(norm(sc), norm(back)) {
			t.Fatalf("world %d does not round-trip:\n%+v\n%+v\n%s", i, norm(sc), norm(back), y)
		}
	}
}

// Generated worlds stay inside the assumptions they are drawn from.
func TestGeneratorStaysInside(t *testing.T) {
	for i := range 500 {
		sc := Generate(5, i)
		if err := sc.Validate(); err != nil {
			t.Fatalf("world %d invalid: %v", i, err)
		}
		if m := sc.TruthMode(); m == TruthNone {
			t.Fatalf("world %d has a lying majority", i)
		}
		var total float64
		for _, ts := range sc.Host.TempSteps {
			total += abs(ts.DeltaPPM)
		}
		if d := sc.Host.DriftFilePPM; d != nil && abs(*d) > 500 {
			t.Fatalf("world %d drift file %v ppm beyond the clock's range", i, *d)
		}
		if total > 15 || abs(sc.Host.FreqErrorPPM) > 500 {
			t.Fatalf("world %d oscillator outside the bounds: %+v", i, sc.Host)
		}
	}
}
