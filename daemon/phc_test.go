package daemon

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meridiantime/meridian/clock/hostclock"
	"github.com/meridiantime/meridian/clock/phc/phctest"
	"github.com/meridiantime/meridian/hwts/hwtstest"
)

// clock: phc:/dev/ptp5 on a simulated PHC (2 s off and 80 ppm fast at
// start), whose NIC stamps B's NTP exchanges in hardware: B follows A
// (3 ms ahead) with its interval holding A's time on every read, its
// source reports hardware stamps, and the PHC itself is brought onto B's
// clock through clock_adjtime alone — checked against the simulated
// device's own reading, not against what the daemon measured.
func TestPHCFollowsClockAndNICStampsInHardware(t *testing.T) {
	a, cancelA, doneA := startDaemon(t, "local_stratum: 1\nclock_offset: +3ms\nntp_server: {listen: [\"127.0.0.1:0\"]}\n")
	defer func() { cancelA(); <-doneA }()
	dev := phctest.New(hostclock.MonoRawNS, 2_000_000_000, 80_000, 1)
	nic := &hwtstest.NIC{PHC: dev, Index: 5}
	b, cancelB, doneB := startDaemonOpt(t, fmt.Sprintf(
		"clock: phc:/dev/ptp5\nsources: [{type: ntp, address: %q, poll: 250ms, interface: lo, timestamping: hardware}]\n", a.NTPServerAddr()),
		Options{Tick: 20 * time.Millisecond, PHCDevice: dev, PHCAdj: dev, TimestampSys: nic, PHCEvery: 100 * time.Millisecond})
	defer func() { cancelB(); <-doneB }()
	reads, lastErr := followsReference(t, a, b, 15*time.Second, 500*time.Microsecond)
	t.Logf("%d reads contained A's time; B's clock error now %v", reads, lastErr)
	for _, s := range b.sourceInfo() {
		if s.TxTimestamping != "hardware" || s.RxTimestamping != "hardware" {
			t.Errorf("source %s: stamps tx %s rx %s, want hardware", s.Name, s.TxTimestamping, s.RxTimestamping)
		}
	}
	var phcErr int64
	deadline := time.Now().Add(5 * time.Second)
	for {
		raw := hostclock.MonoRawNS()
		phcErr = dev.At(raw) - b.clk.Model().At(raw)
		if (phcErr < 2000 && phcErr > -2000) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if phcErr >= 2000 || phcErr <= -2000 {
		t.Fatalf("PHC − clock = %d ns", phcErr)
	}
	if steps, writes := dev.Adjustments(); steps < 1 || writes < 10 {
		t.Fatalf("PHC steered by %d steps and %d frequency writes", steps, writes)
	}
	off, unc, ok := b.PHCOffset()
	if !ok {
		t.Fatal("no PHC offset reported")
	}
	resp, err := http.Get("http://" + b.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "meridian_phc_offset_seconds") {
		t.Error("metrics lack meridian_phc_offset_seconds")
	}
	steps, writes := dev.Adjustments()
	t.Logf("PHC − clock: %d ns true, %d ± %d ns measured; %d steps, %d frequency writes", phcErr, off, unc, steps, writes)
}
