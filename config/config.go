// Package config is meridiand's YAML configuration: every key, its default
// (meridiand --print-default-config prints them all) and its validation. Unknown keys and bad values are errors
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
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/meridiantime/meridian/discipline"
	"github.com/meridiantime/meridian/internal/addr"
	"github.com/meridiantime/meridian/ntp"
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
	Type         string   `yaml:"type"`         // ntp | pool (a name whose addresses are sources) | ptp
	Address      string   `yaml:"address"`      // host[:port] (ntp, port 123 by default) or host (ptp)
	Poll         Duration `yaml:"poll"`         // ntp: initial poll interval
	MinPoll      Duration `yaml:"min_poll"`     // ntp
	MaxPoll      Duration `yaml:"max_poll"`     // ntp
	IBurst       bool     `yaml:"iburst"`       // ntp: burst of requests at start
	Interface    string   `yaml:"interface"`    // ptp / timestamping
	Timestamping string   `yaml:"timestamping"` // auto | hardware | software
	XLeave       bool     `yaml:"xleave"`       // ntp: interleaved mode (chrony's xleave)
	// Selection options, as chrony's: noselect (measured and shown, never
	// selected), prefer (combined alone when selected), max_distance (a
	// source whose bound exceeds it is not selectable; 0: no limit).
	NoSelect    bool     `yaml:"noselect"`
	Prefer      bool     `yaml:"prefer"`
	MaxDistance Duration `yaml:"max_distance"`
	// Pool only: how many of the name's addresses to use at once (chrony's
	// maxsources; default 4).
	MaxSources int `yaml:"max_sources"`
	// PTP only. All ptp sources share one client port (one pair of
	// sockets), so these must agree between them.
	Domain      int `yaml:"domain"`       // 0..255
	EventPort   int `yaml:"event_port"`   // 0: 319 (ours and the server's, as PTP fixes them)
	GeneralPort int `yaml:"general_port"` // 0: 320
}

// Interleaved configures the NTP server's interleaved mode (see
// ntp/xleave.go): replies to clients that ask carry the kernel's transmit
// stamp of the previous reply.
type Interleaved struct {
	Enabled   bool `yaml:"enabled"`
	TableSize int  `yaml:"table_size"` // client addresses tracked, ≤ MaxInterleavedTable
}

// RateLimit is the NTP server's per-client-address token bucket (see
// ntp/ratelimit.go): requests_per_second 0 disables it.
type RateLimit struct {
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	Burst             int     `yaml:"burst"`
	TableSize         int     `yaml:"table_size"` // addresses tracked, ≤ MaxRateLimitTable
	Leak              float64 `yaml:"leak"`       // fraction of over-limit requests answered anyway
	KoD               bool    `yaml:"kod"`        // send RATE kiss-o'-death to over-limit clients
}

// Bounds of the values (Validate refuses anything outside them).
const (
	MaxClockOffset       = 10 * 365 * 24 * time.Hour // ±10 years
	MaxMaxError          = 24 * time.Hour
	MaxStepThreshold     = 24 * time.Hour
	MinRequestsPerSecond = 0.001 // one request per 1000 s
	MaxRequestsPerSecond = 1e6
	MaxBurst             = 1_000_000
	MaxRateLimitTable    = ntp.MaxRateLimitTable
	MaxInterleavedTable  = ntp.MaxInterleavedTable
	MaxHoldoverPolls     = 64
	MaxWatchers          = 1 << 20
	MaxWaiters           = 1 << 20
	MaxAccessRules       = 1024             // entries in ntp_server.allow or deny
	MaxNTPWorkers        = 256              // ntp_server.workers
	MaxNTPBusyPoll       = time.Millisecond // ntp_server.busy_poll
	AutoNTPWorkers       = 16               // ntp_server.workers 0: one per usable CPU, at most this
	DefaultPoolSources   = 4
	MaxPoolSources       = 16
	MaxMemoryLimitMiB    = 1 << 20 // 1 TiB
	MaxGCPercent         = 10000
)

// NTPServer configures the NTP server.
type NTPServer struct {
	Listen []string `yaml:"listen"`
	// Allow and Deny are CIDR prefixes (or single addresses) of clients,
	// as chrony's allow/deny: the longest prefix containing a client's
	// address decides; an address no prefix contains is served only when
	// Allow is empty.
	Allow       []string    `yaml:"allow"`
	Deny        []string    `yaml:"deny"`
	RateLimit   RateLimit   `yaml:"rate_limit"`
	Interleaved Interleaved `yaml:"interleaved"`
	// Workers is the number of sockets (each served by one goroutine with
	// recvmmsg/sendmmsg; SO_REUSEPORT when more than one) per listen
	// address; 0: one per CPU
	// the process may use (runtime.GOMAXPROCS, which follows its CPU
	// affinity and cgroup CPU limit), at most AutoNTPWorkers.
	Workers int `yaml:"workers"`
	// BusyPoll is SO_BUSY_POLL on every server socket: a worker whose
	// socket is empty polls the NIC's receive queue for up to this long
	// before it sleeps (fewer interrupts and wake-ups under load, at the
	// cost of spinning). 0: off. Only traffic that arrives through a NIC
	// driver with NAPI is polled; on loopback it does nothing.
	BusyPoll Duration `yaml:"busy_poll"`
}

