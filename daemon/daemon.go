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
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meridiantime/meridian/clock"
	"github.com/meridiantime/meridian/clock/hostclock"
	"github.com/meridiantime/meridian/clock/phc"
	"github.com/meridiantime/meridian/clock/system"
	"github.com/meridiantime/meridian/clock/virtual"
	"github.com/meridiantime/meridian/config"
	"github.com/meridiantime/meridian/discipline"
	"github.com/meridiantime/meridian/hlc"
	"github.com/meridiantime/meridian/hwts"
	"github.com/meridiantime/meridian/internal/atomicfile"
	"github.com/meridiantime/meridian/internal/fsown"
	"github.com/meridiantime/meridian/internal/rundir"
	"github.com/meridiantime/meridian/internal/sdnotify"
	"github.com/meridiantime/meridian/ntp"
	"github.com/meridiantime/meridian/timeservice"
	"github.com/meridiantime/meridian/truetime"
	"github.com/meridiantime/meridian/truetime/clockbound"
	"github.com/meridiantime/meridian/truetime/shm"
)

// Options tune the daemon beyond the config file (tests use short ticks).
type Options struct {
	Tick           time.Duration // discipline update period; 0 → 1s
	DriftFileEvery time.Duration // 0 → 60s
	// Ablation removes a safety term from the discipline: negative controls
	// in tests only, never set by meridiand.
	Ablation discipline.Ablation
	// ShmVoidAfter: readers treat a snapshot older than this as void (the
	// daemon died or stopped). 0 → truetime.DefaultVoidAfter (5 s); keep it
	// a few ticks.
	ShmVoidAfter time.Duration
	// ShmClocks replaces the (CLOCK_MONOTONIC_RAW, CLOCK_BOOTTIME) pair the
	// segment's writer stamps and judges with: tests simulate a suspend by
	// moving boottime ahead. nil: the host's clocks.
	ShmClocks func() (raw, boot int64)
	// PTPClientAddr is the address the PTP client port binds (unset: any).
	// PTP fixes the ports, so on one host (tests on loopback) a client
	// and a grandmaster need addresses of their own.
	PTPClientAddr netip.Addr
	// PHCDevice, PHCAdj and PHCRaw reach PTP hardware clocks (the ioctls,
	// clock_adjtime and CLOCK_MONOTONIC_RAW), TimestampSys the NICs'
	// timestamping: tests put a simulated PHC and NIC there. nil: the real
	// system calls. PHCEvery is how often the configured PHC is steered
	// (0 → 1 s).
	PHCDevice    phc.Device
	PHCAdj       system.Adjtimer
	PHCRaw       func() int64
	TimestampSys hwts.Sys
	PHCEvery     time.Duration
	// Notifier tells systemd (Type=notify) when the daemon is ready, its
	// status, and pings its watchdog from the update loop. The zero value
	// sends nothing.
	Notifier sdnotify.Notifier
	// Resolve replaces the system resolver for NTP source names, and
	// SourceRetryMin the first backoff after a failed start (0 → 2 s):
	// tests only.
	Resolve        func(addr string) (*net.UDPAddr, error)
	SourceRetryMin time.Duration
	// LookupHost replaces the system resolver for pool names (tests).
	LookupHost func(ctx context.Context, host string) ([]netip.Addr, error)
	// RealtimeAdj reads CLOCK_REALTIME's adjtimex state (modes = 0) for the
	// ClockBound export (nil: the kernel); ClockBoundOmitRealtime publishes
	// ε alone, as if CLOCK_REALTIME were meridiand's clock: the negative
	// control of the export's bound, tests only.
	RealtimeAdj            system.Adjtimer
	ClockBoundOmitRealtime bool
	// SystemAdj is clock: system's clock_adjtime boundary (nil: the
	// kernel); tests put a simulated CLOCK_REALTIME there.
	SystemAdj system.Adjtimer
}

