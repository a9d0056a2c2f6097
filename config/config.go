// Package config is meridiand's YAML configuration: the keys of DESIGN.md,
// their defaults, and validation. Unknown keys and bad values are errors
// that name the key's path (`config: sources[1].poll: must be ≥ 125ms, got 10ms`).
//
// Invariants: Parse(DefaultYAML()) equals Default(); Validate is pure (it
// touches no files; directories are resolved by the daemon at start).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/meridiantime/meridian/discipline"
	"github.com/meridiantime/meridian/internal/addr"
)

// Duration is a time.Duration written as a Go duration string ("1s",
// "-3ms", "+2.5ms").
type Duration time.Duration

// UnmarshalYAML parses a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(strings.TrimPrefix(s, "+"))
	if err != nil {
		return fmt.Errorf("bad duration %q (want e.g. 1s, -3ms, 250us)", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Source is one entry of sources.
type Source struct {
	Type         string   `yaml:"type"`         // ntp | ptp
	Address      string   `yaml:"address"`      // host:port (ntp) or host (ptp)
	Poll         Duration `yaml:"poll"`         // ntp: initial poll interval
	MinPoll      Duration `yaml:"min_poll"`     // ntp
	MaxPoll      Duration `yaml:"max_poll"`     // ntp
	IBurst       bool     `yaml:"iburst"`       // ntp: burst of requests at start
	Interface    string   `yaml:"interface"`    // ptp / timestamping
	Timestamping string   `yaml:"timestamping"` // auto | hardware | software
}

// RateLimit is the NTP server's per-client token bucket.
type RateLimit struct {
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	Burst             int     `yaml:"burst"`
	TableSize         int     `yaml:"table_size"`
}

// NTPServer configures the NTP server.
type NTPServer struct {
	Listen    []string  `yaml:"listen"`
	RateLimit RateLimit `yaml:"rate_limit"`
}

// PTPServer configures the PTP unicast server.
type PTPServer struct {
	Listen       []string `yaml:"listen"`
	Interface    string   `yaml:"interface"`
	Timestamping string   `yaml:"timestamping"`
}

// TLS configures gRPC TLS; mTLS when CA is set.
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	CA   string `yaml:"ca"`
}

// DefaultGRPCSocket is the default TimeService listener. When /run/meridian
// is not writable the daemon falls back to its per-user runtime directory
// (the same one as the shm segment) and meridianctl looks there too.
const DefaultGRPCSocket = "unix:///run/meridian/grpc.sock"

// ListenList is one address or a list of them ("" or [] disables).
type ListenList []string

// UnmarshalYAML accepts a scalar or a sequence.
func (l *ListenList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var s string
		if err := n.Decode(&s); err != nil {
			return err
		}
		*l = nil
		if s != "" {
			*l = ListenList{s}
		}
		return nil
	}
	var v []string
	if err := n.Decode(&v); err != nil {
		return err
	}
	*l = v
	return nil
}

// GRPC configures the TimeService listeners.
type GRPC struct {
	Listen ListenList `yaml:"listen"`
	TLS    TLS        `yaml:"tls"`
	// MaxWatchers caps concurrent Watch streams (0: 1024).
	MaxWatchers int `yaml:"max_watchers"`
}

// Metrics configures the Prometheus endpoint; "" disables it.
type Metrics struct {
	Listen string `yaml:"listen"`
}

// Shm configures the shared-memory segment; "" means the default directory.
type Shm struct {
	Path string `yaml:"path"`
}

// HLC configures the hybrid logical clock's remote-timestamp rejection:
// a remote further ahead than max(max_offset_floor, eps_factor·ε) is refused.
type HLC struct {
	MaxOffsetFloor Duration `yaml:"max_offset_floor"`
	EpsFactor      float64  `yaml:"eps_factor"`
	Persist        bool     `yaml:"persist"` // upper bound in state_dir (default true)
}

// Config is the whole file.
type Config struct {
	Clock                  string    `yaml:"clock"`        // virtual | system | phc:/dev/ptpN
	ClockOffset            Duration  `yaml:"clock_offset"` // virtual only
	DriftBoundPPM          float64   `yaml:"drift_bound_ppm"`
	OscillatorTolerancePPM float64   `yaml:"oscillator_tolerance_ppm"`
	MaxError               Duration  `yaml:"max_error"`
	MinSources             int       `yaml:"min_sources"`
	LocalStratum           int       `yaml:"local_stratum"`
	StepThreshold          Duration  `yaml:"step_threshold"`
	StepLimit              int       `yaml:"step_limit"`
	Servo                  string    `yaml:"servo"` // linreg | pi
	Precision              Duration  `yaml:"precision"`
	Sources                []Source  `yaml:"sources"`
	NTPServer              NTPServer `yaml:"ntp_server"`
	PTPServer              PTPServer `yaml:"ptp_server"`
	GRPC                   GRPC      `yaml:"grpc"`
	HLC                    HLC       `yaml:"hlc"`
	Metrics                Metrics   `yaml:"metrics"`
	Shm                    Shm       `yaml:"shm"`
	StateDir               string    `yaml:"state_dir"`
	LogLevel               string    `yaml:"log_level"` // debug | info | warn | error
}

