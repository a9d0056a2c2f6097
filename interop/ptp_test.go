package interop

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meridiantime/meridian/bench/accuracy"
	"github.com/meridiantime/meridian/bench/ptpload"
	"github.com/meridiantime/meridian/impair"
)

// ptp4l runs ptp4l in namespace ns with conf (written to a temp file; the
// string DIR in it is replaced by a temp directory), always free-running
// and under a bounding set without CAP_SYS_TIME: it cannot touch the host
// clock. Its output lines go to lines (dropped when nobody reads); it is
// killed by PID when the test ends.
func ptp4l(t testing.TB, ns, conf string) <-chan string {
	t.Helper()
	lines, _ := ptp4lCmd(t, ns, conf)
	return lines
}

// ptp4lCmd is ptp4l, also returning the process (its PID is ptp4l's:
// ip and setpriv exec it).
func ptp4lCmd(t testing.TB, ns, conf string) (<-chan string, *exec.Cmd) {
	t.Helper()
	bin := need(t, "ptp4l")
	setpriv := need(t, "setpriv")
	if !strings.Contains(conf, "free_running 1") {
		t.Fatal("ptp4l config without free_running 1")
	}
	dir := t.TempDir()
	conf = strings.ReplaceAll(conf, "DIR", dir)
	cf := filepath.Join(dir, "ptp4l.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, setpriv, "--bounding-set", "-sys_time", "--", bin, "-f", cf, "-m")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	var all []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			mu.Lock()
			all = append(all, sc.Text())
			mu.Unlock()
			select {
			case lines <- sc.Text():
			default:
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		wg.Wait()
		_ = cmd.Wait()
		if t.Failed() {
			mu.Lock()
			t.Logf("ptp4l (%s) output:\n%s", ns, strings.Join(all, "\n"))
			mu.Unlock()
		}
	})
	return lines, cmd
}

// runMeridiand runs the meridiand binary in namespace ns with yaml (the
// string DIR replaced by a temp directory); killed by PID when the test
// ends.
func runMeridiand(t testing.TB, ns, yaml string) (dir string) {
	t.Helper()
	dir, _ = runMeridiandCmd(t, ns, yaml)
	return dir
}

// runMeridiandCmd is runMeridiand, also returning the process (its PID is
// meridiand's: ip execs it).
func runMeridiandCmd(t testing.TB, ns, yaml string) (dir string, d *exec.Cmd) {
	t.Helper()
	bin := buildMeridiand(t)
	dir = t.TempDir()
	cfg := filepath.Join(dir, "m.yaml")
	if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(yaml, "DIR", dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	d = exec.Command("ip", "netns", "exec", ns, bin, "--config", cfg)
	d.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	logf, _ := os.Create(filepath.Join(dir, "meridiand.log"))
	d.Stdout, d.Stderr = logf, logf
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = d.Process.Kill()
		_ = d.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("meridiand log:\n%s", b)
		}
	})
	return dir, d
}

// ptp4l (linuxptp 3.1.1, software stamps, unicast UDPv4, slave only, free
// running) in its own namespace as a client of meridiand's grandmaster,
// whose virtual clock runs +6 ms ahead of the host clock (ptp4l's): ptp4l
// negotiates Announce, Sync and Delay_Resp with us, and its `master
// offset` (slave minus master) is −6 ms within 20 µs.
func TestPtp4lClientOfMeridianGrandmaster(t *testing.T) {
	need(t, "ptp4l")
	p := netnsPair(t)
	nsA, nsB, addrB := p.NS[impair.A], p.NS[impair.B], p.Addr[impair.B].String()
	runMeridiand(t, nsB, fmt.Sprintf(`local_stratum: 1
clock_offset: +6ms
ptp_server: {listen: [%q], timestamping: software}
metrics: {listen: ""}
grpc: {listen: []}
shm: {path: DIR/tt.shm}
state_dir: DIR/state
`, addrB))
	lines := ptp4l(t, nsA, accuracy.Ptp4lSlaveConf("DIR/slave.sock", addrB, p.Iface[impair.A]))
	var offs []float64
	deadline := time.After(60 * time.Second)
	for len(offs) < 20 {
		select {
		case l := <-lines:
			m, ok, err := accuracy.ParseMasterOffset(l)
			if err != nil {
				t.Fatal(err)
			}
			if !ok || m.PathDelayNS == 0 {
				continue // not a report, or the first one, before a delay measurement
			}
			offs = append(offs, float64(m.OffsetNS))
		case <-deadline:
			t.Fatalf("ptp4l printed %d master offset lines in 60 s", len(offs))
		}
	}
	sorted := append([]float64(nil), offs...)
	sort.Float64s(sorted)
	if med := sorted[len(sorted)/2]; med < -6_000_000-20_000 || med > -6_000_000+20_000 {
		t.Fatalf("ptp4l master offset median %.0f ns, want -6000000 ± 20000 (all %v)", med, offs)
	}
	t.Logf("ptp4l master offsets (ns): %v", offs)
}