// NTPWorkers is the number of server sockets per listen address that
// ntp_server.workers asks for, given the CPUs the process may use.
func (s NTPServer) NTPWorkers(cpus int) int {
	if s.Workers > 0 {
		return s.Workers
	}
	return max(1, min(cpus, AutoNTPWorkers))
}

// PTPServer configures the PTP unicast grandmaster.
type PTPServer struct {
	Listen       []string `yaml:"listen"`
	Interface    string   `yaml:"interface"`
	Timestamping string   `yaml:"timestamping"`
	Domain       int      `yaml:"domain"`       // 0..255
	EventPort    int      `yaml:"event_port"`   // 0: 319 (ours and the clients', as PTP fixes them)
	GeneralPort  int      `yaml:"general_port"` // 0: 320
	Workers      int      `yaml:"workers"`      // engines (SO_REUSEPORT sockets) per listen address
	MaxClients   int      `yaml:"max_clients"`  // per worker; beyond it requests are refused
	MinInterval  Duration `yaml:"min_interval"` // fastest Announce/Sync/Delay_Resp rate granted
	MaxDuration  Duration `yaml:"max_duration"` // longest grant; longer requests get this
	// TxTimestampTimeout is how long a Sync's transmit stamp is waited for
	// (real NICs take up to hundreds of ms under load).
	TxTimestampTimeout Duration `yaml:"tx_timestamp_timeout"`
}

// Bounds of the PTP server's values.
const (
	MinPTPInterval = time.Second / 128 // logInterval −7
	MaxPTPInterval = 64 * time.Second  // logInterval 6
	MaxPTPClients  = 1 << 22
	MaxPTPWorkers  = 256
)

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
	// MaxWaiters caps concurrent WaitUntilAfter calls in total, and
	// MaxWaitersPerConn per client connection.
	MaxWaiters        int `yaml:"max_waiters"`
	MaxWaitersPerConn int `yaml:"max_waiters_per_conn"`
}

// Metrics configures the Prometheus endpoint; "" disables it.
type Metrics struct {
	Listen string `yaml:"listen"`
}

// Shm configures the shared-memory segment; "" means the default directory.
type Shm struct {
	Path string `yaml:"path"`
}

// ClockBound configures the export in AWS ClockBound's shared-memory
// layout (version 2); an empty path disables it.
type ClockBound struct {
	Path string `yaml:"path"`
	// RealtimeWanderPPM is how far whoever steers CLOCK_REALTIME may change
	// its frequency between two publishes (ClockBound's max_drift_rate).
	RealtimeWanderPPM float64 `yaml:"realtime_wander_ppm"`
}

// HLC configures the hybrid logical clock's remote-timestamp rejection:
// a remote further ahead than max(max_offset_floor, eps_factor·ε) is refused.
type HLC struct {
	MaxOffsetFloor Duration `yaml:"max_offset_floor"`
	EpsFactor      float64  `yaml:"eps_factor"`
	Persist        bool     `yaml:"persist"` // upper bound in state_dir (default true)
}

// Memory tunes the Go runtime's memory (docs/memory.md). GOGC and
// GOMEMLIMIT in meridiand's environment override these.
type Memory struct {
	// LimitMiB is a soft limit on the Go runtime's memory in MiB
	// (runtime/debug.SetMemoryLimit, as GOMEMLIMIT): past it the GC runs
	// more often (at most about half the CPU) instead of growing the heap.
	// 0: none.
	LimitMiB int `yaml:"limit_mib"`
	// GCPercent is the GC's target (runtime/debug.SetGCPercent, as GOGC):
	// the heap may grow this many percent over the live data before a
	// collection. -1 turns it off, allowed only with a limit.
	GCPercent int `yaml:"gc_percent"`
}

