package daemon

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/clock/hostclock"
	"github.com/meridiantime/meridian/config"
	"github.com/meridiantime/meridian/truetime"
	"github.com/meridiantime/meridian/truetime/shm"
)

// meridiand as client of meridiand: B starts 3 ms behind A and polls A over
// loopback NTP. Both virtual clocks run on the same CLOCK_MONOTONIC_RAW, so
// A's time at any raw instant is known exactly: B's interval must contain it
// on every read once B is synchronized, and B must converge towards A.
func TestMeridianClientOfMeridianServer(t *testing.T) {
	a, cancelA, doneA := startDaemon(t, "local_stratum: 1\nntp_server: {listen: [\"127.0.0.1:0\"]}\n")
	defer func() { cancelA(); <-doneA }()
	b, cancelB, doneB := startDaemon(t, fmt.Sprintf(
		"local_stratum: 0\nclock_offset: -3ms\nsources: [{type: ntp, address: %q, poll: 250ms}]\n", a.NTPServerAddr()))
	defer func() { cancelB(); <-doneB }()
	reads, lastErr := followsReference(t, a, b, 10*time.Second, 500*time.Microsecond)
	// B's estimate names the selected source: stratum 1 + 1, reference
	// 127.0.0.1 (what meridianctl status shows).
	if e := b.Clock().Estimate(); e.Stratum != 2 || e.RefID != 0x7f000001 {
		t.Fatalf("B's estimate: stratum %d refid %#x", e.Stratum, e.RefID)
	}
	for _, c := range []struct {
		d    *Daemon
		want string
	}{
		{b, `meridian_source_reach{source="ntp:` + a.NTPServerAddr() + `"}`},
		{b, `meridian_source_stratum{source="ntp:` + a.NTPServerAddr() + `"} 1`},
		{b, `meridian_source_selected{source="ntp:` + a.NTPServerAddr() + `"} 1`},
		{a, "meridian_ntp_server_requests_total"},
		{a, "meridian_ntp_server_dropped_mode_total 0"},
		{a, "meridian_ntp_server_dropped_source_port_total 0"},
		{a, "meridian_ntp_server_rate_dropped_total 0"},
		{a, `meridian_ntp_server_send_errors_total{reason="EINVAL"} 0`},
		{a, `meridian_ntp_server_send_errors_total{reason="other"} 0`},
	} {
		resp, err := http.Get("http://" + c.d.MetricsAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), c.want) {
			t.Errorf("metrics lack %s", c.want)
		}
	}
	t.Logf("%d reads contained A's time; B's clock error now %v", reads, lastErr)
}