// meridiand as a PTP client of ptp4l (unicast_listen 1, master only, free
// running, software stamps) in its own namespace: ptp4l serves the host
// clock; meridiand's virtual clock starts 4 ms behind it, converges, and
// its interval — read from its shm segment in this process — contains the
// host clock (CLOCK_REALTIME, read before and after) on every read for
// 60 s.
func TestMeridianClientOfPtp4lMaster(t *testing.T) {
	need(t, "ptp4l")
	p := netnsPair(t)
	nsA, nsB, addrB := p.NS[impair.A], p.NS[impair.B], p.Addr[impair.B].String()
	ptp4l(t, nsB, ptpload.Ptp4lConf(p.Iface[impair.B]))
	dir := runMeridiand(t, nsA, fmt.Sprintf(`local_stratum: 0
clock_offset: -4ms
sources: [{type: ptp, address: %q, timestamping: software, poll: 1s}]
metrics: {listen: ""}
grpc: {listen: []}
shm: {path: DIR/tt.shm}
state_dir: DIR/state
`, addrB))
	r := waitShm(t, filepath.Join(dir, "tt.shm"), nil)
	// Wait for synchronization (ptp4l takes ~7 s to become master).
	syncBy := time.Now().Add(60 * time.Second)
	for {
		if _, err := r.Now(); err == nil {
			break
		}
		if time.Now().After(syncBy) {
			t.Fatal("meridiand not synchronized to ptp4l within 60 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	end := time.Now().Add(60 * time.Second)
	reads := 0
	var maxEps, lastErr time.Duration
	for time.Now().Before(end) {
		before := time.Now().UnixNano()
		iv, err := r.Now()
		after := time.Now().UnixNano()
		if err != nil {
			t.Fatalf("read %d: %v", reads, err)
		}
		if iv.LatestNS < before || iv.EarliestNS > after {
			t.Fatalf("read %d: interval [%d, %d] (ε %v) misses the host clock [%d, %d]", reads,
				iv.EarliestNS, iv.LatestNS, time.Duration(iv.EpsNS()), before, after)
		}
		reads++
		maxEps = max(maxEps, time.Duration(iv.EpsNS()))
		lastErr = time.Duration(iv.MidNS() - (before+after)/2)
		time.Sleep(2 * time.Millisecond)
	}
	if lastErr.Abs() > 500*time.Microsecond {
		t.Fatalf("meridiand still %v from ptp4l's clock after 60 s (started at -4ms)", lastErr)
	}
	t.Logf("%d reads over 60 s contained the host clock; max ε %v, last midpoint error %v", reads, maxEps, lastErr)
}

// meridiand as a PTP client of meridiand's grandmaster through the
// impairment wire with an asymmetric path: client → grandmaster 3 ms,
// grandmaster → client 1 ms (the wire's calibrated overhead subtracted).
// Both clocks start on the host clock, so true time is the host clock.
// Physics: a two-way exchange cannot see asymmetry, so the client settles
// (3 − 1)/2 = +1 ms ahead of it (within 200 µs, the wire's jitter and
// software stamps); its interval — ε includes half the 4 ms round trip —
// still contains the host clock on every read, from synchronization on.
// Negative control: the same reads with ε shrunk 100× miss it.
func TestMeridianPTPOverAsymmetricWire(t *testing.T) {
	needWire(t)
	pair, err := impair.NewPair(t.Context(), impair.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pair.Close(); err != nil {
			t.Error(err)
		}
	})
	cal, err := pair.Calibrate(t.Context(), 200)
	if err != nil {
		t.Fatal(err)
	}
	cfg := impair.Config{AtoB: impair.Path{Delay: 3 * time.Millisecond}, BtoA: impair.Path{Delay: time.Millisecond}, Seed: 7}
	cfg.AtoB.SubtractNS, cfg.BtoA.SubtractNS = int64(cal.AtoBP50), int64(cal.BtoAP50)
	if err := pair.Wire.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	nsA, nsB, addrB := pair.NS[impair.A], pair.NS[impair.B], pair.Addr[impair.B].String()
	runMeridiand(t, nsB, fmt.Sprintf(`local_stratum: 1
ptp_server: {listen: [%q], timestamping: software}
metrics: {listen: ""}
grpc: {listen: []}
shm: {path: DIR/tt.shm}
state_dir: DIR/state
`, addrB))
	dir := runMeridiand(t, nsA, fmt.Sprintf(`local_stratum: 0
sources: [{type: ptp, address: %q, timestamping: software, poll: 1s}]
metrics: {listen: ""}
grpc: {listen: []}
shm: {path: DIR/tt.shm}
state_dir: DIR/state
`, addrB))
	r := waitShm(t, filepath.Join(dir, "tt.shm"), nil)
	end := time.Now().Add(60 * time.Second)
	var reads, control int
	var errs []float64
	for time.Now().Before(end) {
		before := time.Now().UnixNano()
		iv, err := r.Now()
		after := time.Now().UnixNano()
		if err != nil {
			if reads > 0 {
				t.Fatalf("read %d: %v (after synchronization)", reads, err)
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if iv.LatestNS < before || iv.EarliestNS > after {
			t.Fatalf("read %d: interval [%d, %d] (ε %v) misses the host clock [%d, %d]", reads,
				iv.EarliestNS, iv.LatestNS, time.Duration(iv.EpsNS()), before, after)
		}
		if eps := iv.EpsNS() / 100; iv.MidNS()+eps < before || iv.MidNS()-eps > after {
			control++
		}
		reads++
		errs = append(errs, float64(iv.MidNS()-(before+after)/2))
		time.Sleep(5 * time.Millisecond)
	}
	if reads < 1000 {
		t.Fatalf("only %d synchronized reads in 60 s", reads)
	}
	last := append([]float64(nil), errs[len(errs)*3/4:]...) // the last quarter: converged
	sort.Float64s(last)
	med := last[len(last)/2]
	if med < 800_000 || med > 1_200_000 {
		t.Fatalf("midpoint − host clock %.0f µs over the last quarter, want +1000 ± 200 (asymmetry/2)", med/1e3)
	}
	if control == 0 {
		t.Fatal("negative control: no read missed the host clock with ε/100")
	}
	t.Logf("%d reads contained the host clock; midpoint − host (median, last quarter) %+.0f µs; ε/100 missed it on %d reads; wire overhead %v/%v subtracted",
		reads, med/1e3, control, cal.AtoBP50, cal.BtoAP50)
}
