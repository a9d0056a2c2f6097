package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDefaultYAMLRoundTrips(t *testing.T) {
	c, err := Parse(DefaultYAML())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Fatalf("parsed default YAML differs:\n%+v\n%+v", c, Default())
	}
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestEmptyFileIsDefault(t *testing.T) {
	c, err := Parse(nil)
	if err != nil || !reflect.DeepEqual(c, Default()) {
		t.Fatalf("%+v %v", c, err)
	}
}

func TestParseFull(t *testing.T) {
	c, err := Parse([]byte(`
clock_offset: +2.5ms
min_sources: 2
local_stratum: 0
sources:
  - {type: ntp, address: "127.0.0.1:11124", poll: 1s, iburst: true}
  - {type: ptp, address: "10.200.0.2", interface: veth0, timestamping: software}
ntp_server: {listen: ["127.0.0.1:11123"], rate_limit: {requests_per_second: 8, burst: 16}}
shm: {path: /tmp/x.shm}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.ClockOffset.D() != 2500*time.Microsecond || c.MinSources != 2 || len(c.Sources) != 2 ||
		c.Sources[0].Poll.D() != time.Second || !c.Sources[0].IBurst || c.NTPServer.RateLimit.Burst != 16 {
		t.Fatalf("%+v", c)
	}
	if c, _ := Parse([]byte("clock_offset: -3ms\n")); c.ClockOffset.D() != -3*time.Millisecond {
		t.Fatalf("negative offset: %v", c.ClockOffset.D())
	}
	d := c.DisciplineConfig()
	if d.MinSources != 2 || d.DriftBoundPPB != 15000 || d.MaxErrorNS != 1e9 || d.StepThresholdNS != 128e6 {
		t.Fatalf("discipline config %+v", d)
	}
}

func TestBadConfigs(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"bogus: 1\n", `unknown key "bogus" at line 1`},
		{"sources: [{type: ntp, address: a, bogus: 2}]\n", `unknown key "bogus"`},
		{"clock: foo\n", `clock: unknown clock "foo"`},
		{"clock: phc:/dev/ptpX\n", "bad PHC device"},
		{"clock: system\nclock_offset: 1ms\n", "clock_offset: only applies"},
		{"clock_offset: soon\n", `bad duration "soon"`},
		{"drift_bound_ppm: -1\n", "drift_bound_ppm: must be in (0, 1000], got -1"},
		{"max_error: 0s\n", "max_error: must be > 0"},
		{"min_sources: 0\n", "min_sources: must be ≥ 1, got 0"},
		{"local_stratum: 16\n", "local_stratum: must be 0..15"},
		{"servo: magic\n", "servo: want linreg or pi"},
		{"step_limit: -2\n", "step_limit"},
		{"sources: [{type: gps, address: a}]\n", "sources[0].type: want ntp or ptp"},
		{"sources: [{type: ntp}]\n", "sources[0].address: must be set"},
		{"sources: [{type: ntp, address: a, poll: 1s}, {type: ntp, address: b, poll: 10ms}]\n", "sources[1].poll: must be ≥ 125ms, got 10ms"},
		{"sources: [{type: ntp, address: a}, {type: ntp, address: a}]\n", "sources[1].address: \"a\" duplicates sources[0]"},
		{"sources: [{type: ntp, address: a, min_poll: 64s, max_poll: 16s}]\n", "sources[0].min_poll"},
		{"sources: [{type: ptp, address: a, timestamping: magic}]\n", "sources[0].timestamping"},
		{"grpc: {tls: {cert: a}}\n", "grpc.tls"},
		{"log_level: loud\n", "log_level"},
		{"min_sources: [1]\n", "config:"},
		{"\t- nonsense", "config:"},
	} {
		_, err := Parse([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

func TestLoad(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.yaml")
	_ = os.WriteFile(p, []byte("min_sources: 0\n"), 0o644)
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("error must name the file: %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("missing file accepted")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(DefaultYAML())
	f.Add([]byte("sources: [{type: ntp, address: \"127.0.0.1:123\", poll: 1s}]\nclock_offset: -3ms\n"))
	f.Add([]byte("\x00\xff{[}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err == nil {
			if err := c.Validate(); err != nil {
				t.Fatalf("Parse accepted an invalid config: %v", err)
			}
		}
	})
}
