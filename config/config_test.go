package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
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
  - {type: ntp, address: "127.0.0.1:11124", poll: 1s, iburst: true, xleave: true}
  - {type: ptp, address: "10.200.0.2", interface: veth0, timestamping: software}
ntp_server: {listen: ["127.0.0.1:11123"], rate_limit: {requests_per_second: 8, burst: 16}, interleaved: {table_size: 100}}
shm: {path: /tmp/x.shm}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.ClockOffset.D() != 2500*time.Microsecond || c.MinSources != 2 || len(c.Sources) != 2 ||
		c.Sources[0].Poll.D() != time.Second || !c.Sources[0].IBurst || c.NTPServer.RateLimit.Burst != 16 ||
		!c.Sources[0].XLeave || c.Sources[1].XLeave || !c.NTPServer.Interleaved.Enabled || c.NTPServer.Interleaved.TableSize != 100 {
		t.Fatalf("%+v", c)
	}
	if c, _ := Parse([]byte("clock_offset: -3ms\n")); c.ClockOffset.D() != -3*time.Millisecond {
		t.Fatalf("negative offset: %v", c.ClockOffset.D())
	}
	if rl := c.NTPRateLimit(); rl.RequestsPerSecond != 8 || rl.Burst != 16 || rl.TableSize != 4096 || rl.Leak != 0.25 || rl.KoD {
		t.Fatalf("rate limit %+v", rl)
	}
	// leak: 0 in the file means none (the ntp package reads 0 as its default).
	if c, err := Parse([]byte("ntp_server: {rate_limit: {requests_per_second: 1, leak: 0, kod: true}}\n")); err != nil ||
		c.NTPRateLimit().Leak != -1 || !c.NTPRateLimit().KoD {
		t.Fatalf("leak 0: %+v %v", c.NTPRateLimit(), err)
	}
	d := c.DisciplineConfig()
	if d.MinSources != 2 || d.DriftBoundPPB != 15000 || d.MaxErrorNS != 1e9 || d.StepThresholdNS != 128e6 {
		t.Fatalf("discipline config %+v", d)
	}
}