// daemonClock is the clock meridiand disciplines and publishes: the
// virtual clock, or CLOCK_REALTIME (clock: system).
type daemonClock interface {
	clock.Disciplined
	// Model is the clock as a function of CLOCK_MONOTONIC_RAW (what shm
	// readers compute).
	Model() clock.Linear
	PrecisionNS() int64
}

// Daemon is one running meridiand.
type Daemon struct {
	cfg  *config.Config
	opt  Options
	log  *slog.Logger
	clk  daemonClock
	disc *discipline.Discipline
	loop *discipline.Loop
	pub  shm.Publisher
	tt   *truetime.Clock
	shm  *shm.Writer
	m    *metrics

	ShmPath   string
	StateDir  string
	driftPath string
	stateLock *os.File // flock on StateDir/meridiand.lock, held for the daemon's life

	metricsLn    net.Listener
	phc          phcState
	cb           *clockbound.Writer                // nil: no ClockBound export
	cbCoarseRes  int64                             // CLOCK_MONOTONIC_COARSE resolution
	svc          *timeservice.Service              // the TimeService the gRPC server serves
	srcStates    map[string]discipline.SourceState // last logged, by source (update's goroutine)
	notifyFailed bool
	lastUpdate   atomic.Int64 // wall time of the last update (healthz)
	ready        bool         // READY=1 sent (Run's goroutine)

	// Reload (SIGHUP): requests to Run's loop, the running sources'
	// cancels, and names removed while their samples may be in flight.
	reloadCh  chan reloadReq
	pools     []*pool
	poolCh    chan poolResult
	srcCtx    context.Context
	srcWG     *sync.WaitGroup
	running   map[string]*runningSource
	removed   map[string]bool
	lastState truetime.Status

	sources   []*ntp.Source
	ntpServer *ntp.Server
	ptp       ptpParts // type: ptp sources and ptp_server (ptp.go)
	hlc       *hlc.Clock

	grpcListen []string
	grpc       *timeservice.Server
	started    time.Time

	lastFaults, lastFloorRaises int // discipline counters already exported

	reportsMu sync.Mutex
	reports   map[string]discipline.SourceReport // newest per source, for the Sources call
	reason    string                             // why not synchronized, for the Status call
	samples   chan ntp.SourceSample
}

// DefaultGRPCSocketPath is the unix socket the default grpc.listen falls
// back to when /run/meridian is not writable (see DefaultShmPath).
func DefaultGRPCSocketPath() string { return filepath.Join(runtimeDir(), "grpc.sock") }

// DefaultShmPath is where the segment lives when shm.path is "": under
// /run/meridian when writable, else a per-user runtime directory.
func DefaultShmPath() string { return filepath.Join(runtimeDir(), "truetime.shm") }

// The system directories, most privileged first; tests point them into a
// temporary directory.
var (
	systemStateDir = "/var/lib/meridian"
)

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

// dirCandidate is a directory the daemon may fall back to. A private one
// (under /tmp or $XDG_RUNTIME_DIR) is used only when it is this user's own,
// mode 0700, and not a symlink (fsown.EnsurePrivateDir): another local user
// could have created it first.
type dirCandidate struct {
	path    string
	private bool
}

// usable reports whether the daemon can use c (creating it if absent).
func (c dirCandidate) usable() error {
	if c.private {
		if err := fsown.EnsurePrivateDir(c.path); err != nil {
			return err
		}
	} else if !writableDir(c.path) {
		return fmt.Errorf("%s is not writable", c.path)
	}
	_, err := fsown.CheckTrustedDir(c.path)
	return err
}

// firstUsable returns the first candidate directory that is usable, or the
// last candidate (Start then refuses it and says why).
func firstUsable(candidates []dirCandidate) string {
	for _, c := range candidates {
		if c.usable() == nil {
			return c.path
		}
	}
	return candidates[len(candidates)-1].path
}

