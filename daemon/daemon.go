// Package daemon assembles meridiand: clock, discipline, TrueTime
// publication (in-process and shared memory), metrics and the drift file.
// It keeps cmd/meridiand/main.go short and is what tests start in-process.
//
// Invariants:
//   - The host clock is never touched: only clock: virtual is wired here.
//   - Every publish carries the clock model and the estimate of one update,
//     so readers compute the interval against the same model the discipline
//     steered.
//   - local_stratum > 0 with no sources: the daemon is its own reference
//     (chrony's `local stratum N`): it publishes a synchronized estimate of
//     its own clock with ε = precision, re-based every tick and widening at
//     the drift bound from the last tick, so readers of a dead daemon see
//     holdover and then unsynchronized.
//   - Run returns only after every goroutine it started has stopped.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meridiantime/meridian/clock"
	"github.com/meridiantime/meridian/clock/virtual"
	"github.com/meridiantime/meridian/config"
	"github.com/meridiantime/meridian/discipline"
	"github.com/meridiantime/meridian/hlc"
	"github.com/meridiantime/meridian/hwts"
	"github.com/meridiantime/meridian/internal/atomicfile"
	"github.com/meridiantime/meridian/ntp"
	"github.com/meridiantime/meridian/timeservice"
	"github.com/meridiantime/meridian/truetime"
)

// Options tune the daemon beyond the config file (tests use short ticks).
type Options struct {
	Tick           time.Duration // discipline update period; 0 → 1s
	DriftFileEvery time.Duration // 0 → 60s
	// Ablation removes a safety term from the discipline: negative controls
	// in tests only, never set by meridiand.
	Ablation discipline.Ablation
}

// Daemon is one running meridiand.
type Daemon struct {
	cfg  *config.Config
	opt  Options
	log  *slog.Logger
	clk  *virtual.Clock
	disc *discipline.Discipline
	loop *discipline.Loop
	pub  truetime.Publisher
	tt   *truetime.Clock
	shm  *truetime.ShmWriter
	m    *metrics

	ShmPath   string
	StateDir  string
	driftPath string

	metricsLn net.Listener
	lastState truetime.Status

	sources   []*ntp.Source
	ntpServer *ntp.Server
	hlc       *hlc.Clock

	grpcListen []string
	grpc       *timeservice.Server
	started    time.Time

	reportsMu sync.Mutex
	reports   map[string]discipline.SourceReport // newest per source, for the Sources call
	samples   chan ntp.SourceSample
	stepGen   atomic.Uint64
}

// DefaultGRPCSocketPath is the unix socket the default grpc.listen falls
// back to when /run/meridian is not writable (see DefaultShmPath).
func DefaultGRPCSocketPath() string { return filepath.Join(runtimeDir(), "grpc.sock") }

// DefaultShmPath is where the segment lives when shm.path is "": under
// /run/meridian when writable, else a per-user runtime directory.
func DefaultShmPath() string { return filepath.Join(runtimeDir(), "truetime.shm") }

func writableDir(dir string) bool {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return false
	}
	f.Close()
	os.Remove(f.Name())
	return true
}

// firstWritable returns the first candidate directory that can be created
// and written, or the last candidate.
func firstWritable(candidates ...string) string {
	for _, c := range candidates[:len(candidates)-1] {
		if writableDir(c) {
			return c
		}
	}
	return candidates[len(candidates)-1]
}

// runtimeDirs are the candidate runtime directories, most privileged first.
func runtimeDirs() []string {
	c := []string{"/run/meridian"}
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" {
		c = append(c, filepath.Join(x, "meridian"))
	}
	return append(c, filepath.Join(os.TempDir(), "meridian-"+strconv.Itoa(os.Getuid())))
}

func runtimeDir() string { return firstWritable(runtimeDirs()...) }

// LocateRuntimeFile is where a client finds a daemon's runtime file (name
// "truetime.shm" or "grpc.sock"): the first candidate directory holding it,
// so an unprivileged client finds a system daemon's files under
// /run/meridian; when none exists, the path this user's daemon would use.
func LocateRuntimeFile(name string) string {
	for _, d := range runtimeDirs() {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return filepath.Join(runtimeDir(), name)
}

func defaultStateDir() string {
	c := []string{"/var/lib/meridian"}
	if x := os.Getenv("XDG_STATE_HOME"); x != "" {
		c = append(c, filepath.Join(x, "meridian"))
	}
	if h, err := os.UserHomeDir(); err == nil {
		c = append(c, filepath.Join(h, ".local", "state", "meridian"))
	}
	return firstWritable(append(c, filepath.Join(os.TempDir(), "meridian-state-"+strconv.Itoa(os.Getuid())))...)
}

// New validates what the daemon can run and prepares its parts. Nothing
// is started until Run.
func New(cfg *config.Config, log *slog.Logger, opt Options) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Clock != "virtual" {
		return nil, fmt.Errorf("clock: %q is not supported by meridiand yet: use clock: virtual", cfg.Clock)
	}
	for i, s := range cfg.Sources {
		if s.Type != "ntp" {
			return nil, fmt.Errorf("sources[%d]: type %s is not implemented yet (ntp is)", i, s.Type)
		}
	}
	if len(cfg.PTPServer.Listen) > 0 {
		return nil, errors.New("ptp_server is not implemented yet: leave ptp_server.listen empty")
	}
	if opt.Tick == 0 {
		opt.Tick = time.Second
	}
	if opt.DriftFileEvery == 0 {
		opt.DriftFileEvery = time.Minute
	}
	d := &Daemon{cfg: cfg, opt: opt, log: log, ShmPath: cfg.Shm.Path, StateDir: cfg.StateDir, lastState: 255,
		reports: map[string]discipline.SourceReport{}, started: time.Now()}
	if d.ShmPath == "" {
		d.ShmPath = DefaultShmPath()
	}
	if d.StateDir == "" {
		d.StateDir = defaultStateDir()
	}
	d.driftPath = filepath.Join(d.StateDir, "drift")
	for _, a := range cfg.GRPC.Listen {
		if a == config.DefaultGRPCSocket && !writableDir("/run/meridian") {
			a = "unix://" + DefaultGRPCSocketPath() // unprivileged: next to the shm segment
		}
		d.grpcListen = append(d.grpcListen, a)
	}
	return d, nil
}