// followsReference reads both daemons' segments until B (which started
// 3 ms off) is synchronized and within tol of A's time, its interval holding
// A's time on every read; it fails after timeout or on a read that misses.
func followsReference(t *testing.T, a, b *Daemon, timeout, tol time.Duration) (reads int, lastErr time.Duration) {
	t.Helper()
	ra, err := shm.Open(a.ShmPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	rb, err := shm.Open(b.ShmPath)
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()

	deadline := time.Now().Add(timeout)
	synced := false
	for time.Now().Before(deadline) {
		ma, _, err := ra.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		mb, eb, err := rb.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		raw := hostclock.MonoRawNS()
		truth := ma.At(raw) // A is the reference
		iv := truetime.Bound(mb.At(raw), eb)
		if iv.Status == truetime.Unsynchronized {
			if synced {
				t.Fatal("B lost synchronization")
			}
			time.Sleep(5 * time.Millisecond)
			continue
		}
		synced = true
		reads++
		if truth < iv.EarliestNS || truth > iv.LatestNS {
			t.Fatalf("read %d: B's interval [%d, %d] (ε %v) misses A's time %d by %v", reads, iv.EarliestNS, iv.LatestNS,
				time.Duration(iv.EpsNS()), truth, time.Duration(max(iv.EarliestNS-truth, truth-iv.LatestNS)))
		}
		lastErr = time.Duration(mb.At(raw) - truth)
		if reads > 300 && lastErr.Abs() < tol {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !synced || reads < 100 {
		t.Fatalf("B synchronized=%v after %d reads", synced, reads)
	}
	if lastErr.Abs() > tol {
		t.Fatalf("B's clock still %v from A's after %v (started at -3ms)", lastErr, timeout)
	}
	return reads, lastErr
}

// At log_level debug every sample is logged as taken (chronyd's
// measurements log): B polls A, whose clock runs 2.5 ms ahead on the same
// CLOCK_MONOTONIC_RAW, so each sample's offset is 2.5 ms within its own
// δ/2 (independent truth: the configured offsets), its delay is the sum
// of its two legs, and clock_minus_realtime_ns puts t1 and t4 on the host's
// clock, where each leg less A's 2.5 ms is a one-way trip. At info level no
// sample is logged.
func TestDebugLogsEverySample(t *testing.T) {
	a, cancelA, doneA := startDaemon(t, "local_stratum: 1\nclock_offset: +2.5ms\nntp_server: {listen: [\"127.0.0.1:0\"]}\n")
	defer func() { cancelA(); <-doneA }()
	src := fmt.Sprintf("sources: [{type: ntp, address: %q, poll: 125ms}]\n", a.NTPServerAddr())
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo} {
		logs := &lockedBuf{}
		b, cancelB, doneB := runDaemonLog(t, tempConfig(t, "local_stratum: 0\n"+src), Options{Tick: 20 * time.Millisecond},
			slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level})))
		time.Sleep(1500 * time.Millisecond)
		cancelB()
		<-doneB
		valid := b.sources[0].Stats.Valid.Load()
		var lines []string
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "msg=sample ") {
				lines = append(lines, l)
			}
		}
		if level == slog.LevelInfo {
			if len(lines) > 0 || valid == 0 {
				t.Fatalf("info level: %d sample lines for %d samples", len(lines), valid)
			}
			continue
		}
		if valid < 3 || len(lines) < int(valid)-1 {
			t.Fatalf("debug level: %d sample lines for %d valid samples", len(lines), valid)
		}
		for i, l := range lines {
			var off, del, req, resp, hold, t1, t2, t3, t4, c int64
			f := map[string]*int64{"offset_ns": &off, "delay_ns": &del, "request_leg_ns": &req, "response_leg_ns": &resp, "server_ns": &hold,
				"t1_ns": &t1, "t2_ns": &t2, "t3_ns": &t3, "t4_ns": &t4, "clock_minus_realtime_ns": &c}
			for _, kv := range strings.Fields(l) {
				k, v, _ := strings.Cut(kv, "=")
				if p, ok := f[k]; ok {
					if _, err := fmt.Sscan(v, p); err != nil {
						t.Fatalf("%s: %v", kv, err)
					}
					delete(f, k)
				}
			}
			if len(f) > 0 {
				t.Fatalf("sample line lacks %v: %s", f, l)
			}
			if del != req+resp || req != t2-t1 || resp != t4-t3 || hold != t3-t2 {
				t.Fatalf("delay %d ≠ request leg %d + response leg %d, or the legs do not match t1..t4: %s", del, req, resp, l)
			}
			// On the host's clock (t1 and t4 less clock_minus_realtime_ns),
			// each leg is a one-way trip through loopback once A's +2.5 ms
			// is taken off: never negative (20 µs of slack for clock
			// models read at different instants), never longer than δ.
			upH, downH := t2-2_500_000-(t1-c), (t4-c)-(t3-2_500_000)
			if upH < -20_000 || downH < -20_000 || upH > del+20_000 || downH > del+20_000 {
				t.Fatalf("one-way trips on the host's clock %d and %d ns, want within [0, δ = %d]: %s", upH, downH, del, l)
			}
			// B starts on the host's time, converges towards A: any
			// sample's offset is A − B now, within ±2.5 ms + δ/2 of 2.5 ms.
			if off < -del/2 || off > 5_000_000+del/2 || hold < 0 || t1 <= 0 {
				t.Fatalf("implausible sample: %s", l)
			}
			// The first sample comes before any correction of B's clock:
			// A − B = 2.5 ms, within the sample's δ/2 (and 20 µs of slack
			// for two clock models read at different instants).
			if i == 0 && (off < 2_500_000-del/2-20_000 || off > 2_500_000+del/2+20_000) {
				t.Fatalf("first sample's offset %d ns, want 2.5 ms within δ/2 = %d ns: %s", off, del/2, l)
			}
		}
		t.Logf("%d sample lines for %d samples; first: %s", len(lines), valid, lines[0])
	}
}

// ntp_server.workers opens that many SO_REUSEPORT sockets on the address,
// counted in the kernel's own table (/proc/net/udp), not by the server;
// 0 opens one per CPU the process may use (GOMAXPROCS, at most 16).
func TestNTPServerWorkers(t *testing.T) {
	for _, tc := range []struct {
		workers int
		want    int
	}{{3, 3}, {0, min(runtime.GOMAXPROCS(0), config.AutoNTPWorkers)}} {
		d, cancel, done := startDaemon(t, fmt.Sprintf("local_stratum: 1\nntp_server: {listen: [\"127.0.0.1:0\"], workers: %d}\n", tc.workers))
		ap := netip.MustParseAddrPort(d.NTPServerAddr())
		raw, err := os.ReadFile("/proc/net/udp")
		if err != nil {
			t.Fatal(err)
		}
		local := fmt.Sprintf("0100007F:%04X", ap.Port())
		n := 0
		for _, line := range strings.Split(string(raw), "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[1] == local {
				n++
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if n != tc.want {
			t.Errorf("workers %d: %d sockets on %v, want %d", tc.workers, n, ap, tc.want)
		}
	}
}

// ntp_server.busy_poll reaches the kernel: every socket of this process
// bound to the server's port reports it (SO_BUSY_POLL, read through the
// descriptors in /proc/self/fd).
func TestNTPServerBusyPoll(t *testing.T) {
	d, cancel, done := startDaemon(t, "local_stratum: 1\nntp_server: {listen: [\"127.0.0.1:0\"], workers: 2, busy_poll: 37us}\n")
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}()
	port := int(netip.MustParseAddrPort(d.NTPServerAddr()).Port())
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range fds {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		sa, err := unix.Getsockname(fd)
		if in4, ok := sa.(*unix.SockaddrInet4); err != nil || !ok || in4.Port != port {
			continue
		}
		if typ, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); typ != unix.SOCK_DGRAM {
			continue
		}
		n++
		if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BUSY_POLL); err != nil || v != 37 {
			t.Errorf("socket %d: SO_BUSY_POLL %d (%v), want 37", fd, v, err)
		}
	}
	if n != 2 {
		t.Fatalf("%d server sockets found on port %d, want 2", n, port)
	}
}
