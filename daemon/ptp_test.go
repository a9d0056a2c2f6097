package daemon

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// ptpPorts are an event and a general port free on 127.0.0.1 and
// 127.0.0.2 a moment ago (PTP uses the same port numbers on both sides).
func ptpPorts(t *testing.T) (ev, gen int) {
	t.Helper()
	free := func() int {
		for range 50 {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			p := c.LocalAddr().(*net.UDPAddr).Port
			c.Close()
			if c2, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: p}); err == nil {
				c2.Close()
				return p
			}
		}
		t.Fatal("no free port")
		return 0
	}
	ev = free()
	for gen = free(); gen == ev; gen = free() {
	}
	return ev, gen
}

// meridiand as a PTP client of meridiand's grandmaster over loopback: B
// starts 3 ms behind A, negotiates unicast Announce, Sync and Delay_Resp
// with A (ptp_server on 127.0.0.1, B's port on 127.0.0.2), synchronizes,
// and its interval contains A's time on every read — A's time at any raw
// instant is known exactly (both virtual clocks run on the same
// CLOCK_MONOTONIC_RAW). The PTP metrics of both show the exchange.
func TestMeridianPTPClientOfMeridianGrandmaster(t *testing.T) {
	ev, gen := ptpPorts(t)
	a, cancelA, doneA := startDaemon(t, fmt.Sprintf(
		"local_stratum: 1\nptp_server: {listen: [\"127.0.0.1\"], event_port: %d, general_port: %d}\n", ev, gen))
	defer func() { cancelA(); <-doneA }()
	b, cancelB, doneB := startDaemonOpt(t, fmt.Sprintf(
		"local_stratum: 0\nclock_offset: -3ms\nsources: [{type: ptp, address: \"127.0.0.1\", event_port: %d, general_port: %d, poll: 250ms}]\n", ev, gen),
		Options{Tick: 20 * time.Millisecond, PTPClientAddr: netip.MustParseAddr("127.0.0.2")})
	defer func() { cancelB(); <-doneB }()
	reads, lastErr := followsReference(t, a, b, 15*time.Second, 200*time.Microsecond)
	t.Logf("%d reads contained A's time; B's clock error now %v", reads, lastErr)
	// A (local_stratum 1) advertises stepsRemoved 0: B is at stratum 2,
	// as over NTP.
	if e := b.Clock().Estimate(); e.Stratum != 2 {
		t.Errorf("B's estimate: stratum %d, want 2", e.Stratum)
	}
	// The Sources call (meridianctl sources) lists the PTP server.
	var listed bool
	for _, s := range b.sourceInfo() {
		if s.Type == "ptp" {
			listed = true
			if s.Name != "ptp:127.0.0.1" || s.State != "selected" || s.Valid == 0 || s.Stratum != 1 || s.Reach != 1 || s.RxTimestamping != "software" {
				t.Errorf("Sources entry %v", s)
			}
		}
	}
	if !listed {
		t.Error("the Sources call does not list the PTP server")
	}
	for _, c := range []struct {
		d    *Daemon
		want []string
	}{
		{a, []string{"meridian_ptp_server_clients{listen=\"127.0.0.1\"} 1", "meridian_ptp_server_syncs_total",
			"meridian_ptp_server_syncs_shed_total", "meridian_ptp_server_rx_dropped_total"}},
		{b, []string{"meridian_ptp_source_selected{source=\"ptp:127.0.0.1\"} 1", "meridian_ptp_source_granted{source=\"ptp:127.0.0.1\"} 1"}},
	} {
		resp, err := http.Get("http://" + c.d.MetricsAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, w := range c.want {
			if !strings.Contains(string(body), w) {
				t.Errorf("metrics lack %q", w)
			}
		}
	}
}