// runtimeDirs are the candidate runtime directories, most privileged first.
func runtimeDirs() []dirCandidate {
	var c []dirCandidate
	for _, r := range rundir.Runtime() {
		c = append(c, dirCandidate{r.Path, r.Private})
	}
	return c
}

func stateDirs() []dirCandidate {
	c := []dirCandidate{{systemStateDir, false}}
	if x := os.Getenv("XDG_STATE_HOME"); x != "" {
		c = append(c, dirCandidate{filepath.Join(x, "meridian"), false})
	}
	if h, err := os.UserHomeDir(); err == nil {
		c = append(c, dirCandidate{filepath.Join(h, ".local", "state", "meridian"), false})
	}
	return append(c, dirCandidate{filepath.Join(os.TempDir(), "meridian-state-"+strconv.Itoa(os.Getuid())), true})
}

func runtimeDir() string { return firstUsable(runtimeDirs()) }

// LocateRuntimeFile is rundir.Locate: where a client finds a daemon's
// runtime file without creating anything.
func LocateRuntimeFile(name string) string { return rundir.Locate(name) }

func defaultStateDir() string { return firstUsable(stateDirs()) }

// prepareDir creates dir if needed and refuses one that another user could
// control: a fallback directory, or any directory directly inside a
// world-writable one (/tmp), must be private (this user's, mode 0700, no
// symlink); any other must pass fsown.CheckTrustedDir. what names the
// config key for the message.
func prepareDir(what, dir string) error {
	private := false
	for _, c := range append(runtimeDirs(), stateDirs()...) {
		if c.private && filepath.Clean(c.path) == filepath.Clean(dir) {
			private = true
		}
	}
	if fi, err := os.Stat(filepath.Dir(dir)); err == nil && fi.Mode().Perm()&0o002 != 0 {
		private = true
	}
	if private {
		if err := fsown.EnsurePrivateDir(dir); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("%s: create %s: %w", what, dir, err)
	}
	if _, err := fsown.CheckTrustedDir(dir); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// claimDirs prepares the segment's and the state directory and takes the
// state directory's lock, before anything is read or written there: a
// second daemon on the same state directory stops here.
func (d *Daemon) claimDirs() error {
	if err := prepareDir("shm.path", filepath.Dir(d.ShmPath)); err != nil {
		return err
	}
	if err := prepareDir("state_dir", d.StateDir); err != nil {
		return err
	}
	f, err := fsown.LockFile(filepath.Join(d.StateDir, "meridiand.lock"))
	if err != nil {
		return fmt.Errorf("state_dir: %w", err)
	}
	d.stateLock = f
	return nil
}

// releaseDirs marks the segment stopped and releases both locks.
func (d *Daemon) releaseDirs() error {
	d.closePHC()
	if d.cb != nil {
		_ = d.cb.Close()
		d.cb = nil
	}
	var err error
	if d.shm != nil {
		err = d.shm.Close()
	}
	if d.stateLock != nil {
		d.stateLock.Close()
		d.stateLock = nil
	}
	return err
}

// New validates what the daemon can run and prepares its parts. Nothing
// is started until Run.
func New(cfg *config.Config, log *slog.Logger, opt Options) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}

	if err := ptpSupported(cfg); err != nil {
		return nil, err
	}
	if opt.Tick == 0 {
		opt.Tick = time.Second
	}
	if opt.DriftFileEvery == 0 {
		opt.DriftFileEvery = time.Minute
	}
	d := &Daemon{cfg: cfg, opt: opt, log: log, ShmPath: cfg.Shm.Path, StateDir: cfg.StateDir, lastState: 255,
		reports: map[string]discipline.SourceReport{}, started: time.Now(),
		reloadCh: make(chan reloadReq), running: map[string]*runningSource{}, removed: map[string]bool{},
		poolCh: make(chan poolResult)}
	if d.ShmPath == "" {
		d.ShmPath = DefaultShmPath()
	}
	if d.StateDir == "" {
		d.StateDir = defaultStateDir()
	}
	d.driftPath = filepath.Join(d.StateDir, "drift")
	for _, a := range cfg.GRPC.Listen {
		if a == config.DefaultGRPCSocket && !writableDir(rundir.SystemRuntimeDir) {
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
//
// Ownership comes first: the state directory's lock, then the segment's
// (shm.CreateWith); a second daemon pointed at either refuses here
// and leaves the live daemon's files byte-identical. Any later failure
// marks the segment stopped and releases both locks.
func (d *Daemon) Start() (err error) {
	if err := d.claimDirs(); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = d.releaseDirs()
		}
	}()
	if d.shm, err = shm.CreateWith(d.ShmPath, shm.Options{VoidAfter: d.opt.ShmVoidAfter, Clocks: d.opt.ShmClocks}); err != nil {
		return err
	}
	freq, err := ReadDriftFile(d.driftPath)
	if err != nil {
		d.log.Warn("ignoring drift file", "err", err)
		freq = 0
	}
	if d.cfg.Clock == "system" {
		rt, err := system.NewRealtime(d.opt.SystemAdj, hostclock.MonoRawNS, int64(d.cfg.Precision))
		if err != nil {
			return fmt.Errorf("clock: system: %w", err)
		}
		if freq != 0 {
			if err := rt.AdjFreqPPB(freq); err != nil {
				return fmt.Errorf("clock: system: drift file frequency: %w", err)
			}
		}
		d.clk = rt
	} else if d.clk, err = virtual.New(virtual.Options{
		OffsetNS: int64(d.cfg.ClockOffset), InitialFreqPPB: freq, PrecisionNS: int64(d.cfg.Precision),
	}); err != nil {
		return err
	}
	if err := d.openPHC(); err != nil {
		return err
	}
	if err := d.openClockBound(); err != nil {
		return err
	}
	dc := d.cfg.DisciplineConfig()
	dc.InitialFreqPPB = freq
	dc.Ablation = d.opt.Ablation
	if d.disc, err = discipline.New(dc, d.clk.NowNS()); err != nil {
		return err
	}
	d.loop = discipline.NewLoop(d.disc, d.clk)
	d.applySourceOptions()
	d.tt = truetime.NewClock(d.clk, hostclock.RealTimers())
	d.tt.SetCheck(d.shm.Check) // in-process reads fail when shm reads would (suspend, stalled loop)
	d.pub = shm.Publisher{Clock: d.tt, Shm: d.shm, Model: d.clk.Model, Disrupted: d.disrupted}
	d.m = newMetrics()
	if d.phc.follower != nil {
		d.m.registerPHC()
	}
	if d.cfg.Metrics.Listen != "" {
		if d.metricsLn, err = net.Listen("tcp", d.cfg.Metrics.Listen); err != nil {
			d.shm.Close()
			return fmt.Errorf("metrics.listen: %w", err)
		}
	}
	d.samples = make(chan ntp.SourceSample, 64)
	if err := d.setupPools(); err != nil {
		d.shm.Close()
		return err
	}
	for _, sc := range d.cfg.Sources {
		if sc.Type != "ntp" {
			continue // ptp sources: one client port, setupPTP
		}
		src, err := d.newNTPSource(sc)
		if err != nil {
			d.shm.Close()
			return err
		}
		d.sources = append(d.sources, src)
	}
	if len(d.cfg.NTPServer.Listen) > 0 {
		d.ntpServer = ntp.NewServer(d.tt, d.cfg.NTPRateLimit(), d.log)
		d.ntpServer.SetAccess(ntpAccess(d.cfg))
		if xl := d.cfg.NTPServer.Interleaved; xl.Enabled {
			d.ntpServer.EnableInterleaved(xl.TableSize)
		}
		d.ntpServer.BusyPoll = d.cfg.NTPServer.BusyPoll.D()
		d.m.registerServer(d.ntpServer)
		for _, addr := range d.cfg.NTPServer.Listen {
			if err := d.ntpServer.Listen(addr, d.cfg.NTPServer.NTPWorkers(runtime.GOMAXPROCS(0))); err != nil {
				d.shm.Close()
				if d.metricsLn != nil {
					d.metricsLn.Close()
				}
				return fmt.Errorf("ntp_server.listen: %w", err)
			}
		}
	}
	if err := d.setupPTP(); err != nil {
		d.shm.Close()
		if d.metricsLn != nil {
			d.metricsLn.Close()
		}
		if d.ntpServer != nil {
			d.ntpServer.Close()
		}
		return err
	}
	if err := d.startGRPC(); err != nil {
		d.shm.Close()
		if d.metricsLn != nil {
			d.metricsLn.Close()
		}
		if d.ntpServer != nil {
			d.ntpServer.Close()
		}
		d.closePTP()
		return err
	}
	d.log.Info("meridiand started", "clock", d.cfg.Clock, "clock_offset", d.cfg.ClockOffset.D(),
		"shm", d.ShmPath, "state_dir", d.StateDir, "metrics", d.MetricsAddr(), "grpc", strings.Join(d.GRPCAddrs(), ","), "drift_ppb", freq)
	if rp := hostclock.ReadPath(); rp.Method != "vdso" {
		d.log.Warn("host clocks read through the clock_gettime system call, not the vDSO: every clock read costs a system call", "reason", rp.Reason)
	} else if rp.Reason != "" {
		d.log.Info("host clocks read through the vDSO", "frame_bytes", rp.FrameBytes, "stack_use_bytes", rp.StackUseBytes, "reason", rp.Reason)
	}
	if len(d.cfg.Sources) == 0 && d.cfg.LocalStratum == 0 {
		d.log.Warn("no sources configured: the clock stays unsynchronized; add sources (NTP or PTP servers) to the configuration, or set local_stratum to serve this host's clock as a local reference")
	} else if len(d.cfg.Sources) == 0 {
		d.log.Warn("LOCAL REFERENCE: no sources; serving this host's clock at stratum "+strconv.Itoa(d.cfg.LocalStratum)+": intervals are relative to this host's clock, not UTC", "local_stratum", d.cfg.LocalStratum)
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
		mux.Handle("/metrics", promhttp.HandlerFor(d.m.reg, promhttp.HandlerOpts{DisableCompression: true}))
		mux.HandleFunc("/readyz", d.readyz)
		mux.HandleFunc("/healthz", d.healthz)
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
	d.srcCtx, d.srcWG = srcCtx, &wg
	for _, src := range d.sources {
		d.startSource(src)
	}
	if d.ntpServer != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = d.ntpServer.Serve(srcCtx)
		}()
	}
	d.runPTP(srcCtx, &wg)
	d.runPHC(srcCtx, &wg)
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
	d.notify("READY=1\nSTATUS=" + d.lastState.String())
	d.ready = true
	var lastPing time.Time
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			d.update()
			// From the update loop: a hung loop stops the pings and
			// systemd's watchdog restarts the daemon.
			if w := d.opt.Notifier.WatchdogInterval(); w > 0 && time.Since(lastPing) >= w {
				d.notify("WATCHDOG=1")
				lastPing = time.Now()
			}
		case req := <-d.reloadCh:
			req.done <- d.applyReload(req.cfg)
		case r := <-d.poolCh:
			d.applyPool(r)
		case smp := <-d.samples:
			if d.removed[smp.Name] {
				continue // in flight from a source a reload removed
			}
			if d.log.Enabled(ctx, slog.LevelDebug) {
				// chronyd's measurements log: every sample, as taken, with
				// how far this clock is from CLOCK_REALTIME now, which puts
				// t1 and t4 on the host's clock (meridian-bench accuracy
				// --traces records one-way delays from it).
				x := smp.Sample
				d.log.Debug("sample", "source", smp.Name, "t1_ns", x.T1NS, "offset_ns", int64(x.OffsetNS()), "delay_ns", x.DelayNS(),
					"request_leg_ns", x.T2NS-x.T1NS, "response_leg_ns", x.T4NS-x.T3NS, "server_ns", x.T3NS-x.T2NS,
					"t2_ns", x.T2NS, "t3_ns", x.T3NS, "t4_ns", x.T4NS, "clock_minus_realtime_ns", d.clk.NowNS()-time.Now().UnixNano())
			}
			if err := d.loop.AddSample(smp.Name, smp.Sample, smp.Gen); err != nil {
				d.log.Debug("sample rejected", "source", smp.Name, "err", err)
			}
		case <-drift.C:
			d.saveDrift()
		}
	}
	d.notify("STOPPING=1")
	d.saveDrift()
	cancelSrc()
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
	}
	wg.Wait()
	err := d.releaseDirs() // readers see unsynchronized at once
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
	d.lastUpdate.Store(time.Now().UnixNano())
	now := d.clk.NowNS()
	d.markReachability()
	if d.srcCtx != nil {
		d.tendPools()
	}
	u, err := d.loop.Update()
	if err != nil {
		d.log.Error("applying correction", "err", err)
	}
	if u.Correction.StepNS != 0 {
		d.m.steps.Inc()
		d.log.Warn("clock stepped", "step", time.Duration(u.Correction.StepNS))
	}
	e := u.Estimate
	if len(d.cfg.Sources) == 0 && d.cfg.LocalStratum > 0 {
		e = d.localReference(now)
	}
	if rt, ok := d.clk.(*system.Realtime); ok {
		e = d.realtimeUpdate(rt, e)
	} else {
		_ = d.clk.SetSync(e.Status == truetime.Synchronized, 0, 0)
	}
	e = d.pub.Publish(e)
	d.publishClockBound(e)
	if f := d.disc.Faults(); f != d.lastFaults {
		d.m.faults.Add(float64(f - d.lastFaults))
		d.log.Warn("selection missed the estimate carried forward: a reference stepped or an assumption broke; the interval covers both", "faults", f)
		d.lastFaults = f
	}
	if f := d.disc.FloorRaises(); f != d.lastFloorRaises {
		d.m.floorRaises.Add(float64(f - d.lastFloorRaises))
		d.lastFloorRaises = f
	}
	d.m.observe(e, u.Sources, d.clk.NowNS())
	reason := d.statusReasonFor(e, u.Sources)
	d.reportsMu.Lock()
	for _, r := range u.Sources {
		d.reports[r.Name] = r
	}
	d.reason = reason
	d.reportsMu.Unlock()
	d.logTransitions(u.Sources)
	for _, src := range d.sources {
		if r, ok := d.reports[src.Name]; ok {
			src.AdvisePoll(r.PollTargetNS)
		}
	}
	d.m.observeSources(d.sources)
	if e.Status != d.lastState {
		if reason != "" {
			d.log.Info("status", "status", e.Status.String(), "stratum", e.Stratum, "reason", reason)
			if d.ready {
				d.notify("STATUS=" + e.Status.String() + ": " + reason)
			}
		} else {
			d.log.Info("status", "status", e.Status.String(), "stratum", e.Stratum)
			if d.ready {
				d.notify("STATUS=" + e.Status.String())
			}
		}
		d.lastState = e.Status
	}
}

// notify tells systemd state (no-op without NOTIFY_SOCKET); a failure is
// logged once.
func (d *Daemon) notify(state string) {
	if err := d.opt.Notifier.Notify(state); err != nil && !d.notifyFailed {
		d.notifyFailed = true
		d.log.Warn("systemd notification failed", "err", err)
	}
}

// disrupted voids what was measured before a suspend or VM pause that the
// segment's writer noticed at a publish (n of them).
func (d *Daemon) disrupted(n uint64) {
	d.m.disruptions.Add(float64(n))
	d.loop.Disrupted()
	d.log.Warn("clock disrupted (suspend, VM pause or migration): samples dropped, re-acquiring")
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