// Config is the whole file.
type Config struct {
	Clock                  string     `yaml:"clock"`        // virtual | system | phc:/dev/ptpN
	ClockOffset            Duration   `yaml:"clock_offset"` // virtual only
	DriftBoundPPM          float64    `yaml:"drift_bound_ppm"`
	OscillatorTolerancePPM float64    `yaml:"oscillator_tolerance_ppm"`
	MaxError               Duration   `yaml:"max_error"`
	MinSources             int        `yaml:"min_sources"`
	LocalStratum           int        `yaml:"local_stratum"`
	StepThreshold          Duration   `yaml:"step_threshold"`
	StepLimit              int        `yaml:"step_limit"`
	Servo                  string     `yaml:"servo"` // linreg | pi
	Precision              Duration   `yaml:"precision"`
	HoldoverAfterPolls     int        `yaml:"holdover_after_polls"`
	Sources                []Source   `yaml:"sources"`
	NTPServer              NTPServer  `yaml:"ntp_server"`
	PTPServer              PTPServer  `yaml:"ptp_server"`
	GRPC                   GRPC       `yaml:"grpc"`
	HLC                    HLC        `yaml:"hlc"`
	Metrics                Metrics    `yaml:"metrics"`
	Shm                    Shm        `yaml:"shm"`
	ClockBound             ClockBound `yaml:"clockbound"`
	StateDir               string     `yaml:"state_dir"`
	LogLevel               string     `yaml:"log_level"` // debug | info | warn | error
	Memory                 Memory     `yaml:"memory"`
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
		LocalStratum:           0,
		StepThreshold:          Duration(128 * time.Millisecond),
		StepLimit:              3,
		Servo:                  "linreg",
		Precision:              Duration(100 * time.Nanosecond),
		HoldoverAfterPolls:     4,
		Sources:                []Source{},
		NTPServer: NTPServer{Listen: []string{}, Allow: []string{}, Deny: []string{},
			RateLimit:   RateLimit{Burst: 8, TableSize: 4096, Leak: ntp.DefaultRateLimitLeak},
			Interleaved: Interleaved{Enabled: true, TableSize: ntp.DefaultInterleavedTable}},
		PTPServer: PTPServer{Listen: []string{}, Workers: 2, MaxClients: 10000, MinInterval: Duration(time.Second / 16),
			MaxDuration: Duration(time.Hour), TxTimestampTimeout: Duration(10 * time.Millisecond)},
		GRPC:       GRPC{Listen: ListenList{DefaultGRPCSocket}, MaxWatchers: 1024, MaxWaiters: 4096, MaxWaitersPerConn: 256},
		HLC:        HLC{MaxOffsetFloor: Duration(time.Millisecond), EpsFactor: 2, Persist: true},
		Metrics:    Metrics{Listen: "127.0.0.1:9390"},
		ClockBound: ClockBound{RealtimeWanderPPM: 15},
		LogLevel:   "info",
		Memory:     Memory{LimitMiB: 24, GCPercent: 100},
	}
}

// DefaultYAML is Default() as a commented file (meridiand --print-default-config).
func DefaultYAML() []byte {
	return []byte(`# meridiand configuration (README.md and docs/ explain each part). Every key is optional.
clock: virtual              # virtual | system | phc:/dev/ptpN (the NIC's clock follows ours)
clock_offset: 0s            # virtual only: start offset from the host clock (tests, demos)
drift_bound_ppm: 15         # assumed bound on frequency wander (RFC 5905 PHI)
oscillator_tolerance_ppm: 500  # |frequency error| of an uncorrected oscillator
max_error: 1s               # beyond this error bound the clock reports unsynchronized
min_sources: 1              # agreeing sources needed before synchronized
local_stratum: 0            # >0 with no sources: serve this host's clock as a local reference (not UTC; demos, isolated networks)
step_threshold: 128ms       # step (not slew) offsets beyond this ...
step_limit: 3               # ... during the first N updates (-1: always)
servo: linreg               # linreg | pi
precision: 100ns            # reading precision of the clock
holdover_after_polls: 4     # holdover once this many polls of the slowest source brought no sample
sources: []                 # e.g. [{type: ntp, address: "10.200.0.2:123", poll: 16s, iburst: true, xleave: false}]
ntp_server:
  listen: []                # e.g. ["127.0.0.1:11123"]
  rate_limit:               # per client address, shared by all server sockets
    requests_per_second: 0  # 0: off
    burst: 8
    table_size: 4096        # addresses tracked (≤ 1048576, ~64 bytes each); LRU within a 4-way set
    leak: 0.25              # fraction of over-limit requests answered anyway (chrony's leak 2)
    kod: false              # true: one RATE kiss-o'-death per burst/rate per address
  interleaved:              # replies carry the previous reply's kernel transmit stamp to clients that ask (xleave)
    enabled: true
    table_size: 4096        # client addresses tracked (≤ 1048576, 48 bytes each); LRU within a 4-way set
  workers: 0                # sockets per listen address (≤ 256); 0: one per CPU meridiand may use (≤ 16)
ptp_server:                 # unicast PTP grandmaster (ports 319/320)
  listen: []                # addresses, e.g. ["10.200.0.2"]
  interface: ""
  timestamping: ""          # auto | hardware | software
  domain: 0
  event_port: 0             # 0: 319; general_port 0: 320
  general_port: 0
  workers: 2
  max_clients: 10000        # per worker
  min_interval: 62.5ms      # fastest rate granted (2^-4 s)
  max_duration: 1h0m0s      # longest grant
  tx_timestamp_timeout: 10ms
grpc:
  listen: [unix:///run/meridian/grpc.sock]   # and/or "host:port" (TCP); [] disables
  tls: {cert: "", key: "", ca: ""}  # TCP only; ca set: clients need a certificate (mTLS)
  max_watchers: 1024        # concurrent Watch streams
  max_waiters: 4096         # concurrent WaitUntilAfter calls ...
  max_waiters_per_conn: 256 # ... and per client connection
hlc:                        # remote HLC timestamps further ahead than
  max_offset_floor: 1ms     #   max(max_offset_floor, eps_factor·ε) are rejected
  eps_factor: 2
  persist: true             # write-ahead upper bound in state_dir: no regression across restarts
metrics: {listen: "127.0.0.1:9390"}   # "" disables
shm: {path: ""}             # "": /run/meridian/truetime.shm, else a per-user runtime dir
clockbound:                 # the interval in AWS ClockBound's v2 layout, for ClockBound clients
  path: ""                  # "": off; ClockBound's default is /var/run/clockbound/shm0
  realtime_wander_ppm: 15   # assumed frequency change of CLOCK_REALTIME between publishes
state_dir: ""               # "": /var/lib/meridian, else a per-user state dir
log_level: info             # debug | info | warn | error
memory:                     # the Go runtime (docs/memory.md); GOGC, GOMEMLIMIT in the environment override
  limit_mib: 24             # soft limit on the Go runtime's memory in MiB (as GOMEMLIMIT); 0: none
  gc_percent: 100           # heap growth over live data before a collection (as GOGC); -1: off (needs limit_mib)
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
		if msg := typeErrors(data, err); msg != "" {
			return nil, errors.New(msg)
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	// `key:` with no value decodes to nil: the same as an empty list.
	if c.Sources == nil {
		c.Sources = []Source{}
	}
	if c.NTPServer.Listen == nil {
		c.NTPServer.Listen = []string{}
	}
	if c.NTPServer.Allow == nil {
		c.NTPServer.Allow = []string{}
	}
	if c.NTPServer.Deny == nil {
		c.NTPServer.Deny = []string{}
	}
	if c.PTPServer.Listen == nil {
		c.PTPServer.Listen = []string{}
	}
	if c.GRPC.Listen == nil {
		c.GRPC.Listen = ListenList{}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// typeErrRe matches one of yaml's type errors: "line N: cannot unmarshal
// !!str `abc` into int".
var typeErrRe = regexp.MustCompile("line (\\d+): cannot unmarshal !!(\\w+)(?: `([^`]*)`)? into (.+)")

// typeErrors rewrites yaml's type errors to name each value's key path, as
// every other config error does; "" when err holds none.
func typeErrors(data []byte, err error) string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return ""
	}
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return ""
	}
	var out []string
	for _, e := range te.Errors {
		m := typeErrRe.FindStringSubmatch(e)
		if m == nil {
			out = append(out, "config: "+e)
			continue
		}
		line, _ := strconv.Atoi(m[1])
		tag, value, want := m[2], m[3], m[4]
		key := keyAt(&root, "", line, "!!"+tag, value)
		if key == "" {
			key = "line " + m[1]
		}
		got := fmt.Sprintf("%q", value)
		if value == "" && tag != "str" {
			got = "a " + map[string]string{"seq": "list", "map": "mapping"}[tag]
		}
		out = append(out, fmt.Sprintf("config: %s: want %s, got %s (line %d)", key, want, got, line))
	}
	return strings.Join(out, "; ")
}