// PTP keys: a source's domain and ports, the grandmaster's limits, and
// min_interval as the log2 interval the engine grants (rounded so it never
// grants faster than configured).
func TestPTPKeys(t *testing.T) {
	c, err := Parse([]byte(`
sources:
  - {type: ptp, address: "10.200.0.2", domain: 24, event_port: 10319, general_port: 10320}
  - {type: ptp, address: "10.200.0.3", domain: 24, event_port: 10319, general_port: 10320}
ptp_server: {listen: ["10.200.0.1"], domain: 24, workers: 4, max_clients: 500, min_interval: 100ms, max_duration: 10m, tx_timestamp_timeout: 50ms}
`))
	if err != nil {
		t.Fatal(err)
	}
	p := c.PTPServer
	if c.Sources[1].Domain != 24 || c.Sources[0].EventPort != 10319 || p.Domain != 24 || p.Workers != 4 || p.MaxClients != 500 ||
		p.MaxDuration.D() != 10*time.Minute || p.TxTimestampTimeout.D() != 50*time.Millisecond {
		t.Fatalf("%+v %+v", c.Sources, p)
	}
	for _, tc := range []struct {
		d   time.Duration
		log int8
	}{{100 * time.Millisecond, -3}, {125 * time.Millisecond, -3}, {time.Second / 16, -4}, {time.Second, 0}, {3 * time.Second, 2}, {MinPTPInterval, -7}} {
		if got := (PTPServer{MinInterval: Duration(tc.d)}).MinLogInterval(); got != tc.log {
			t.Errorf("min_interval %v: log %d, want %d", tc.d, got, tc.log)
		}
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
		{"max_error: 0s\n", "max_error: must be in (0, 24h0m0s], got 0s"},
		{"min_sources: 0\n", "min_sources: must be 1..64, got 0"},
		{"local_stratum: 16\n", "local_stratum: must be 0..15"},
		{"servo: magic\n", "servo: want linreg or pi"},
		{"step_limit: -2\n", "step_limit"},
		{"sources: [{type: gps, address: a}]\n", "sources[0].type: want ntp, pool or ptp"},
		{"sources: [{type: ntp}]\n", "sources[0].address: must be set"},
		{"sources: [{type: ntp, address: \"a:123\", poll: 1s}, {type: ntp, address: \"b:123\", poll: 10ms}]\n", "sources[1].poll: must be ≥ 125ms, got 10ms"},
		{"sources: [{type: ntp, address: \"a:123\"}, {type: ntp, address: \"a:123\"}]\n", "sources[1].address: \"a:123\" duplicates sources[0]"},
		{"sources: [{type: ntp, address: \"a:123\", min_poll: 64s, max_poll: 16s}]\n", "sources[0].min_poll"},
		{"sources: [{type: ptp, address: a, timestamping: magic}]\n", "sources[0].timestamping"},
		{"sources: [{type: ptp, address: a, domain: 256}]\n", "sources[0].domain: must be 0..255, got 256"},
		{"sources: [{type: ntp, address: \"a:123\", domain: 4}]\n", "sources[0].domain: only for type ptp, got 4"},
		{"sources: [{type: ptp, address: a, domain: 4}, {type: ptp, address: b, domain: 5}]\n", "sources[1].domain: 5 differs from sources[0]'s 4"},
		{"sources: [{type: ptp, address: a, interface: v0}, {type: ptp, address: b}]\n", "sources[1].interface"},
		{"sources: [{type: ptp, address: a, event_port: 70000}]\n", "sources[0].event_port: must be 1..65535"},
		{"ptp_server: {listen: [a], domain: -1}\n", "ptp_server.domain: must be 0..255, got -1"},
		{"ptp_server: {listen: [a], min_interval: 1ms}\n", "ptp_server.min_interval: must be 7.8125ms..1m4s, got 1ms"},
		{"ptp_server: {listen: [a], max_clients: 0}\n", "ptp_server.max_clients: must be 1..4194304, got 0"},
		{"ptp_server: {listen: [a], max_duration: 1s}\n", "ptp_server.max_duration"},
		{"ptp_server: {listen: [a], tx_timestamp_timeout: 0s}\n", "ptp_server.tx_timestamp_timeout"},
		{"ptp_server: {listen: [a], workers: 0}\n", "ptp_server.workers"},
		{"grpc: {tls: {cert: a}}\n", "grpc.tls"},
		{"log_level: loud\n", "log_level"},
		{"min_sources: [1]\n", "config: min_sources: want int, got a list (line 1)"},
		{"ntp_server: {listen: [\"127.0.0.1:123\"], rate_limit: {burst: abc}}\n", `config: ntp_server.rate_limit.burst: want int, got "abc" (line 1)`},
		{"sources:\n  - {type: ntp, address: \"a:123\", poll: [1]}\n", "config: sources[0].poll: want string, got a list (line 2)"},
		{"drift_bound_ppm: xx\nmin_sources: yy\n", `drift_bound_ppm: want float64, got "xx" (line 1); config: min_sources: want int, got "yy" (line 2)`},
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

// An accepted config survives a round trip through YAML unchanged: what
// the daemon runs is what the file says (no value lost or reinterpreted,
// e.g. by a key that does not marshal back).
func FuzzParse(f *testing.F) {
	f.Add(DefaultYAML())
	f.Add([]byte("sources: [{type: ntp, address: \"127.0.0.1:123\", poll: 1s}]\nclock_offset: -3ms\n"))
	f.Add([]byte("ntp_server: {listen: [\":123\"], rate_limit: {requests_per_second: 0.5, burst: 3, leak: 0.1, kod: true}}\n"))
	f.Add([]byte("\x00\xff{[}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("marshal an accepted config: %v", err)
		}
		c2, err := Parse(out)
		if err != nil {
			t.Fatalf("the marshalled config is refused: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", c, c2)
		}
	})
}

// Values that passed validation before and hurt at run time (issue 9):
// each is refused at parse time with an error naming its key.
func TestBoundsRefused(t *testing.T) {
	for _, tc := range []struct{ yaml, key string }{
		{"ntp_server: {rate_limit: {table_size: 9000000000000000000}}\n", "ntp_server.rate_limit.table_size"},
		{"ntp_server: {rate_limit: {table_size: 1000000000}}\n", "ntp_server.rate_limit.table_size"},
		{"ntp_server: {rate_limit: {table_size: 0}}\n", "ntp_server.rate_limit.table_size"},
		{"ntp_server: {interleaved: {table_size: 0}}\n", "ntp_server.interleaved.table_size: must be 1..1048576, got 0"},
		{"ntp_server: {workers: -1}\n", "ntp_server.workers: must be 0 (one per usable CPU) or 1..256, got -1"},
		{"ntp_server: {workers: 257}\n", "ntp_server.workers"},
		{"ntp_server: {busy_poll: 2ms}\n", "ntp_server.busy_poll: must be 0 (off) or whole microseconds up to 1ms, got 2ms"},
		{"ntp_server: {busy_poll: 1500ns}\n", "ntp_server.busy_poll"},
		{"ntp_server: {busy_poll: -1us}\n", "ntp_server.busy_poll"},
		{"ntp_server: {interleaved: {table_size: 2000000}}\n", "ntp_server.interleaved.table_size: must be 1..1048576, got 2000000"},
		{"sources: [{type: ptp, address: \"10.0.0.1\", xleave: true}]\n", "sources[0].xleave: interleaved mode is for ntp sources, not ptp"},
		{"clock_offset: 2562047h\n", "clock_offset"},
		{"clock_offset: -2562047h\n", "clock_offset"},
		{"clock_offset: 87601h\n", "clock_offset"},
		{"ntp_server: {rate_limit: {requests_per_second: .nan}}\n", "ntp_server.rate_limit.requests_per_second"},
		{"ntp_server: {rate_limit: {requests_per_second: .inf}}\n", "ntp_server.rate_limit.requests_per_second"},
		{"ntp_server: {rate_limit: {requests_per_second: -1}}\n", "ntp_server.rate_limit.requests_per_second"},
		{"ntp_server: {rate_limit: {requests_per_second: 1e-300}}\n", "ntp_server.rate_limit.requests_per_second"},
		{"ntp_server: {rate_limit: {requests_per_second: 1000001}}\n", "ntp_server.rate_limit.requests_per_second"},
		{"ntp_server: {rate_limit: {burst: -3}}\n", "ntp_server.rate_limit.burst: must be 1..1000000, got -3"},
		{"ntp_server: {rate_limit: {burst: 0}}\n", "ntp_server.rate_limit.burst"},
		{"ntp_server: {rate_limit: {leak: 1.5}}\n", "ntp_server.rate_limit.leak"},
		{"ntp_server: {rate_limit: {leak: .nan}}\n", "ntp_server.rate_limit.leak"},
		{"ntp_server: {rate_limit: {leak: -0.1}}\n", "ntp_server.rate_limit.leak"},
		{"drift_bound_ppm: .nan\n", "drift_bound_ppm"},
		{"drift_bound_ppm: .inf\n", "drift_bound_ppm"},
		{"oscillator_tolerance_ppm: .nan\n", "oscillator_tolerance_ppm"},
		{"hlc: {eps_factor: .inf}\n", "hlc.eps_factor"},
		{"hlc: {eps_factor: .nan}\n", "hlc.eps_factor"},
		{"hlc: {max_offset_floor: 2h}\n", "hlc.max_offset_floor"},
		{"max_error: 100ns\n", "max_error: 100ns must exceed precision + drift_bound_ppm × 1s = 15.1µs"},
		{"max_error: 15100ns\n", "max_error"},
		{"max_error: 1ms\ndrift_bound_ppm: 1000\n", "max_error"},
		{"max_error: 50ns\nprecision: 1us\n", "max_error"},
		{"max_error: 25h\n", "max_error"},
		{"step_threshold: 48h\n", "step_threshold"},
		{"step_limit: 2000000\n", "step_limit"},
		{"min_sources: 65\n", "min_sources"},
		{"min_sources: 2\nsources: [{type: ntp, address: \"a:123\"}]\n", "min_sources: 2 exceeds the 1 configured sources"},
		{"holdover_after_polls: 0\n", "holdover_after_polls"},
		{"holdover_after_polls: 65\n", "holdover_after_polls"},
		{"sources: [{type: ntp, address: \"a:123\", poll: 128s, max_poll: 64s}]\n", "sources[0].poll: 2m8s exceeds max_poll 1m4s"},
		{"sources: [{type: ntp, address: \"a:123\", poll: 8s, min_poll: 16s}]\n", "sources[0].poll: 8s is below min_poll 16s"},
		{"sources: [{type: ntp, address: \"a:123\", poll: 2h}]\n", "sources[0].max_poll: must be set"},
		{"sources: [{type: ntp, address: \"a:123\", poll: -1s}]\n", "sources[0].poll"},
		{"sources: [{type: ntp, address: \"a:70000\"}]\n", "sources[0].address: \"a:70000\": port must be a number in 1..65535"},
		{"sources: [{type: ntp, address: \"a:0\"}]\n", "sources[0].address"},
		{"sources: [{type: ntp, address: \"a b\"}]\n", "sources[0].address"},
		{"sources: [{type: ntp, address: \"-bad-.example\"}]\n", "sources[0].address"},
		{"sources: [{type: ntp, address: \"ntp..example\"}]\n", "sources[0].address"},
		{"sources: [{type: ntp, address: \"host:0\"}]\n", "sources[0].address"},
		{"sources: [{type: ntp, address: \"10.0.0.1\", max_distance: -1s}]\n", "sources[0].max_distance"},
		{"sources: [{type: ntp, address: \"10.0.0.1\", noselect: true, prefer: true}]\n", "sources[0].prefer"},
		{"ntp_server: {allow: [\"10.0.0.0/33\"]}\n", "ntp_server.allow[0]"},
		{"ntp_server: {deny: [\"example.com\"]}\n", "ntp_server.deny[0]"},
		{"sources: [{type: ntp, address: \"a:ntp\"}]\n", "sources[0].address"},
		{"sources: [{type: ntp, address: \":123\"}]\n", "sources[0].address"},
		{"sources: [{type: ptp, address: \"a:319\"}]\n", "sources[0].address"},
		{"sources: [{type: ntp, address: \"a:123\", interface: \"a very long interface\"}]\n", "sources[0].interface"},
		{"ntp_server: {listen: [\"127.0.0.1:65536\"]}\n", "ntp_server.listen[0]"},
		{"ntp_server: {listen: [\"127.0.0.1\"]}\n", "ntp_server.listen[0]"},
		{"ntp_server: {listen: [\"127.0.0.1:123\", \"localhost:-1\"]}\n", "ntp_server.listen[1]"},
		{"ptp_server: {listen: [\"127.0.0.1:319\"]}\n", "ptp_server.listen[0]"},
		{"ptp_server: {listen: [\"\"]}\n", "ptp_server.listen[0]"},
		{"metrics: {listen: \"127.0.0.1:99999\"}\n", "metrics.listen"},
		{"metrics: {listen: \"9390\"}\n", "metrics.listen"},
		{"grpc: {listen: [\"127.0.0.1:99999\"]}\n", "grpc.listen[0]"},
		{"grpc: {max_watchers: -1}\n", "grpc.max_watchers"},
		{"grpc: {max_waiters: 0}\n", "grpc.max_waiters"},
		{"grpc: {max_waiters: 10, max_waiters_per_conn: 11}\n", "grpc.max_waiters_per_conn"},
		{"clock: phc:/dev/ptp-1\n", "clock"},
	} {
		_, err := Parse([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), "config: "+tc.key) {
			t.Errorf("%q: error %v, want one naming %q", tc.yaml, err, tc.key)
		}
	}
}

// The extremes of every range are accepted (the bounds are not off by one).
func TestBoundsAccepted(t *testing.T) {
	for _, y := range []string{
		"clock_offset: 87600h\n", "clock_offset: -87600h\n",
		"ntp_server: {rate_limit: {requests_per_second: 1000000, burst: 1000000, table_size: 1048576, leak: 1, kod: true}}\n",
		"ntp_server: {rate_limit: {requests_per_second: 0.001, burst: 1, table_size: 1, leak: 0}}\n",
		"ntp_server: {workers: 0}\n", "ntp_server: {workers: 1}\n", "ntp_server: {workers: 256}\n", "ntp_server: {busy_poll: 50us}\n", "ntp_server: {busy_poll: 1ms}\n",
		"max_error: 15101ns\n", "max_error: 24h\n", "max_error: 1002us\ndrift_bound_ppm: 1000\nprecision: 1us\n", "holdover_after_polls: 1\n", "holdover_after_polls: 64\n",
		"sources: [{type: ntp, address: \"[::1]:65535\", poll: 36h, min_poll: 36h, max_poll: 36h}]\n",
		"sources: [{type: ntp, address: \"time.example:1\", poll: 125ms, min_poll: 125ms, max_poll: 1s}]\n",
		"sources: [{type: ptp, address: \"10.0.0.1\"}, {type: ptp, address: \"fe80::1\"}]\nmin_sources: 2\n",
		"ntp_server: {listen: [\"127.0.0.1:0\", \"[::]:123\", \":11123\"]}\nmetrics: {listen: \"localhost:0\"}\n",
		"grpc: {listen: [\"unix:///tmp/x.sock\", \"0.0.0.0:50051\"], max_waiters: 1048576, max_waiters_per_conn: 1048576}\n",
	} {
		if _, err := Parse([]byte(y)); err != nil {
			t.Errorf("%q: %v", y, err)
		}
	}
}

// holdover_after_polls × the slowest source's poll (max_poll when the poll
// adapts), as the NTP client would poll.
func TestHoldoverAfterPolls(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want time.Duration
	}{
		{"sources: [{type: ntp, address: \"a:123\", poll: 1s}]\n", 4 * time.Second},
		{"holdover_after_polls: 2\nsources: [{type: ntp, address: \"a:123\", poll: 1s}]\n", 2 * time.Second},
		{"sources: [{type: ntp, address: \"a:123\"}]\n", 64 * time.Second}, // default poll 16 s
		{"sources: [{type: ntp, address: \"a:123\", min_poll: 16s, max_poll: 64s}]\n", 256 * time.Second},
		{"sources: [{type: ntp, address: \"a:123\", min_poll: 16s}]\n", 4 * 1024 * time.Second}, // adapts up to the default max_poll
		{"sources: [{type: ntp, address: \"a:123\", min_poll: 8s, max_poll: 8s}]\n", 32 * time.Second},
		{"sources: [{type: ntp, address: \"a:123\", poll: 1s}, {type: ntp, address: \"b:123\", poll: 8s}]\n", 32 * time.Second},
	} {
		c, err := Parse([]byte(tc.yaml))
		if err != nil {
			t.Fatal(err)
		}
		if got := time.Duration(c.DisciplineConfig().HoldoverAfterNS); got != tc.want {
			t.Errorf("%q: holdover after %v, want %v", tc.yaml, got, tc.want)
		}
	}
}

