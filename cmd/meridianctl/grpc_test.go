package main

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	timev1 "github.com/meridiantime/meridian/api/meridian/time/v1"
	"github.com/meridiantime/meridian/hlc"
	"github.com/meridiantime/meridian/internal/testdaemon"
	"github.com/meridiantime/meridian/timeservice"
	"github.com/meridiantime/meridian/truetime"
)

// serve starts a TimeService with an HLC on a unix socket over the wall
// clock and returns its address and TrueTime clock (unsynchronized).
func serve(t *testing.T) (string, *truetime.Clock) {
	t.Helper()
	return testdaemon.ServeWall(t, func(tt *truetime.Clock) timeservice.Options {
		h, err := hlc.New(tt, hlc.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return timeservice.Options{HLC: h, ClockName: "virtual", Reason: func() string { return "no sample from any source yet" },
			Clients: func(int) []*timev1.Client {
				return []*timev1.Client{{Address: "192.0.2.7", Replies: 41, Dropped: 2, LastAgoNs: 3e9}}
			},
			ServerStats: func() *timev1.ServerStatsResponse {
				return &timev1.ServerStatsResponse{NtpEnabled: true, NtpRequests: 120, NtpReplies: 117, NtpDropped: map[string]uint64{"denied": 3, "rate": 0}}
			}, Sources: func() []*timev1.Source {
				return []*timev1.Source{
					{Name: "ntp:127.0.0.1:123", Type: "ntp", State: "selected", Reach: 0o377, Stratum: 1, DelayNs: 80_000, LastSampleAgeNs: 1e9,
						StateReason: "source selected: it agrees with the majority", Samples: 12, PollNs: 16e9, Sent: 20, Valid: 19,
						Address: "127.0.0.1:123", RootDelayNs: 40_000, RootDispersionNs: 15_000, Leap: "insert", LastOffsetNs: -12_300, LastDelayNs: 80_000},
					{Name: "ntp:10.0.0.9:123", Type: "ntp", State: "unreachable", Reach: 0, Sent: 9, LastSampleAgeNs: -1,
						StateReason: "source unreachable: no reply to its last 8 polls"},
				}
			}}
	})
}

func syncedEstimate(eps time.Duration) truetime.Estimate { return testdaemon.WallEstimate(eps) }

func exitCode(err error) int {
	var e exitError
	if errors.As(err, &e) {
		return e.code
	}
	if err != nil {
		return -1
	}
	return 0
}

func TestGRPCCommands(t *testing.T) {
	addr, tt := serve(t)
	// Unsynchronized: now fails with exit 1, status answers.
	if _, err := runCtl("--addr", addr, "now"); exitCode(err) != 1 {
		t.Fatalf("now while unsynchronized: %v", err)
	}
	if out, err := runCtl("--addr", addr, "status"); err != nil || !strings.Contains(out, "unsynchronized") || !strings.Contains(out, "why  ") || !strings.Contains(out, "no sample from any source yet") {
		t.Fatalf("status: %q %v", out, err)
	}
	tt.SetEstimate(syncedEstimate(300 * time.Microsecond))

	before := time.Now().UnixNano()
	out, err := runCtl("--addr", addr, "now", "--json")
	after := time.Now().UnixNano()
	doc, derr := decodeDoc(out)
	if n := doc.GetInterval(); err != nil || derr != nil || n.GetStatus() != timev1.ClockStatus_CLOCK_STATUS_SYNCHRONIZED || n.EarliestNs > after || n.LatestNs < before {
		t.Fatalf("now --json: %q %v %v (truth in [%d, %d])", out, err, derr, before, after)
	}
	if out, err := runCtl("--addr", addr, "now"); err != nil || !strings.Contains(out, "earliest") || !strings.Contains(out, "ε") {
		t.Fatalf("now: %q %v", out, err)
	}

	out, err = runCtl("--addr", addr, "status", "--json")
	doc, derr = decodeDoc(out)
	if st := doc.GetStatus(); err != nil || derr != nil || st.GetStatus() != timev1.ClockStatus_CLOCK_STATUS_SYNCHRONIZED || st.ErrorBoundNs < 300_000 || st.ReferenceId != "127.0.0.1" || st.Clock != "virtual" {
		t.Fatalf("status --json: %q %v %v", out, err, derr)
	}
	if out, err := runCtl("--addr", addr, "status"); err != nil || !strings.Contains(out, "error bound (ε)") || !strings.Contains(out, "127.0.0.1") || strings.Contains(out, "why") {
		t.Fatalf("status: %q %v", out, err)
	}

	out, err = runCtl("--addr", addr, "sources", "--json")
	doc, derr = decodeDoc(out)
	if srcs := doc.GetSources().GetSources(); err != nil || derr != nil || len(srcs) != 2 || srcs[0].Reach != 0o377 || srcs[0].State != "selected" {
		t.Fatalf("sources --json: %q %v %v", out, err, derr)
	}
	if out, err := runCtl("--addr", addr, "sources"); err != nil || !strings.Contains(out, "REACH") || !strings.Contains(out, "377") {
		t.Fatalf("sources: %q %v", out, err)
	}

	out, err = runCtl("--addr", addr, "hlc", "--json")
	doc, derr = decodeDoc(out)
	h := doc.GetHlc()
	if err != nil || derr != nil || h.GetWallNs() < before {
		t.Fatalf("hlc: %q %v %v", out, err, derr)
	}
	out, err = runCtl("--addr", addr, "hlc", "update", h.Text, "--json")
	doc, derr = decodeDoc(out)
	if h2 := doc.GetHlc(); err != nil || derr != nil || bytes.Compare(h2.GetKey(), h.Key) <= 0 {
		t.Fatalf("hlc update: %q %v %v", out, err, derr)
	}
	far := hlc.Timestamp{WallNS: time.Now().UnixNano() + 10_000_000_000}
	if _, err := runCtl("--addr", addr, "hlc", "update", far.String()); exitCode(err) != 1 || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("far update: %v", err)
	}
	if _, err := runCtl("--addr", addr, "hlc", "update", "yesterday"); exitCode(err) != 2 {
		t.Fatalf("bad update: %v", err)
	}

	out, err = runCtl("--addr", addr, "wait-until", "+30ms", "--json")
	returned := time.Now().UnixNano()
	if doc, derr := decodeDoc(out); err != nil || derr != nil || doc.GetInterval().GetStatus() != timev1.ClockStatus_CLOCK_STATUS_SYNCHRONIZED {
		t.Fatalf("wait-until: %q %v %v", out, err, derr)
	}
	if returned-before < int64(30*time.Millisecond) {
		t.Fatalf("wait-until +30ms returned after %v", time.Duration(returned-before))
	}
	if _, err := runCtl("--addr", addr, "--timeout", "50ms", "wait-until", "+10s"); exitCode(err) != 2 || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("wait-until past the timeout: %v", err)
	}
	if _, err := runCtl("--addr", addr, "wait-until", "soon"); exitCode(err) != 2 {
		t.Fatalf("bad time: %v", err)
	}

	out, err = runCtl("--addr", addr, "watch", "--count", "1", "--json")
	if doc, derr := decodeDoc(out); err != nil || derr != nil || doc.GetStatus().GetStatus() != timev1.ClockStatus_CLOCK_STATUS_SYNCHRONIZED {
		t.Fatalf("watch: %q %v %v", out, err, derr)
	}
	// Updates stream as the daemon publishes estimates (here every 5 ms).
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
				tt.SetEstimate(syncedEstimate(300 * time.Microsecond))
			}
		}
	}()
	out, err = runCtl("--addr", addr, "watch", "--count", "3", "--interval", "20ms")
	close(stop)
	if err != nil || strings.Count(out, "synchronized") != 3 || !strings.Contains(out, "STATUS") {
		t.Fatalf("watch table: %q %v", out, err)
	}
}