// keyAt is the path (a.b[2].c) of the value on line with the given tag
// (and, for a scalar, text), "" when there is none.
func keyAt(n *yaml.Node, path string, line int, tag, value string) string {
	// The deepest match wins: a list that starts on the line of the value
	// inside it is not the culprit.
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if k := keyAt(c, path, line, tag, value); k != "" {
				return k
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := n.Content[i].Value
			if path != "" {
				p = path + "." + p
			}
			if k := keyAt(n.Content[i+1], p, line, tag, value); k != "" {
				return k
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if k := keyAt(c, fmt.Sprintf("%s[%d]", path, i), line, tag, value); k != "" {
				return k
			}
		}
	}
	if n.Line == line && n.Tag == tag && (n.Kind != yaml.ScalarNode || n.Value == value) && path != "" {
		return path
	}
	return ""
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

// Validate reports the first bad value, naming its key. Every value is
// bounded (NaN and ±Inf are refused everywhere) and cross-key constraints
// are checked here, so that a config that passes runs as written.
func (c *Config) Validate() error {
	// within reports whether lo ≤ v ≤ hi (false for NaN).
	within := func(v, lo, hi float64) bool { return v >= lo && v <= hi }
	switch {
	case c.Clock == "virtual" || c.Clock == "system":
	case strings.HasPrefix(c.Clock, "phc:/dev/ptp"):
		if n, err := strconv.Atoi(strings.TrimPrefix(c.Clock, "phc:/dev/ptp")); err != nil || n < 0 {
			return bad("clock", "bad PHC device %q (want phc:/dev/ptpN)", c.Clock)
		}
	default:
		return bad("clock", "unknown clock %q (want virtual, system or phc:/dev/ptpN)", c.Clock)
	}
	if c.Clock != "virtual" && c.ClockOffset != 0 {
		return bad("clock_offset", "only applies to clock: virtual")
	}
	if c.ClockOffset.D().Abs() > MaxClockOffset {
		return bad("clock_offset", "must be within ±%v (10 years), got %v", MaxClockOffset, c.ClockOffset.D())
	}
	if !within(c.DriftBoundPPM, math.SmallestNonzeroFloat64, 1000) {
		return bad("drift_bound_ppm", "must be in (0, 1000], got %v", c.DriftBoundPPM)
	}
	if !within(c.OscillatorTolerancePPM, math.SmallestNonzeroFloat64, 100000) {
		return bad("oscillator_tolerance_ppm", "must be in (0, 100000], got %v", c.OscillatorTolerancePPM)
	}
	if c.Precision <= 0 || c.Precision > Duration(time.Millisecond) {
		return bad("precision", "must be in (0, 1ms], got %v", c.Precision.D())
	}
	if c.MaxError <= 0 || c.MaxError.D() > MaxMaxError {
		return bad("max_error", "must be in (0, %v], got %v", MaxMaxError, c.MaxError.D())
	}
	// ε is at least the precision, and between two updates (one a second)
	// it grows at the drift bound: a smaller max_error would report
	// "synchronized" at each update and unsynchronized to every reader.
	if floor := c.Precision + Duration(c.DriftBoundPPM*1e3); c.MaxError <= floor {
		return bad("max_error", "%v must exceed precision + drift_bound_ppm × 1s = %v (the error bound between two updates): the clock would never be synchronized",
			c.MaxError.D(), floor.D())
	}
	if c.MinSources < 1 || c.MinSources > 64 {
		return bad("min_sources", "must be 1..64, got %d", c.MinSources)
	}
	if len(c.Sources) > 0 && c.MinSources > len(c.Sources) {
		return bad("min_sources", "%d exceeds the %d configured sources (the clock would never synchronize)", c.MinSources, len(c.Sources))
	}
	if c.LocalStratum < 0 || c.LocalStratum > 15 {
		return bad("local_stratum", "must be 0..15, got %d", c.LocalStratum)
	}
	if c.StepThreshold < 0 || c.StepThreshold.D() > MaxStepThreshold {
		return bad("step_threshold", "must be in [0, %v], got %v", MaxStepThreshold, c.StepThreshold.D())
	}
	if c.StepLimit < -1 || c.StepLimit > 1_000_000 {
		return bad("step_limit", "must be -1 (always) or 0..1000000, got %d", c.StepLimit)
	}
	if c.Servo != "linreg" && c.Servo != "pi" {
		return bad("servo", "want linreg or pi, got %q", c.Servo)
	}
	if c.HoldoverAfterPolls < 1 || c.HoldoverAfterPolls > MaxHoldoverPolls {
		return bad("holdover_after_polls", "must be 1..%d, got %d", MaxHoldoverPolls, c.HoldoverAfterPolls)
	}
	if len(c.Sources) > 256 {
		return bad("sources", "at most 256 sources, got %d", len(c.Sources))
	}
	seen := map[string]int{}
	for i, s := range c.Sources {
		key := fmt.Sprintf("sources[%d]", i)
		switch s.Type {
		case "ntp", "ptp", "pool":
		default:
			return bad(key+".type", "want ntp, pool or ptp, got %q", s.Type)
		}
		if s.Type == "pool" {
			if s.MaxSources == 0 {
				c.Sources[i].MaxSources, s.MaxSources = DefaultPoolSources, DefaultPoolSources
			}
			if s.MaxSources < 1 || s.MaxSources > MaxPoolSources {
				return bad(key+".max_sources", "must be 1..%d, got %d", MaxPoolSources, s.MaxSources)
			}
		} else if s.MaxSources != 0 {
			return bad(key+".max_sources", "only for type pool, got %d", s.MaxSources)
		}
		if s.Address == "" {
			return bad(key+".address", "must be set")
		}
		if s.Type == "ntp" || s.Type == "pool" {
			if a, ok := DefaultNTPPort(s.Address); ok {
				c.Sources[i].Address, s.Address = a, a
			}
			if err := hostPort(s.Address, false); err != nil {
				return bad(key+".address", "%v", err)
			}
		} else if err := hostOnly(s.Address); err != nil {
			return bad(key+".address", "%v", err)
		}
		if s.MaxDistance < 0 || s.MaxDistance > Duration(MaxMaxError) {
			return bad(key+".max_distance", "must be in [0, %v], got %v", MaxMaxError, s.MaxDistance.D())
		}
		if s.NoSelect && s.Prefer {
			return bad(key+".prefer", "a noselect source is never selected, so cannot be preferred")
		}
		if j, dup := seen[s.Type+"|"+s.Address]; dup {
			return bad(key+".address", "%q duplicates sources[%d]", s.Address, j)
		}
		seen[s.Type+"|"+s.Address] = i
		for _, p := range []struct {
			name string
			v    Duration
		}{{"poll", s.Poll}, {"min_poll", s.MinPoll}, {"max_poll", s.MaxPoll}} {
			if p.v < 0 || (p.v != 0 && p.v < Duration(125*time.Millisecond)) {
				return bad(key+"."+p.name, "must be ≥ 125ms, got %v", p.v.D())
			}
			if p.v > Duration(36*time.Hour) {
				return bad(key+"."+p.name, "must be ≤ 36h, got %v", p.v.D())
			}
		}
		if s.MinPoll != 0 && s.MaxPoll != 0 && s.MinPoll > s.MaxPoll {
			return bad(key+".min_poll", "%v exceeds max_poll %v", s.MinPoll.D(), s.MaxPoll.D())
		}
		if s.Poll != 0 && s.MinPoll != 0 && s.Poll < s.MinPoll {
			return bad(key+".poll", "%v is below min_poll %v", s.Poll.D(), s.MinPoll.D())
		}
		if s.Poll != 0 && s.MaxPoll != 0 && s.Poll > s.MaxPoll {
			return bad(key+".poll", "%v exceeds max_poll %v", s.Poll.D(), s.MaxPoll.D())
		}
		if s.MaxPoll == 0 && (s.Poll > Duration(defaultMaxPoll) || s.MinPoll > Duration(defaultMaxPoll)) {
			return bad(key+".max_poll", "must be set when poll or min_poll exceeds the default max_poll %v", defaultMaxPoll)
		}
		if err := ifName(s.Interface); err != nil {
			return bad(key+".interface", "%v", err)
		}
		switch s.Timestamping {
		case "", "auto", "hardware", "software":
		default:
			return bad(key+".timestamping", "want auto, hardware or software, got %q", s.Timestamping)
		}
		if s.XLeave && s.Type == "ptp" {
			return bad(key+".xleave", "interleaved mode is for ntp sources, not %s", s.Type)
		}
		if err := ptpSource(c.Sources, i); err != nil {
			return err
		}
	}
	for i, a := range c.NTPServer.Listen {
		if err := hostPort(a, true); err != nil {
			return bad(fmt.Sprintf("ntp_server.listen[%d]", i), "%v", err)
		}
	}
	for _, l := range []struct {
		key string
		v   []string
	}{{"ntp_server.allow", c.NTPServer.Allow}, {"ntp_server.deny", c.NTPServer.Deny}} {
		if len(l.v) > MaxAccessRules {
			return bad(l.key, "at most %d entries, got %d", MaxAccessRules, len(l.v))
		}
		for j, p := range l.v {
			if _, err := ParsePrefix(p); err != nil {
				return bad(fmt.Sprintf("%s[%d]", l.key, j), "%v", err)
			}
		}
	}
	if p := c.ClockBound.Path; p != "" && !filepath.IsAbs(p) {
		return bad("clockbound.path", "must be an absolute path, got %q", p)
	}
	if !within(c.ClockBound.RealtimeWanderPPM, 0, 1000) {
		return bad("clockbound.realtime_wander_ppm", "must be in [0, 1000], got %v", c.ClockBound.RealtimeWanderPPM)
	}
	rl := c.NTPServer.RateLimit
	if rl.RequestsPerSecond != 0 && !within(rl.RequestsPerSecond, MinRequestsPerSecond, MaxRequestsPerSecond) {
		return bad("ntp_server.rate_limit.requests_per_second", "must be 0 (off) or in [%g, %g], got %v", MinRequestsPerSecond, MaxRequestsPerSecond, rl.RequestsPerSecond)
	}
	if rl.Burst < 1 || rl.Burst > MaxBurst {
		return bad("ntp_server.rate_limit.burst", "must be 1..%d, got %d", MaxBurst, rl.Burst)
	}
	if rl.TableSize < 1 || rl.TableSize > MaxRateLimitTable {
		return bad("ntp_server.rate_limit.table_size", "must be 1..%d, got %d", MaxRateLimitTable, rl.TableSize)
	}
	if !within(rl.Leak, 0, 1) {
		return bad("ntp_server.rate_limit.leak", "must be a fraction in [0, 1], got %v", rl.Leak)
	}
	if xl := c.NTPServer.Interleaved; xl.TableSize < 1 || xl.TableSize > MaxInterleavedTable {
		return bad("ntp_server.interleaved.table_size", "must be 1..%d, got %d", MaxInterleavedTable, xl.TableSize)
	}
	if w := c.NTPServer.Workers; w < 0 || w > MaxNTPWorkers {
		return bad("ntp_server.workers", "must be 0 (one per usable CPU) or 1..%d, got %d", MaxNTPWorkers, w)
	}
	if bp := c.NTPServer.BusyPoll.D(); bp < 0 || bp > MaxNTPBusyPoll || bp%time.Microsecond != 0 {
		return bad("ntp_server.busy_poll", "must be 0 (off) or whole microseconds up to %v, got %v", MaxNTPBusyPoll, bp)
	}
	for i, a := range c.PTPServer.Listen { // an address: PTP's ports are 319 and 320
		if err := hostOnly(a); err != nil {
			return bad(fmt.Sprintf("ptp_server.listen[%d]", i), "%v", err)
		}
	}
	if err := ifName(c.PTPServer.Interface); err != nil {
		return bad("ptp_server.interface", "%v", err)
	}
	switch c.PTPServer.Timestamping {
	case "", "auto", "hardware", "software":
	default:
		return bad("ptp_server.timestamping", "want auto, hardware or software, got %q", c.PTPServer.Timestamping)
	}
	if err := c.PTPServer.validate(); err != nil {
		return err
	}
	if (c.GRPC.TLS.Cert == "") != (c.GRPC.TLS.Key == "") {
		return bad("grpc.tls", "cert and key must be set together")
	}
	if c.GRPC.TLS.CA != "" && c.GRPC.TLS.Cert == "" {
		return bad("grpc.tls.ca", "mTLS needs the server's own cert and key too")
	}
	for i, a := range c.GRPC.Listen {
		network, address, err := addr.Parse(a)
		if err == nil && network == "tcp" {
			err = hostPort(address, true)
		}
		if err != nil {
			return bad(fmt.Sprintf("grpc.listen[%d]", i), "%v", err)
		}
	}
	if c.GRPC.MaxWatchers < 0 || c.GRPC.MaxWatchers > MaxWatchers {
		return bad("grpc.max_watchers", "must be 0 (1024) or up to %d, got %d", MaxWatchers, c.GRPC.MaxWatchers)
	}
	if c.GRPC.MaxWaiters < 1 || c.GRPC.MaxWaiters > MaxWaiters {
		return bad("grpc.max_waiters", "must be 1..%d, got %d", MaxWaiters, c.GRPC.MaxWaiters)
	}
	if c.GRPC.MaxWaitersPerConn < 1 || c.GRPC.MaxWaitersPerConn > c.GRPC.MaxWaiters {
		return bad("grpc.max_waiters_per_conn", "must be 1..max_waiters (%d), got %d", c.GRPC.MaxWaiters, c.GRPC.MaxWaitersPerConn)
	}
	if c.HLC.MaxOffsetFloor < 0 || c.HLC.MaxOffsetFloor.D() > time.Hour {
		return bad("hlc.max_offset_floor", "must be in [0, 1h], got %v", c.HLC.MaxOffsetFloor.D())
	}
	if !within(c.HLC.EpsFactor, 0, 1000) {
		return bad("hlc.eps_factor", "must be in [0, 1000], got %v", c.HLC.EpsFactor)
	}
	if c.Metrics.Listen != "" {
		if err := hostPort(c.Metrics.Listen, true); err != nil {
			return bad("metrics.listen", "%v", err)
		}
	}
	if c.Memory.LimitMiB < 0 || c.Memory.LimitMiB > MaxMemoryLimitMiB {
		return bad("memory.limit_mib", "must be 0 (none) or up to %d, got %d", MaxMemoryLimitMiB, c.Memory.LimitMiB)
	}
	if c.Memory.GCPercent == 0 || c.Memory.GCPercent < -1 || c.Memory.GCPercent > MaxGCPercent {
		return bad("memory.gc_percent", "must be 1..%d, or -1 (off) with a limit_mib, got %d", MaxGCPercent, c.Memory.GCPercent)
	}
	if c.Memory.GCPercent == -1 && c.Memory.LimitMiB == 0 {
		return bad("memory.gc_percent", "-1 (off) needs a memory.limit_mib: the heap would grow without bound")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return bad("log_level", "want debug, info, warn or error, got %q", c.LogLevel)
	}
	return nil
}

// defaultMaxPoll is the NTP client's max poll when max_poll is unset.
const defaultMaxPoll = 1024 * time.Second

// defaultPoll is the NTP client's poll when neither poll nor min_poll is set.
const defaultPoll = 16 * time.Second

// hostPort checks "host:port" syntax now (names resolve later): a port
// number in 1..65535, or 0 (any free port) when listening.
func hostPort(a string, listen bool) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q: want host:port", a)
	}
	if strings.ContainsAny(host, " \t/") || (!listen && host == "") || (host != "" && !validHost(host)) {
		return fmt.Errorf("%q: bad host %q (want an IP address or a DNS name)", a, host)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || (n == 0 && !listen) {
		lo := 1
		if listen {
			lo = 0
		}
		return fmt.Errorf("%q: port must be a number in %d..65535, got %q", a, lo, port)
	}
	return nil
}