// ReadDriftFile returns the frequency (ppb) stored by a previous run. A
// missing file is (0, nil).
func ReadDriftFile(path string) (float64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	if err != nil || v != v || v > 500_000 || v < -500_000 {
		return 0, fmt.Errorf("drift file %s: want one frequency in ppb within ±500000, got %q", path, strings.TrimSpace(string(b)))
	}
	return v, nil
}

// WriteDriftFile stores the frequency durably (see atomicfile).
func WriteDriftFile(path string, freqPPB float64) error {
	return atomicfile.Write(path, []byte(fmt.Sprintf("%.3f\n", freqPPB)))
}

// Clock is the in-process TrueTime clock (valid after Run starts).
func (d *Daemon) Clock() *truetime.Clock { return d.tt }

// NTPServerAddr is the first NTP server socket's address, "" when off.
func (d *Daemon) NTPServerAddr() string {
	if d.ntpServer == nil {
		return ""
	}
	return d.ntpServer.Addr()
}

// HLC is the daemon's hybrid logical clock (valid after Start).
func (d *Daemon) HLC() *hlc.Clock { return d.hlc }

// GRPCAddrs are the TimeService listeners ("unix:///path", "host:port").
func (d *Daemon) GRPCAddrs() []string {
	if d.grpc == nil {
		return nil
	}
	return d.grpc.Addrs()
}

// MetricsAddr is the metrics listener's address, "" when disabled.
func (d *Daemon) MetricsAddr() string {
	if d.metricsLn == nil {
		return ""
	}
	return d.metricsLn.Addr().String()
}

