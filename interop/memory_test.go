package interop

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	timev1 "github.com/meridiantime/meridian/api/meridian/time/v1"
	"github.com/meridiantime/meridian/bench"
)

// The memory bounds of issue 13 (docs/memory.md), in bytes (MB = 10⁶).
const (
	idleRSSBound   = 20e6
	loadedRSSBound = 40e6
	idleAnonBound  = 6e6 // the anonymous part at idle (measured 2.9–4.1 MB)
)

// memoryFull selects the full measurement (make bench-memory): 100k NTP
// requests/s for 10 s with meridiand and the generator pinned to different
// CPUs (MERIDIAN_MEMORY_PIN=0: sharing both); otherwise (make test) the same phases with 25k/s for 2 s, unpinned.
func memoryFull() bool { return os.Getenv("MERIDIAN_MEMORY_FULL") == "1" }

// memDaemon is a real meridiand process under measurement.
type memDaemon struct {
	cmd     *exec.Cmd
	pid     int
	ntp     string // host:port
	grpc    string // unix:///path
	metrics string // http://host:port/metrics
	log     string
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startMemDaemon runs meridiand as a local stratum-1 reference serving NTP
// on loopback, gRPC on a unix socket (room for 1000 Watch streams over 8
// connections) and metrics, with extraYAML appended to its configuration.
func startMemDaemon(t *testing.T, bin, extraYAML string, env ...string) *memDaemon {
	t.Helper()
	dir := t.TempDir()
	d := &memDaemon{
		ntp:     fmt.Sprintf("127.0.0.1:%d", freeUDPPort(t)),
		grpc:    "unix://" + filepath.Join(dir, "grpc.sock"),
		metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", freeTCPPort(t)),
		log:     filepath.Join(dir, "meridiand.log"),
	}
	cfg := filepath.Join(dir, "m.yaml")
	_ = os.WriteFile(cfg, []byte(fmt.Sprintf(`local_stratum: 1
ntp_server: {listen: ["%s"]}
grpc: {listen: ["%s"], max_watchers: 1024, max_waiters_per_conn: 256}
metrics: {listen: "%s"}
shm: {path: %s}
state_dir: %s
log_level: warn
%s`, d.ntp, d.grpc, d.metrics[len("http://"):len(d.metrics)-len("/metrics")], filepath.Join(dir, "tt.shm"), filepath.Join(dir, "state"), extraYAML)), 0o644)
	d.cmd = exec.Command(bin, "--config", cfg)
	d.cmd.Env = append(os.Environ(), env...)
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	logf, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.pid = d.cmd.Process.Pid
	t.Cleanup(func() {
		_ = d.cmd.Process.Kill()
		_ = d.cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(d.log)
			t.Logf("meridiand log:\n%s", b)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := d.goroutines(); err == nil {
			r, err := bench.RunNTPLoad(context.Background(), bench.NTPLoad{Addr: d.ntp, Clients: 1, InFlight: 1, Duration: 300 * time.Millisecond, MaxRequests: 1})
			if err == nil && r.Received == 1 {
				return d
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("meridiand did not serve NTP and metrics within 15 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (d *memDaemon) goroutines() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := bench.ScrapeMetric(ctx, d.metrics, "go_goroutines")
	return int(v), err
}

func (d *memDaemon) metric(t *testing.T, name string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := bench.ScrapeMetric(ctx, d.metrics, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// goStats is the Go runtime's view (from the daemon's metrics): where the
// resident set goes.
func (d *memDaemon) goStats(t *testing.T) string {
	t.Helper()
	mb := func(name string) float64 { return d.metric(t, name) / 1e6 }
	return fmt.Sprintf("Go heap in use %.1f MB (live %.1f, next GC at %.1f), stacks %.1f MB, runtime other %.1f MB",
		mb("go_memstats_heap_inuse_bytes"), mb("go_memstats_heap_alloc_bytes"), mb("go_memstats_next_gc_bytes"),
		mb("go_memstats_stack_inuse_bytes"), (d.metric(t, "go_memstats_sys_bytes")-d.metric(t, "go_memstats_heap_sys_bytes")-d.metric(t, "go_memstats_stack_sys_bytes"))/1e6)
}

func (d *memDaemon) mem(t *testing.T) bench.ProcMem {
	t.Helper()
	m, err := bench.ReadProcMem(d.pid)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// pinApart pins meridiand's threads to CPU 1 and this test process's to
// CPU 0 (as meridian-bench does), restoring this process's affinity when
// the test ends. It reports whether it could.
func pinApart(t *testing.T, pid int) bool {
	t.Helper()
	var orig unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil || orig.Count() < 2 || !orig.IsSet(0) || !orig.IsSet(1) {
		return false
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		return false
	}
	if exec.Command("taskset", "-a", "-p", "-c", "1", strconv.Itoa(pid)).Run() != nil ||
		exec.Command("taskset", "-a", "-p", "-c", "0", strconv.Itoa(os.Getpid())).Run() != nil {
		return false
	}
	t.Cleanup(func() {
		var cpus string
		for i := range 1024 {
			if orig.IsSet(i) {
				cpus += fmt.Sprintf("%d,", i)
			}
		}
		_ = exec.Command("taskset", "-a", "-p", "-c", cpus[:len(cpus)-1], strconv.Itoa(os.Getpid())).Run()
	})
	return true
}

// goroutinesBack is the leak check: nil once the daemon's goroutine count
// is within slack of its baseline.
func goroutinesBack(baseline, now, slack int) error {
	if now <= baseline+slack {
		return nil
	}
	return fmt.Errorf("%d goroutines, %d above the baseline of %d (slack %d): a leak", now, now-baseline, baseline, slack)
}

// watchStreams holds n Watch streams over conns connections, counting each
// stream's messages.
type watchStreams struct {
	conns  []*grpc.ClientConn
	cancel context.CancelFunc
	wg     sync.WaitGroup
	msgs   []atomic.Int64
	errs   atomic.Int64
	first  atomic.Value // error
}

func openWatchStreams(t *testing.T, addr string, n, conns int, minInterval time.Duration) *watchStreams {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watchStreams{cancel: cancel, msgs: make([]atomic.Int64, n)}
	for range conns {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		w.conns = append(w.conns, c)
	}
	for i := range n {
		cl := timev1.NewTimeServiceClient(w.conns[i%conns])
		st, err := cl.Watch(ctx, &timev1.WatchRequest{MinIntervalMs: minInterval.Milliseconds()})
		if err != nil {
			w.close()
			t.Fatalf("Watch stream %d: %v", i, err)
		}
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for {
				r, err := st.Recv()
				if err != nil {
					if ctx.Err() == nil {
						w.errs.Add(1)
						w.first.CompareAndSwap(nil, err)
					}
					return
				}
				if r.GetStatus() == timev1.ClockStatus_CLOCK_STATUS_UNSPECIFIED {
					w.errs.Add(1)
				}
				w.msgs[i].Add(1)
			}
		}()
	}
	return w
}

// total is the number of messages over all streams.
func (w *watchStreams) total() int64 {
	var n int64
	for i := range w.msgs {
		n += w.msgs[i].Load()
	}
	return n
}

// least is the smallest message count over the streams.
func (w *watchStreams) least() int64 {
	m := w.msgs[0].Load()
	for i := range w.msgs {
		m = min(m, w.msgs[i].Load())
	}
	return m
}

func (w *watchStreams) close() {
	w.cancel()
	w.wg.Wait()
	for _, c := range w.conns {
		c.Close()
	}
}

// TestMemoryBounded measures a real meridiand's memory (issue 13; the
// figures are in docs/memory.md) with its default memory settings: VmRSS
// 10 s after startup (≤ 20 MB); VmRSS and its peak VmHWM under an
// open-loop NTP load offered at 100k requests/s (≤ 40 MB; the rate
// achieved is logged); VmRSS and goroutines
// with 1000 gRPC Watch streams open over 8 connections, every stream
// receiving updates (≤ 40 MB; goroutines ≤ baseline + 1 per stream + 16 per
// connection), and the goroutine count back at its baseline once they
// close. The leak check's negative control runs it while the streams are
// still open: it must fail. MERIDIAN_MEMORY_FULL=1 (make bench-memory) runs
// the load for 10 s with the generator and meridiand on different CPUs.
func TestMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts meridiand for ~30 s")
	}
	full := memoryFull()
	bin := buildMeridiand(t)
	d := startMemDaemon(t, bin, "")
	pinned := full && os.Getenv("MERIDIAN_MEMORY_PIN") != "0" && pinApart(t, d.pid)

	// (a) idle: 10 s after it first answered.
	time.Sleep(10 * time.Second)
	idle := d.mem(t)
	g0, err := d.goroutines()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("idle (10 s): %v; %d goroutines; %s", idle, g0, d.goStats(t))
	// The configuration's defaults are in force (memory: limit_mib 24,
	// gc_percent 100), as the Go runtime itself reports them.
	// (GOGC or GOMEMLIMIT in this test's environment reach meridiand and
	// override them: a comparison run, e.g. GOMEMLIMIT=off.)
	if gc, lim := d.metric(t, "go_gc_gogc_percent"), d.metric(t, "go_gc_gomemlimit_bytes"); os.Getenv("GOGC")+os.Getenv("GOMEMLIMIT") == "" && (gc != 100 || lim != 24<<20) {
		t.Errorf("go_gc_gogc_percent %v, go_gc_gomemlimit_bytes %v: want the defaults 100 and 24 MiB", gc, lim)
	}
	// Both bounds hold in make test too: the release build's file-backed
	// pages (text, rodata, pclntab) are 12.6 MB even if every one of them
	// is resident, which the page cache and the kernel's fault-around
	// decide, not the daemon; RssAnon is what the daemon allocates.
	if err := bench.CheckRSS("idle VmRSS", idle.RSS, idleRSSBound); err != nil {
		t.Error(err)
	}
	if err := bench.CheckRSS("idle RssAnon", idle.RssAnon, idleAnonBound); err != nil {
		t.Error(err)
	}

	// (b) an open-loop NTP load offered at 100k requests/s for 10 s (make
	// bench-memory); under make test, where other packages' tests share the
	// two cores, 25k/s for 2 s.
	rate, loadFor := 25_000.0, 2*time.Second
	if full {
		rate, loadFor = 100_000, 10*time.Second
	}
	if err := bench.ResetPeakRSS(d.pid); err != nil {
		t.Fatal(err)
	}
	replies0 := d.metric(t, "meridian_ntp_server_replies_total")
	s := bench.SampleMem(d.pid, 100*time.Millisecond)
	res, err := bench.RunNTPLoadOpen(context.Background(), bench.NTPOpenLoad{Addr: d.ntp, Rate: rate, Clients: 4, Duration: loadFor})
	gLoad, _ := d.goroutines()
	sum, serr := s.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	replies := d.metric(t, "meridian_ntp_server_replies_total") - replies0
	t.Logf("NTP load offered %.0f/s for %v (pinned apart: %v): %v; the server counted %.0f replies (%.0f/s)",
		rate, loadFor, pinned, res, replies, replies/loadFor.Seconds())
	t.Logf("under NTP load: %v; %d goroutines; after: %s", sum, gLoad, d.goStats(t))
	if res.Received == 0 || replies < float64(res.Received) {
		t.Errorf("the load got %d replies, the server counted %.0f: not a load", res.Received, replies)
	}
	if err := bench.CheckRSS("peak RSS under NTP load", max(sum.HWM, sum.MaxRSS), loadedRSSBound); err != nil {
		t.Error(err)
	}
	if err := bench.CheckRSS("steady VmRSS under NTP load", sum.SteadyRSS, loadedRSSBound); err != nil {
		t.Error(err)
	}
	time.Sleep(time.Second)
	g1, err := d.goroutines()
	if err != nil {
		t.Fatal(err)
	}
	if err := goroutinesBack(g0, g1, 2); err != nil {
		t.Errorf("after the NTP load: %v", err)
	}

	// (c) 1000 Watch streams over 8 connections, each receiving updates.
	const streams, conns = 1000, 8
	if err := bench.ResetPeakRSS(d.pid); err != nil {
		t.Fatal(err)
	}
	s = bench.SampleMem(d.pid, 100*time.Millisecond)
	w := openWatchStreams(t, d.grpc, streams, conns, 100*time.Millisecond)
	closed := false
	defer func() {
		if !closed {
			w.close()
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for w.least() < 3 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	open := d.metric(t, "meridian_grpc_watch_streams")
	gStreams, err := d.goroutines()
	if err != nil {
		t.Fatal(err)
	}
	cpu0, _ := bench.ProcessCPU(d.pid)
	n0 := w.total()
	time.Sleep(2 * time.Second) // the streams keep receiving: a steady state
	cpu1, _ := bench.ProcessCPU(d.pid)
	t.Logf("with the streams: %s; %.0f messages/s, meridiand CPU %.0f%% of one core", d.goStats(t),
		float64(w.total()-n0)/2, 100*(cpu1-cpu0).Seconds()/2)
	sum, err = s.Stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d Watch streams over %d connections (the daemon counts %.0f), each ≥ %d messages: %v; %d goroutines (%+d)",
		streams, conns, open, w.least(), sum, gStreams, gStreams-g0)
	if least := w.least(); least < 3 || w.errs.Load() > 0 {
		t.Fatalf("streams: the least-served got %d messages (want ≥ 3: the status and updates), %d errors (first %v)", least, w.errs.Load(), w.first.Load())
	}
	if open != streams {
		t.Errorf("meridian_grpc_watch_streams %.0f, want %d", open, streams)
	}
	if err := bench.CheckRSS(fmt.Sprintf("peak RSS with %d Watch streams", streams), max(sum.HWM, sum.MaxRSS), loadedRSSBound); err != nil {
		t.Error(err)
	}
	if err := bench.CheckRSS(fmt.Sprintf("steady VmRSS with %d Watch streams", streams), sum.SteadyRSS, loadedRSSBound); err != nil {
		t.Error(err)
	}
	if limit := g0 + streams + 16*conns; gStreams > limit {
		t.Errorf("%d goroutines with %d streams over %d connections: more than baseline %d + 1 per stream + 16 per connection = %d",
			gStreams, streams, conns, g0, limit)
	}
	// The leak check's negative control: streams never closed must fail it.
	if err := goroutinesBack(g0, gStreams, 2); err == nil {
		t.Fatalf("the leak check passed with %d streams still open (%d goroutines, baseline %d)", streams, gStreams, g0)
	}
	w.close()
	closed = true
	var g2 int
	for end := time.Now().Add(10 * time.Second); ; {
		if g2, err = d.goroutines(); err != nil {
			t.Fatal(err)
		}
		if goroutinesBack(g0, g2, 2) == nil || time.Now().After(end) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	after := d.mem(t)
	t.Logf("streams closed: %d goroutines; %v; %s", g2, after, d.goStats(t))
	if err := goroutinesBack(g0, g2, 2); err != nil {
		t.Errorf("after closing the streams: %v", err)
	}
	if n := d.metric(t, "meridian_grpc_watch_streams"); n != 0 {
		t.Errorf("meridian_grpc_watch_streams %v after closing them all", n)
	}
}

// The memory key reaches the Go runtime of the real binary, as the runtime
// itself reports it (go_gc_gogc_percent, go_gc_gomemlimit_bytes), and GOGC
// and GOMEMLIMIT in the environment override it.
func TestMemoryLimitConfigured(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts meridiand twice")
	}
	bin := buildMeridiand(t)
	d := startMemDaemon(t, bin, "memory: {limit_mib: 24, gc_percent: 80}\n")
	if gc, lim := d.metric(t, "go_gc_gogc_percent"), d.metric(t, "go_gc_gomemlimit_bytes"); gc != 80 || lim != 24<<20 {
		t.Errorf("configured 24 MiB, 80 %%: the runtime reports a limit of %v bytes, GOGC %v", lim, gc)
	}
	e := startMemDaemon(t, bin, "memory: {limit_mib: 24, gc_percent: 80}\n", "GOMEMLIMIT=30MiB", "GOGC=70")
	if gc, lim := e.metric(t, "go_gc_gogc_percent"), e.metric(t, "go_gc_gomemlimit_bytes"); gc != 70 || lim != 30<<20 {
		t.Errorf("GOMEMLIMIT=30MiB GOGC=70 over the configuration: the runtime reports a limit of %v bytes, GOGC %v", lim, gc)
	}
}
