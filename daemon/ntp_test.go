package daemon

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meridiantime/meridian/clock/hostclock"
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
