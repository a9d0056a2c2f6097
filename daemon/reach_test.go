package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	timev1 "github.com/meridiantime/meridian/api/meridian/time/v1"
	"github.com/meridiantime/meridian/truetime"
)

// lockedBuf is a log sink tests read while the daemon writes.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func metricValue(t *testing.T, d *Daemon, series string) (float64, bool) {
	t.Helper()
	resp, err := http.Get("http://" + d.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	return v, err == nil
}

// A source killed mid-run: its reach register decays to 0 over 8 polls
// (timeouts and ICMP errors shift it too), the source leaves selection
// (state unreachable), the unreachable alert's expression
// (meridian_source_reach == 0, deploy/prometheus/alerts.yaml) holds, the
// log says so once, and Status says why the clock is no longer
// synchronized.
func TestDeadSourceDecaysAndIsDeselected(t *testing.T) {
	a, cancelA, doneA := startDaemon(t, "local_stratum: 1\nntp_server: {listen: [\"127.0.0.1:0\"]}\n")
	addr := a.NTPServerAddr()
	b, logs, stopB := startLogged(t, fmt.Sprintf("sources: [{type: ntp, address: %q, poll: 125ms}]\n", addr), Options{Tick: 20 * time.Millisecond})
	defer stopB()
	series := `meridian_source_reach{source="ntp:` + addr + `"}`
	state := func() string {
		for _, s := range b.sourceInfo() {
			return s.State
		}
		return ""
	}
	eventually(t, 10*time.Second, func() string { return "B never reached reach 377 with the source selected: " + state() }, func() bool {
		v, _ := metricValue(t, b, series)
		return v == 255 && state() == "selected" && b.Clock().Estimate().Status == truetime.Synchronized
	})
	cancelA()
	<-doneA
	killed := time.Now()
	eventually(t, 10*time.Second, func() string { return "10 s after the kill: state " + state() }, func() bool {
		v, ok := metricValue(t, b, series)
		return ok && v == 0 && state() == "unreachable"
	})
	t.Logf("reach 0 and deselected %v after the kill", time.Since(killed).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond) // more updates: still logged once
	if n := strings.Count(logs.String(), "source unreachable"); n != 1 {
		t.Fatalf("%d 'source unreachable' log lines:\n%s", n, logs.String())
	}
	st, err := b.svc.Status(context.Background(), &timev1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.GetReason(), "no source reachable") {
		t.Fatalf("status %v, reason %q", st.GetStatus(), st.GetReason())
	}
	t.Logf("status %v: %s", st.GetStatus(), st.GetReason())
}