// bad is a validation error naming its key.
func bad(key, f string, a ...any) error {
	return fmt.Errorf("config: %s: %s", key, fmt.Sprintf(f, a...))
}

// ptpSource checks the PTP keys of sources[i]: only ptp sources have them,
// and every ptp source shares one client port (domain, ports, interface
// and timestamping agree with the first ptp source).
func ptpSource(srcs []Source, i int) error {
	s, key := srcs[i], fmt.Sprintf("sources[%d]", i)
	if s.Type != "ptp" {
		for _, f := range []struct {
			name string
			v    int
		}{{"domain", s.Domain}, {"event_port", s.EventPort}, {"general_port", s.GeneralPort}} {
			if f.v != 0 {
				return bad(key+"."+f.name, "only for type ptp, got %d", f.v)
			}
		}
		return nil
	}
	if s.Domain < 0 || s.Domain > 255 {
		return bad(key+".domain", "must be 0..255, got %d", s.Domain)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"event_port", s.EventPort}, {"general_port", s.GeneralPort}} {
		if f.v < 0 || f.v > 65535 {
			return bad(key+"."+f.name, "must be 1..65535 (0: the standard port), got %d", f.v)
		}
	}
	for j := range i {
		f := srcs[j]
		if f.Type != "ptp" {
			continue
		}
		switch {
		case f.Domain != s.Domain:
			return bad(key+".domain", "%d differs from sources[%d]'s %d: all ptp sources share one client port", s.Domain, j, f.Domain)
		case f.EventPort != s.EventPort || f.GeneralPort != s.GeneralPort:
			return bad(key+".event_port", "ports differ from sources[%d]'s: all ptp sources share one client port", j)
		case f.Interface != s.Interface:
			return bad(key+".interface", "%q differs from sources[%d]'s %q: all ptp sources share one client port", s.Interface, j, f.Interface)
		case f.Timestamping != s.Timestamping:
			return bad(key+".timestamping", "%q differs from sources[%d]'s %q: all ptp sources share one client port", s.Timestamping, j, f.Timestamping)
		}
		break
	}
	return nil
}