// Default returns the built-in configuration: a virtual clock that serves
// itself as a stratum-10 reference (chrony's `local stratum 10`), so that
// `make run` works with no network and no privilege.
func Default() *Config {
	return &Config{
		Clock:                  "virtual",
		DriftBoundPPM:          15,
		OscillatorTolerancePPM: 500,
		MaxError:               Duration(time.Second),
		MinSources:             1,
		LocalStratum:           10,
		StepThreshold:          Duration(128 * time.Millisecond),
		StepLimit:              3,
		Servo:                  "linreg",
		Precision:              Duration(100 * time.Nanosecond),
		Sources:                []Source{},
		NTPServer:              NTPServer{Listen: []string{}},
		PTPServer:              PTPServer{Listen: []string{}},
		GRPC:                   GRPC{Listen: ListenList{DefaultGRPCSocket}, MaxWatchers: 1024},
		HLC:                    HLC{MaxOffsetFloor: Duration(time.Millisecond), EpsFactor: 2, Persist: true},
		Metrics:                Metrics{Listen: "127.0.0.1:9390"},
		LogLevel:               "info",
	}
}

// DefaultYAML is Default() as a commented file (meridiand --print-default-config).
func DefaultYAML() []byte {
	return []byte(`# meridiand configuration (see DESIGN.md). Every key is optional.
clock: virtual              # virtual | system | phc:/dev/ptpN
clock_offset: 0s            # virtual only: start offset from the host clock (tests, demos)
drift_bound_ppm: 15         # assumed bound on frequency wander (RFC 5905 PHI)
oscillator_tolerance_ppm: 500  # |frequency error| of an uncorrected oscillator
max_error: 1s               # beyond this error bound the clock reports unsynchronized
min_sources: 1              # agreeing sources needed before synchronized
local_stratum: 10           # >0 with no sources: serve our own clock as a reference
step_threshold: 128ms       # step (not slew) offsets beyond this ...
step_limit: 3               # ... during the first N updates (-1: always)
servo: linreg               # linreg | pi
precision: 100ns            # reading precision of the clock
sources: []                 # e.g. [{type: ntp, address: "10.200.0.2:123", poll: 16s, iburst: true}]
ntp_server: {listen: []}    # e.g. {listen: ["127.0.0.1:11123"]}
ptp_server: {listen: []}
grpc:
  listen: [unix:///run/meridian/grpc.sock]   # and/or "host:port" (TCP); [] disables
  tls: {cert: "", key: "", ca: ""}  # TCP only; ca set: clients need a certificate (mTLS)
  max_watchers: 1024        # concurrent Watch streams
hlc:                        # remote HLC timestamps further ahead than
  max_offset_floor: 1ms     #   max(max_offset_floor, eps_factor·ε) are rejected
  eps_factor: 2
  persist: true             # write-ahead upper bound in state_dir: no regression across restarts
metrics: {listen: "127.0.0.1:9390"}   # "" disables
shm: {path: ""}             # "": /run/meridian/truetime.shm, else a per-user runtime dir
state_dir: ""               # "": /var/lib/meridian, else a per-user state dir
log_level: info             # debug | info | warn | error
`)
}

var lineRe = regexp.MustCompile(`line (\d+): field (\S+) not found in type`)