func TestUnreachableDaemon(t *testing.T) {
	addr := "unix://" + filepath.Join(t.TempDir(), "nobody.sock")
	for _, cmd := range [][]string{{"now"}, {"status"}, {"sources"}, {"hlc"}, {"watch", "--count", "1"}, {"wait-until", "+1ms"}} {
		out, err := runCtl(append([]string{"--addr", addr, "--timeout", "2s", "--json"}, cmd...)...)
		if exitCode(err) != 2 || !strings.Contains(err.Error(), "cannot reach meridiand") || out != "" {
			t.Errorf("%v: %v, printed %q", cmd, err, out)
		}
	}
	if _, err := runCtl("--addr", "unix:relative", "now"); exitCode(err) != 2 {
		t.Errorf("bad address: %v", err)
	}
}

// The Sources reply is paged; meridianctl sources follows the pages and
// lists every source once, in order.
func TestSourcesAllPages(t *testing.T) {
	const n = 2*timeservice.MaxSourcesPage + 7
	addr, _ := testdaemon.ServeWall(t, func(*truetime.Clock) timeservice.Options {
		return timeservice.Options{Sources: func() []*timev1.Source {
			out := make([]*timev1.Source, n)
			for i := range out {
				out[i] = &timev1.Source{Name: fmt.Sprintf("ntp:10.0.%d.%d:123", i/256, i%256), Type: "ntp", State: "unused"}
			}
			return out
		}}
	})
	out, err := runCtl("--addr", addr, "sources", "--json")
	doc, derr := decodeDoc(out)
	if err != nil || derr != nil {
		t.Fatalf("sources --json: %v %v", err, derr)
	}
	srcs := doc.GetSources().GetSources()
	if len(srcs) != n {
		t.Fatalf("%d sources listed, want %d", len(srcs), n)
	}
	for i, s := range srcs {
		if want := fmt.Sprintf("ntp:10.0.%d.%d:123", i/256, i%256); s.Name != want {
			t.Fatalf("source %d is %s, want %s", i, s.Name, want)
		}
	}
}

