package interop

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meridiantime/meridian/clock/virtual"
	"github.com/meridiantime/meridian/config"
	"github.com/meridiantime/meridian/daemon"
	"github.com/meridiantime/meridian/internal/testdaemon"
	"github.com/meridiantime/meridian/ntp"
	"github.com/meridiantime/meridian/ntp/engine"
)

// Interleaved mode against chronyd, direction (a): chronyd serves the host
// clock and answers interleaved requests with its transmit stamps; our
// client with xleave, on a virtual clock started 3 ms behind, takes
// interleaved samples (counted in the source's status), each of which
// contains the true offset (host clock − our clock, read directly) within
// ±δ/2 plus the root dispersion, and whose median recovers the injected
// +3 ms.
func TestXleaveChronyServer(t *testing.T) {
	port := freeUDPPort(t)
	chronyd(t, fmt.Sprintf("local stratum 1\nallow 127.0.0.1\nport %d\nbindaddress 127.0.0.1", port))
	clk, _ := virtual.New(virtual.Options{OffsetNS: -3e6})
	src := ntp.NewSource("x", fmt.Sprintf("127.0.0.1:%d", port), engine.ClientConfig{Poll: 200 * time.Millisecond, Interleaved: true},
		clk, func() uint64 { return 0 }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	out := make(chan ntp.SourceSample, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { _ = src.Run(ctx, out); close(done) }()
	defer func() { cancel(); <-done }()
	var offs, delays []float64
	bad := 0
	for ctx.Err() == nil {
		var s ntp.SourceSample
		select {
		case s = <-out:
		case <-ctx.Done():
			continue
		}
		rt1 := time.Now().UnixNano()
		l := clk.NowNS()
		rt2 := time.Now().UnixNano()
		trueLo, trueHi := float64(rt1-l), float64(rt2-l) // host − ours
		x, d := s.Sample.OffsetNS(), float64(s.Sample.DelayNS())
		slack := d/2 + float64(s.Sample.RootDispersionNS) + 1000
		if x+slack < trueLo || x-slack > trueHi {
			bad++
			t.Logf("sample outside its bound: offset %.0f ± %.0f, truth [%.0f, %.0f]", x, slack, trueLo, trueHi)
		}
		offs = append(offs, x)
		delays = append(delays, d)
	}
	inter := src.Stats.Interleaved.Load()
	if len(offs) < 20 || inter < uint64(len(offs))/2 || bad > 0 {
		t.Fatalf("%d samples, %d interleaved, %d outside their bound", len(offs), inter, bad)
	}
	slices.Sort(offs)
	slices.Sort(delays)
	med := offs[len(offs)/2]
	if math.Abs(med-3e6) > 100e3 {
		t.Fatalf("median offset %.0f ns, want +3 ms ± 100 µs", med)
	}
	t.Logf("%d samples (%d interleaved): median offset %.1f µs (injected 3000), median δ %.1f µs", len(offs), inter, med/1e3, delays[len(delays)/2]/1e3)
}

// startMeridianMetrics is startMeridian with the metrics endpoint on.
func startMeridianMetrics(t *testing.T, yaml string) *daemon.Daemon {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	testdaemon.TempPaths(t, cfg)
	cfg.Metrics.Listen = "127.0.0.1:0"
	return testdaemon.Start(t, cfg, daemon.Options{Tick: 100 * time.Millisecond})
}

// metric reads one value from the daemon's /metrics; name includes its
// labels as the exposition format writes them.
func metric(t *testing.T, d *daemon.Daemon, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + d.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// Direction (b): chronyd as a client with xleave of meridiand, whose
// virtual clock runs +2.5 ms ahead of the host: chronyc ntpdata reports
// interleaved mode in use ("Interleaved: Yes", CSV field 27), our server
// counts interleaved replies, and chrony's measured offset matches the
// injected one.
func TestXleaveChronyClient(t *testing.T) {
	port := freeUDPPort(t)
	d := startMeridianMetrics(t, fmt.Sprintf("local_stratum: 1\nclock_offset: +2.5ms\nntp_server: {listen: [\"127.0.0.1:%d\"]}\n", port))
	sock := chronyd(t, fmt.Sprintf("server 127.0.0.1 port %d iburst xleave minpoll -2 maxpoll -2", port))
	var offsets []float64
	interleaved := 0
	deadline := time.Now().Add(40 * time.Second)
	for time.Now().Before(deadline) && (len(offsets) < 8 || interleaved < 8) {
		time.Sleep(time.Second)
		nd := chronyc(t, sock, "ntpdata")
		if len(nd) != 1 || len(nd[0]) < 31 {
			continue
		}
		if nd[0][26] == "Yes" {
			interleaved++
		}
		if r := chronyc(t, sock, "sources"); len(r) != 1 || r[0][5] == "0" {
			continue
		}
		tr := chronyc(t, sock, "tracking")[0]
		if tr[2] != "2" {
			continue
		}
		off, err := strconv.ParseFloat(tr[4], 64)
		if err != nil {
			t.Fatal(err)
		}
		offsets = append(offsets, off)
	}
	nd := chronyc(t, sock, "ntpdata")[0]
	replies := metric(t, d, "meridian_ntp_server_interleaved_replies_total")
	if interleaved < 8 || nd[26] != "Yes" || replies < 8 {
		t.Fatalf("chrony saw interleaved mode in %d of its ntpdata reads (last: %v); we sent %v interleaved replies", interleaved, nd, replies)
	}
	if len(offsets) < 5 {
		t.Fatalf("chrony tracked us for only %d s", len(offsets))
	}
	if last := offsets[len(offsets)-1]; math.Abs(last-0.0025) > 50e-6 {
		t.Fatalf("chrony measured %v s, want 0.0025 ± 50 µs (all: %v)", last, offsets)
	}
	t.Logf("ntpdata: interleaved %s, TX timestamping %s, peer delay %s s; our interleaved replies %v, table entries %v; chrony's offsets %v",
		nd[26], nd[28], nd[19], replies, metric(t, d, "meridian_ntp_server_interleaved_table_entries"), offsets)
}

// meridiand to meridiand: a source configured with `xleave: true` (the
// config key, through the daemon) takes interleaved samples from our own
// server, counted in meridian_source_interleaved_samples, and follows it:
// the client, started 3 ms behind the server's +1 ms, ends within 100 µs.
func TestXleaveMeridianToMeridian(t *testing.T) {
	port := freeUDPPort(t)
	startMeridian(t, fmt.Sprintf("local_stratum: 1\nclock_offset: +1ms\nntp_server: {listen: [\"127.0.0.1:%d\"]}\n", port))
	d := startMeridianMetrics(t, fmt.Sprintf(
		"local_stratum: 0\nclock_offset: -2ms\nsources: [{type: ntp, address: \"127.0.0.1:%d\", poll: 250ms, xleave: true}]\n", port))
	name := fmt.Sprintf(`meridian_source_interleaved_samples{source="ntp:127.0.0.1:%d"}`, port)
	deadline := time.Now().Add(20 * time.Second)
	var n float64
	for time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		if n = metric(t, d, name); n >= 10 {
			break
		}
	}
	if n < 10 {
		t.Fatalf("%v interleaved samples", n)
	}
	iv, err := d.Clock().Now()
	host := time.Now().UnixNano()
	if err != nil {
		t.Fatalf("not synchronized after %v interleaved samples: %v", n, err)
	}
	if off := iv.MidNS() - host; off < 1e6-100e3 || off > 1e6+100e3 {
		t.Fatalf("client is %+d ns from the host, want the server's +1 ms ± 100 µs", off)
	}
	t.Logf("%v interleaved samples; client − host %v, ε %v", n, time.Duration(iv.MidNS()-host), time.Duration(iv.EpsNS()))
}