// validate checks the grandmaster's limits.
func (p PTPServer) validate() error {
	if p.Domain < 0 || p.Domain > 255 {
		return bad("ptp_server.domain", "must be 0..255, got %d", p.Domain)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"event_port", p.EventPort}, {"general_port", p.GeneralPort}} {
		if f.v < 0 || f.v > 65535 {
			return bad("ptp_server."+f.name, "must be 1..65535 (0: the standard port), got %d", f.v)
		}
	}
	if p.Workers < 1 || p.Workers > MaxPTPWorkers {
		return bad("ptp_server.workers", "must be 1..%d, got %d", MaxPTPWorkers, p.Workers)
	}
	if p.MaxClients < 1 || p.MaxClients > MaxPTPClients {
		return bad("ptp_server.max_clients", "must be 1..%d, got %d", MaxPTPClients, p.MaxClients)
	}
	if p.MinInterval.D() < MinPTPInterval || p.MinInterval.D() > MaxPTPInterval {
		return bad("ptp_server.min_interval", "must be %v..%v, got %v", MinPTPInterval, MaxPTPInterval, p.MinInterval.D())
	}
	if p.MaxDuration.D() < 10*time.Second || p.MaxDuration.D() > 24*time.Hour {
		return bad("ptp_server.max_duration", "must be 10s..24h, got %v", p.MaxDuration.D())
	}
	if p.TxTimestampTimeout.D() < time.Millisecond || p.TxTimestampTimeout.D() > 10*time.Second {
		return bad("ptp_server.tx_timestamp_timeout", "must be 1ms..10s, got %v", p.TxTimestampTimeout.D())
	}
	return nil
}

