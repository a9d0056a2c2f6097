package daemon

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	timev1 "github.com/meridiantime/meridian/api/meridian/time/v1"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// What Prometheus and Kubernetes see: /readyz follows synchronization
// (503 with the reason while unsynchronized), /healthz the update loop;
// the status as a state set; stratum, root delay and dispersion, reference
// and leap gauges that are cleared (NaN, no reference series) while
// unsynchronized instead of keeping stale values; per-source sent, valid,
// timeouts and sample age; the server's drops by reason; Go and process
// collectors.
func TestPrometheusAndProbes(t *testing.T) {
	a, cancelA, doneA := startDaemon(t, "local_stratum: 1\nntp_server: {listen: [\"127.0.0.1:0\"]}\n")
	defer func() { cancelA(); <-doneA }()
	lone, cancelL, doneL := startDaemon(t, "")
	defer func() { cancelL(); <-doneL }()
	b, cancelB, doneB := startDaemon(t, fmt.Sprintf("sources: [{type: ntp, address: %q, poll: 125ms}]\n", a.NTPServerAddr()))
	defer func() { cancelB(); <-doneB }()
	waitSynced(t, b)
	time.Sleep(300 * time.Millisecond)

	if code, body := get(t, "http://"+lone.MetricsAddr()+"/readyz"); code != 503 || !strings.Contains(body, "no sources configured") {
		t.Fatalf("unsynchronized /readyz: %d %q", code, body)
	}
	if code, _ := get(t, "http://"+b.MetricsAddr()+"/readyz"); code != 200 {
		t.Fatalf("synchronized /readyz: %d", code)
	}
	for _, d := range []*Daemon{lone, b} {
		if code, _ := get(t, "http://"+d.MetricsAddr()+"/healthz"); code != 200 {
			t.Fatalf("/healthz: %d", code)
		}
	}
	val := func(d *Daemon, series string) float64 {
		t.Helper()
		v, ok := metricValue(t, d, series)
		if !ok {
			t.Fatalf("no %s", series)
		}
		return v
	}
	if val(lone, `meridian_status_state{state="unsynchronized"}`) != 1 || val(lone, `meridian_status_state{state="synchronized"}`) != 0 ||
		!math.IsNaN(val(lone, "meridian_error_bound_seconds")) || !math.IsNaN(val(lone, "meridian_root_delay_seconds")) || val(lone, "meridian_stratum") != 0 {
		t.Fatal("unsynchronized daemon's gauges are not cleared")
	}
	if _, body := get(t, "http://"+lone.MetricsAddr()+"/metrics"); strings.Contains(body, "meridian_reference_info{") ||
		!strings.Contains(body, "go_goroutines") || !strings.Contains(body, "process_resident_memory_bytes") {
		t.Fatal("unsynchronized: a reference series, or no Go/process collectors")
	}
	src := `{source="ntp:` + a.NTPServerAddr() + `"}`
	if val(b, `meridian_status_state{state="synchronized"}`) != 1 || val(b, "meridian_stratum") != 2 ||
		val(b, `meridian_reference_info{reference="127.0.0.1"}`) != 1 || val(b, "meridian_leap") != 0 ||
		val(b, "meridian_source_sent"+src) < 1 || val(b, "meridian_source_valid"+src) < 1 ||
		val(b, "meridian_source_last_sample_age_seconds"+src) > 5 || math.IsNaN(val(b, "meridian_root_dispersion_seconds")) {
		t.Fatal("synchronized daemon's gauges")
	}
	_ = val(b, "meridian_source_timeouts"+src)
	// ntpdata's fields come from the real exchanges.
	for _, s := range b.sourceInfo() {
		if s.LastDelayNs <= 0 || s.Leap != "none" || s.PollNs <= 0 || s.Samples == 0 || s.StateReason == "" || s.Stratum != 1 {
			t.Fatalf("B's source entry %+v", s)
		}
	}
	st, err := a.svc.ServerStats(context.Background(), &timev1.ServerStatsRequest{})
	if err != nil || !st.NtpEnabled || st.NtpRequests == 0 || st.NtpReplies == 0 || st.PtpEnabled {
		t.Fatalf("A's ServerStats %+v %v", st, err)
	}
	cl, err := a.svc.Clients(context.Background(), &timev1.ClientsRequest{})
	if err != nil || len(cl.Clients) != 1 || cl.Clients[0].Address != "127.0.0.1" || cl.Clients[0].Replies == 0 {
		t.Fatalf("A's clients %v %v", cl, err)
	}
	if val(a, `meridian_ntp_server_dropped_total{reason="denied"}`) != 0 || val(a, `meridian_reference_info{reference="LOCL"}`) != 1 {
		t.Fatal("A's drops by reason or local reference")
	}
}