// Parse decodes a configuration over the defaults and validates it.
func Parse(data []byte) (*Config, error) {
	c := Default()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		if m := lineRe.FindStringSubmatch(err.Error()); m != nil {
			return nil, fmt.Errorf("config: unknown key %q at line %s", strings.Trim(m[2], `"`), m[1])
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Load reads and parses a file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Validate reports the first bad value, naming its key.
func (c *Config) Validate() error {
	bad := func(key, f string, a ...any) error {
		return fmt.Errorf("config: %s: %s", key, fmt.Sprintf(f, a...))
	}
	switch {
	case c.Clock == "virtual" || c.Clock == "system":
	case strings.HasPrefix(c.Clock, "phc:/dev/ptp"):
		if _, err := strconv.Atoi(strings.TrimPrefix(c.Clock, "phc:/dev/ptp")); err != nil {
			return bad("clock", "bad PHC device %q (want phc:/dev/ptpN)", c.Clock)
		}
	default:
		return bad("clock", "unknown clock %q (want virtual, system or phc:/dev/ptpN)", c.Clock)
	}
	if c.Clock != "virtual" && c.ClockOffset != 0 {
		return bad("clock_offset", "only applies to clock: virtual")
	}
	if c.DriftBoundPPM <= 0 || c.DriftBoundPPM > 1000 {
		return bad("drift_bound_ppm", "must be in (0, 1000], got %v", c.DriftBoundPPM)
	}
	if c.OscillatorTolerancePPM <= 0 || c.OscillatorTolerancePPM > 100000 {
		return bad("oscillator_tolerance_ppm", "must be in (0, 100000], got %v", c.OscillatorTolerancePPM)
	}
	if c.MaxError <= 0 {
		return bad("max_error", "must be > 0, got %v", c.MaxError.D())
	}
	if c.MinSources < 1 {
		return bad("min_sources", "must be ≥ 1, got %d", c.MinSources)
	}
	if c.LocalStratum < 0 || c.LocalStratum > 15 {
		return bad("local_stratum", "must be 0..15, got %d", c.LocalStratum)
	}
	if c.StepThreshold < 0 {
		return bad("step_threshold", "must be ≥ 0, got %v", c.StepThreshold.D())
	}
	if c.StepLimit < -1 {
		return bad("step_limit", "must be ≥ -1, got %d", c.StepLimit)
	}
	if c.Servo != "linreg" && c.Servo != "pi" {
		return bad("servo", "want linreg or pi, got %q", c.Servo)
	}
	if c.Precision <= 0 || c.Precision > Duration(time.Millisecond) {
		return bad("precision", "must be in (0, 1ms], got %v", c.Precision.D())
	}
	seen := map[string]int{}
	for i, s := range c.Sources {
		key := fmt.Sprintf("sources[%d]", i)
		switch s.Type {
		case "ntp", "ptp":
		default:
			return bad(key+".type", "want ntp or ptp, got %q", s.Type)
		}
		if s.Address == "" {
			return bad(key+".address", "must be set")
		}
		if j, dup := seen[s.Type+"|"+s.Address]; dup {
			return bad(key+".address", "%q duplicates sources[%d]", s.Address, j)
		}
		seen[s.Type+"|"+s.Address] = i
		for _, p := range []struct {
			name string
			v    Duration
		}{{"poll", s.Poll}, {"min_poll", s.MinPoll}, {"max_poll", s.MaxPoll}} {
			if p.v != 0 && p.v < Duration(125*time.Millisecond) {
				return bad(key+"."+p.name, "must be ≥ 125ms, got %v", p.v.D())
			}
			if p.v > Duration(36*time.Hour) {
				return bad(key+"."+p.name, "must be ≤ 36h, got %v", p.v.D())
			}
		}
		if s.MinPoll != 0 && s.MaxPoll != 0 && s.MinPoll > s.MaxPoll {
			return bad(key+".min_poll", "%v exceeds max_poll %v", s.MinPoll.D(), s.MaxPoll.D())
		}
		switch s.Timestamping {
		case "", "auto", "hardware", "software":
		default:
			return bad(key+".timestamping", "want auto, hardware or software, got %q", s.Timestamping)
		}
	}
	switch c.PTPServer.Timestamping {
	case "", "auto", "hardware", "software":
	default:
		return bad("ptp_server.timestamping", "want auto, hardware or software, got %q", c.PTPServer.Timestamping)
	}
	if (c.GRPC.TLS.Cert == "") != (c.GRPC.TLS.Key == "") {
		return bad("grpc.tls", "cert and key must be set together")
	}
	if c.GRPC.TLS.CA != "" && c.GRPC.TLS.Cert == "" {
		return bad("grpc.tls.ca", "mTLS needs the server's own cert and key too")
	}
	for i, a := range c.GRPC.Listen {
		if _, _, err := addr.Parse(a); err != nil {
			return bad(fmt.Sprintf("grpc.listen[%d]", i), "%v", err)
		}
	}
	if c.HLC.MaxOffsetFloor < 0 {
		return bad("hlc.max_offset_floor", "must be ≥ 0")
	}
	if c.HLC.EpsFactor < 0 || c.HLC.EpsFactor != c.HLC.EpsFactor {
		return bad("hlc.eps_factor", "must be ≥ 0, got %v", c.HLC.EpsFactor)
	}
	if c.GRPC.MaxWatchers < 0 {
		return bad("grpc.max_watchers", "must be ≥ 0, got %d", c.GRPC.MaxWatchers)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return bad("log_level", "want debug, info, warn or error, got %q", c.LogLevel)
	}
	return nil
}

// DisciplineConfig maps the file's keys to the discipline's configuration.
func (c *Config) DisciplineConfig() discipline.Config {
	d := discipline.DefaultConfig()
	d.MinSources = c.MinSources
	d.DriftBoundPPB = c.DriftBoundPPM * 1000
	d.OscillatorTolerancePPB = c.OscillatorTolerancePPM * 1000
	d.MaxErrorNS = int64(c.MaxError)
	d.StepThresholdNS = int64(c.StepThreshold)
	d.StepLimit = c.StepLimit
	d.PrecisionNS = int64(c.Precision)
	if c.Servo == "pi" {
		d.Servo = discipline.ServoPI
	}
	return d
}