// MinLogInterval is min_interval as a PTP log2 interval, rounded up (never
// granting faster than configured).
func (p PTPServer) MinLogInterval() int8 {
	l := int8(-7)
	for time.Duration(float64(time.Second)*math.Pow(2, float64(l))) < p.MinInterval.D() && l < 6 {
		l++
	}
	return l
}

// hostOnly checks a host without a port (PTP).
func hostOnly(a string) error {
	if a == "" || strings.ContainsAny(a, " \t/") || (strings.Contains(a, ":") && net.ParseIP(a) == nil) || !validHost(a) {
		return fmt.Errorf("%q: want a host name or IP address without a port", a)
	}
	return nil
}

// validHost reports whether h is an IP address or a syntactically valid
// DNS name (RFC 1123 labels: letters, digits and hyphens, 1..63 each, not
// starting or ending with a hyphen; at most 253 characters).
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// DefaultNTPPort returns a (host without a port) with NTP's port 123, and
// true; false when a already has a port (or is not a host).
func DefaultNTPPort(a string) (string, bool) {
	if _, _, err := net.SplitHostPort(a); err == nil {
		return a, false
	}
	h := strings.TrimSuffix(strings.TrimPrefix(a, "["), "]")
	if h == "" || strings.ContainsAny(h, " \t/") || (strings.Contains(h, ":") && net.ParseIP(h) == nil) {
		return a, false
	}
	return net.JoinHostPort(h, "123"), true
}

