package sim

import (
	"math"
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"
)

// same compares scenarios field by field, through their full YAML form
// (every field is written, so a nil and an empty list compare equal and
// nothing else does).
func same(t *testing.T, a, b Scenario) bool {
	t.Helper()
	ya, err := yaml.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	yb, err := yaml.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(ya) == string(yb)
}

// roundTrip encodes sc as YAML — every field, and as MarshalScenario
// writes it (only what differs from the defaults, the shrinker's output) —
// and parses it back.
func roundTrip(t *testing.T, sc Scenario) {
	t.Helper()
	full, err := yaml.Marshal(sc)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	short, err := MarshalScenario(sc)
	if err != nil {
		t.Fatalf("MarshalScenario: %v", err)
	}
	for _, out := range [][]byte{full, short} {
		back, err := ParseScenario(out)
		if err != nil {
			t.Fatalf("a parsed scenario, written back, does not parse: %v\n%s", err, out)
		}
		if !same(t, back, sc) {
			t.Fatalf("round trip changed the scenario:\n%+v\n%+v\nvia\n%s", sc, back, out)
		}
	}
}

// finite reports whether every float in v (a struct, slice or pointer tree)
// is finite.
func finite(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Float64:
		return !math.IsNaN(v.Float()) && !math.IsInf(v.Float(), 0)
	case reflect.Pointer:
		return v.IsNil() || finite(v.Elem())
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if !finite(v.Field(i)) {
				return false
			}
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			if !finite(v.Index(i)) {
				return false
			}
		}
	}
	return true
}

// Whatever a parsed scenario is, writing it back as YAML and parsing that
// gives the same scenario (no key is lost, renamed or re-defaulted on the
// way), and every number in it is finite.
func FuzzParseScenario(f *testing.F) {
	f.Add([]byte("name: x\n"))
	f.Add([]byte("name: y\nhost: {freq_error_ppm: 100, drift_file_ppm: 3.5, temp_steps: [{at_s: 5, delta_ppm: 1}]}\nsources: [{name: a, loss_pct: 30}, {delay_us: 3000, asymmetry_us: 1000}]\nexpect: {max_steps: 0}\n"))
	f.Add([]byte("name: z\nsources: [{name: a, errors: [{from_s: 1, offset_ms: 5}], outages: [{from_s: 2, to_s: 3}]}, {name: b}]\n"))
	f.Add([]byte("name: [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sc, err := ParseScenario(data)
		if err != nil {
			return
		}
		if !finite(reflect.ValueOf(sc)) {
			t.Fatalf("accepted a scenario with a NaN or infinite number: %+v", sc)
		}
		roundTrip(t, sc)
	})
}

// Every scenario in the repository's matrix round-trips (the files' keys
// keep their meaning when a scenario is written back, e.g. by a shrinker).
func TestScenarioFilesRoundTrip(t *testing.T) {
	scs, err := LoadDir("scenarios")
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range scs {
		for i := range sc.Sources {
			sc.Sources[i].TraceRows = nil // loaded from the trace file, not a key
		}
		roundTrip(t, sc)
	}
}

// A file states only what differs from the defaults: one key set, at any
// depth, leaves every other field at Defaults()/DefaultSource(); a source
// without a name is srcN, and a file without sources has one named ref.
func TestScenarioOneKeyOverDefaults(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		edit func(*Scenario)
	}{
		{"name: a\nduration_s: 7\n", func(s *Scenario) { s.DurationS = 7 }},
		{"name: a\nhost: {wander_ppb_per_sqrt_s: 2}\n", func(s *Scenario) { s.Host.WanderPPBPerSqrtS = 2 }},
		{"name: a\nsources: [{jitter_us: 9}]\n", func(s *Scenario) { s.Sources[0].Name, s.Sources[0].JitterUS = "src0", 9 }},
		{"name: a\nsources: [{name: p}, {stratum: 3}]\n", func(s *Scenario) {
			s.Sources[0].Name = "p"
			s.Sources = append(s.Sources, DefaultSource())
			s.Sources[1].Name, s.Sources[1].Stratum = "src1", 3
		}},
	} {
		want := Defaults()
		want.Name = "a"
		src := DefaultSource()
		src.Name = "ref" // the one source a file without sources gets
		want.Sources = []Source{src}
		tc.edit(&want)
		got, err := ParseScenario([]byte(tc.yaml))
		if err != nil || !same(t, got, want) {
			t.Errorf("%q:\n got %+v %v\nwant %+v", tc.yaml, got, err, want)
		}
	}
}