// The README's PTP example is a valid configuration.
func TestREADMEPTPExample(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "## PTP\n")
	_, rest, ok2 := strings.Cut(rest, "```yaml\n")
	block, _, ok3 := strings.Cut(rest, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README has no PTP yaml block")
	}
	c, err := Parse([]byte(block))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Sources) != 1 || c.Sources[0].Type != "ptp" || len(c.PTPServer.Listen) != 1 || c.PTPServer.MinLogInterval() != -4 {
		t.Fatalf("%+v %+v", c.Sources, c.PTPServer)
	}
}

// An NTP address without a port gets NTP's 123 (IPv4, IPv6, names), as
// chrony's server directive; a port given is kept.
func TestNTPPortDefault(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1":         "10.0.0.1:123",
		"time.example.com": "time.example.com:123",
		"2001:db8::1":      "[2001:db8::1]:123",
		"[2001:db8::1]":    "[2001:db8::1]:123",
		"10.0.0.1:11123":   "10.0.0.1:11123",
	} {
		c, err := Parse([]byte("sources: [{type: ntp, address: \"" + in + "\"}]\n"))
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if got := c.Sources[0].Address; got != want {
			t.Errorf("%s → %s, want %s", in, got, want)
		}
	}
}

// A pool entry: a name with NTP's port by default, max_sources 4 by
// default and within 1..16, refused on other types.
func TestPoolEntry(t *testing.T) {
	c, err := Parse([]byte("sources: [{type: pool, address: pool.example.org, iburst: true}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Sources[0]; s.Address != "pool.example.org:123" || s.MaxSources != 4 {
		t.Fatalf("pool entry %+v", s)
	}
	for y, key := range map[string]string{
		"sources: [{type: pool, address: pool.example.org, max_sources: 17}]\n": "sources[0].max_sources",
		"sources: [{type: ntp, address: 10.0.0.1, max_sources: 2}]\n":           "sources[0].max_sources",
		"sources: [{type: pool, address: \"bad name\"}]\n":                      "sources[0].address",
	} {
		if _, err := Parse([]byte(y)); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%q: %v, want an error naming %s", y, err, key)
		}
	}
}

// ntp_server.workers: a number is taken as is; 0 is one per CPU the
// process may use, at least one and at most AutoNTPWorkers.
func TestNTPWorkers(t *testing.T) {
	for _, tc := range []struct{ workers, cpus, want int }{
		{0, 1, 1}, {0, 2, 2}, {0, 16, 16}, {0, 64, AutoNTPWorkers}, {0, 0, 1},
		{3, 1, 3}, {1, 64, 1}, {256, 2, 256},
	} {
		if got := (NTPServer{Workers: tc.workers}).NTPWorkers(tc.cpus); got != tc.want {
			t.Errorf("workers %d on %d CPUs: %d, want %d", tc.workers, tc.cpus, got, tc.want)
		}
	}
}