// Start opens files and listeners; Run then serves until ctx ends.
func (d *Daemon) Start() error {
	for _, dir := range []string{filepath.Dir(d.ShmPath), d.StateDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	freq, err := ReadDriftFile(d.driftPath)
	if err != nil {
		d.log.Warn("ignoring drift file", "err", err)
		freq = 0
	}
	d.clk, err = virtual.New(virtual.Options{
		OffsetNS: int64(d.cfg.ClockOffset), InitialFreqPPB: freq, PrecisionNS: int64(d.cfg.Precision),
	})
	if err != nil {
		return err
	}
	dc := d.cfg.DisciplineConfig()
	dc.InitialFreqPPB = freq
	dc.Ablation = d.opt.Ablation
	if d.disc, err = discipline.New(dc, d.clk.NowNS()); err != nil {
		return err
	}
	d.loop = discipline.NewLoop(d.disc, d.clk)
	d.tt = truetime.NewClock(d.clk, clock.RealTimers())
	if d.shm, err = truetime.CreateShm(d.ShmPath); err != nil {
		return err
	}
	d.pub = truetime.Publisher{Clock: d.tt, Shm: d.shm, Model: d.clk.Model}
	d.m = newMetrics()
	if d.cfg.Metrics.Listen != "" {
		if d.metricsLn, err = net.Listen("tcp", d.cfg.Metrics.Listen); err != nil {
			d.shm.Close()
			return fmt.Errorf("metrics.listen: %w", err)
		}
	}
	d.samples = make(chan ntp.SourceSample, 64)
	for _, sc := range d.cfg.Sources {
		cc := ntp.ClientConfig{Poll: sc.Poll.D(), MinPoll: sc.MinPoll.D(), MaxPoll: sc.MaxPoll.D(), IBurst: sc.IBurst}
		src := ntp.NewSource("ntp:"+sc.Address, sc.Address, cc, d.clk, d.stepGen.Load, d.log)
		src.Interface = sc.Interface
		if src.Timestamping, err = hwts.ParseMode(sc.Timestamping); err != nil {
			d.shm.Close()
			return err
		}
		d.sources = append(d.sources, src)
	}
	if len(d.cfg.NTPServer.Listen) > 0 {
		rl := d.cfg.NTPServer.RateLimit
		d.ntpServer = ntp.NewServer(d.tt, ntp.RateLimit{RequestsPerSecond: rl.RequestsPerSecond, Burst: rl.Burst, TableSize: rl.TableSize}, d.log)
		d.m.registerServer(d.ntpServer)
		for _, addr := range d.cfg.NTPServer.Listen {
			if err := d.ntpServer.Listen(addr, 2); err != nil {
				d.shm.Close()
				if d.metricsLn != nil {
					d.metricsLn.Close()
				}
				return fmt.Errorf("ntp_server.listen: %w", err)
			}
		}
	}
	if err := d.startGRPC(); err != nil {
		d.shm.Close()
		if d.metricsLn != nil {
			d.metricsLn.Close()
		}
		if d.ntpServer != nil {
			d.ntpServer.Close()
		}
		return err
	}
	d.log.Info("meridiand started", "clock", d.cfg.Clock, "clock_offset", d.cfg.ClockOffset.D(),
		"shm", d.ShmPath, "state_dir", d.StateDir, "metrics", d.MetricsAddr(), "grpc", strings.Join(d.GRPCAddrs(), ","), "drift_ppb", freq)
	if len(d.cfg.Sources) == 0 && d.cfg.LocalStratum == 0 {
		d.log.Warn("no sources and local_stratum 0: the clock stays unsynchronized")
	}
	d.update() // publish a first snapshot at once
	return nil
}

// Run serves until ctx ends, then writes the drift file and releases
// everything. Call Start first.
func (d *Daemon) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	var srv *http.Server
	if d.metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(d.m.reg, promhttp.HandlerOpts{}))
		srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(d.metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.log.Error("metrics server", "err", err)
			}
		}()
	}
	srcCtx, cancelSrc := context.WithCancel(ctx)
	defer cancelSrc()
	for _, src := range d.sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := src.Run(srcCtx, d.samples); err != nil {
				d.log.Warn("ntp source ended", "source", src.Name, "err", err)
			}
		}()
	}
	if d.ntpServer != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = d.ntpServer.Serve(srcCtx)
		}()
	}
	if d.grpc != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.grpc.Serve(srcCtx); err != nil {
				d.log.Error("gRPC server", "err", err)
			}
		}()
	}
	tick := time.NewTicker(d.opt.Tick)
	drift := time.NewTicker(d.opt.DriftFileEvery)
	defer tick.Stop()
	defer drift.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			d.update()
		case smp := <-d.samples:
			if err := d.loop.AddSample(smp.Name, smp.Sample, smp.Gen); err != nil {
				d.log.Debug("sample rejected", "source", smp.Name, "err", err)
			}
		case <-drift.C:
			d.saveDrift()
		}
	}
	d.saveDrift()
	cancelSrc()
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
	}
	wg.Wait()
	err := d.shm.Close()
	d.log.Info("meridiand stopped")
	return err
}

func (d *Daemon) saveDrift() {
	if err := WriteDriftFile(d.driftPath, d.disc.FreqPPB()); err != nil {
		d.log.Warn("writing drift file", "path", d.driftPath, "err", err)
	}
}

// update runs one step of the loop shared with the simulator and publishes
// the result.
func (d *Daemon) update() {
	now := d.clk.NowNS()
	u, err := d.loop.Update()
	if err != nil {
		d.log.Error("applying correction", "err", err)
	}
	if u.Correction.StepNS != 0 {
		d.stepGen.Store(d.loop.Gen())
		d.m.steps.Inc()
		d.log.Warn("clock stepped", "step", time.Duration(u.Correction.StepNS))
	}
	e := u.Estimate
	if len(d.cfg.Sources) == 0 && d.cfg.LocalStratum > 0 {
		e = d.localReference(now)
	}
	_ = d.clk.SetSync(e.Status == truetime.Synchronized, 0, 0)
	d.pub.Publish(e)
	d.m.observe(e, u.Sources, d.clk.NowNS())
	d.reportsMu.Lock()
	for _, r := range u.Sources {
		d.reports[r.Name] = r
	}
	d.reportsMu.Unlock()
	d.m.observeSources(d.sources)
	if e.Status != d.lastState {
		d.log.Info("status", "status", e.Status.String(), "stratum", e.Stratum)
		d.lastState = e.Status
	}
}

// localReference is the estimate of a daemon that is its own reference.
func (d *Daemon) localReference(nowNS int64) truetime.Estimate {
	freq, _ := d.clk.FreqPPB()
	return truetime.Estimate{
		Status:          truetime.Synchronized,
		LocalNS:         nowNS,
		Eps0NS:          d.clk.PrecisionNS(),
		DriftBoundPPB:   d.cfg.DriftBoundPPM * 1000,
		MaxErrorNS:      int64(d.cfg.MaxError),
		HoldoverAfterNS: int64(5 * d.opt.Tick),
		LastSampleNS:    nowNS,
		FreqPPB:         freq,
		Stratum:         uint8(d.cfg.LocalStratum),
		RefID:           truetime.RefIDLocal,
	}
}