// waitsync (chronyc waitsync): exit 1 with the reason while unsynchronized
// past --timeout; exit 0 once synchronized within --max-error (the status
// changes during the wait); exit 1 when ε stays above --max-error; and a
// daemon that is not up yet is waited for, not an error at once.
func TestWaitsync(t *testing.T) {
	addr, tt := serve(t)
	_, err := runCtl("--addr", addr, "--timeout", "300ms", "waitsync", "--interval", "50ms")
	var e exitError
	if !errors.As(err, &e) || e.code != 1 || !strings.Contains(e.msg, "no sample from any source yet") {
		t.Fatalf("unsynchronized: %v", err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		tt.SetEstimate(syncedEstimate(300 * time.Microsecond))
	}()
	start := time.Now()
	out, err := runCtl("--addr", addr, "--timeout", "5s", "waitsync", "--interval", "50ms", "--max-error", "1ms")
	if err != nil || !strings.Contains(out, "synchronized") || time.Since(start) < 250*time.Millisecond {
		t.Fatalf("waitsync returned %q %v after %v", out, err, time.Since(start))
	}
	_, err = runCtl("--addr", addr, "--timeout", "300ms", "waitsync", "--interval", "50ms", "--max-error", "100us")
	if !errors.As(err, &e) || e.code != 1 || !strings.Contains(e.msg, "> --max-error") {
		t.Fatalf("ε above max-error: %v", err)
	}
	_, err = runCtl("--addr", "unix://"+t.TempDir()+"/none.sock", "--timeout", "300ms", "waitsync", "--interval", "50ms")
	if !errors.As(err, &e) || e.code != 1 {
		t.Fatalf("no daemon: %v", err)
	}
	if _, err := runCtl("--addr", addr, "waitsync", "--interval", "0s"); !errors.As(err, &e) || e.code != 2 {
		t.Fatalf("bad interval: %v", err)
	}
}

// Every binary answers --version with its name and the Go version.
func TestVersion(t *testing.T) {
	out, err := runCtl("--version")
	if err != nil || !strings.HasPrefix(out, "meridianctl ") || !strings.Contains(out, "go1.") {
		t.Fatalf("--version: %q %v", out, err)
	}
}

// chronyc's views: selectdata says why, sourcestats shows the filter,
// activity counts, sources -v explains the columns and has a poll column;
// a command the segment cannot serve refuses --shm instead of ignoring it.
func TestChronycParityViews(t *testing.T) {
	addr, _ := serve(t)
	run := func(args ...string) string {
		t.Helper()
		out, err := runCtl(append([]string{"--addr", addr}, args...)...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return out
	}
	if out := run("selectdata"); !strings.Contains(out, "WHY") || !strings.Contains(out, "no reply to its last 8 polls") {
		t.Fatalf("selectdata: %q", out)
	}
	if out := run("sourcestats"); !strings.Contains(out, "SAMPLES") || !strings.Contains(out, "ntp:127.0.0.1:123  12") {
		t.Fatalf("sourcestats: %q", out)
	}
	if out := run("activity"); !strings.Contains(out, "1 sources online") || !strings.Contains(out, "1 sources offline") {
		t.Fatalf("activity: %q", out)
	}
	if out := run("activity", "--json"); !strings.Contains(out, `"activity":{"online":1,"offline":1,"unpolled":0}`) {
		t.Fatalf("activity --json: %q", out)
	}
	if out := run("sources", "-v"); !strings.Contains(out, "REACH    the last 8 polls") || !strings.Contains(out, "16s") || !strings.Contains(out, "OFFSET µs") {
		t.Fatalf("sources -v: %q", out)
	}
	if out := run("ntpdata"); !strings.Contains(out, "Remote address          : 127.0.0.1:123") || !strings.Contains(out, "Leap status             : insert") ||
		!strings.Contains(out, "Root delay              : 40.0 µs") || !strings.Contains(out, "Offset (source − local) : -12.3 µs") {
		t.Fatalf("ntpdata: %q", out)
	}
	if out := run("clients"); !strings.Contains(out, "192.0.2.7") || !strings.Contains(out, "41") || !strings.Contains(out, "3s ago") {
		t.Fatalf("clients: %q", out)
	}
	if out := run("serverstats"); !strings.Contains(out, "NTP requests received  : 120") || !strings.Contains(out, "NTP requests dropped   : 3 denied 3") {
		t.Fatalf("serverstats: %q", out)
	}
	_, err := runCtl("--shm", "/nonexistent", "sources")
	var e exitError
	if !errors.As(err, &e) || e.code != 2 || !strings.Contains(e.msg, "--shm: sources needs the daemon") {
		t.Fatalf("sources --shm: %v", err)
	}
}