// ParsePrefix reads a CIDR prefix or a single address (a /32 or /128).
func ParsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q: want a CIDR prefix (10.0.0.0/8, 2001:db8::/32) or an address", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// ifName checks a network interface name ("" is none).
func ifName(s string) error {
	if len(s) > 15 || strings.ContainsAny(s, " \t/:") {
		return fmt.Errorf("%q is not an interface name (at most 15 characters, no spaces, '/' or ':')", s)
	}
	return nil
}

// EffectivePoll is the longest interval between polls the source uses in
// normal operation: max_poll when the poll adapts, otherwise the fixed poll
// (with the NTP client's defaults for unset values).
func (s Source) EffectivePoll() time.Duration {
	poll, minPoll, maxPoll := s.Poll.D(), s.MinPoll.D(), s.MaxPoll.D()
	if maxPoll == 0 {
		maxPoll = defaultMaxPoll
	}
	if minPoll > 0 && maxPoll > minPoll {
		return maxPoll // adaptive
	}
	if poll == 0 {
		poll = minPoll
	}
	if poll == 0 {
		poll = defaultPoll
	}
	return poll
}

// HoldoverAfter is how long the clock stays synchronized without a new
// sample: holdover_after_polls polls of the slowest source. With no
// sources it is the discipline's default.
func (c *Config) HoldoverAfter() time.Duration {
	var slowest time.Duration
	for _, s := range c.Sources {
		slowest = max(slowest, s.EffectivePoll())
	}
	if slowest == 0 {
		return time.Duration(discipline.DefaultConfig().HoldoverAfterNS)
	}
	return time.Duration(c.HoldoverAfterPolls) * slowest
}

// NTPRateLimit is the NTP server's rate limit.
func (c *Config) NTPRateLimit() ntp.RateLimit {
	rl := c.NTPServer.RateLimit
	leak := rl.Leak
	if leak == 0 {
		leak = -1 // ntp: 0 means its default; the file's 0 means none
	}
	return ntp.RateLimit{RequestsPerSecond: rl.RequestsPerSecond, Burst: rl.Burst, TableSize: rl.TableSize, Leak: leak, KoD: rl.KoD}
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
	d.HoldoverAfterNS = int64(c.HoldoverAfter())
	if c.Servo == "pi" {
		d.Servo = discipline.ServoPI
	}
	return d
}
