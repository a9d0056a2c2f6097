package daemon

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/clock/hostclock"
	"github.com/meridiantime/meridian/clock/system/systest"
)

// clock: system on a simulated CLOCK_REALTIME (the host's is never
// touched: the real kernel refuses writes from test binaries): started
// 300 ms off with 40 ppm left in its frequency, it is stepped once and
// steered by frequency alone onto A's time, its published interval (the
// measured model over CLOCK_MONOTONIC_RAW) holds A's time on every read,
// and the kernel's status tells adjtimex readers the truth: STA_UNSYNC
// cleared once synchronized, maxerror and esterror the bound in µs. A step
// by another program is noticed, logged, and re-acquired from.
func TestSystemClockDisciplinedThroughAdjtimex(t *testing.T) {
	a, cancelA, doneA := startDaemon(t, "local_stratum: 1\nntp_server: {listen: [\"127.0.0.1:0\"]}\n")
	defer func() { cancelA(); <-doneA }()
	wall := time.Now().UnixNano() - hostclock.MonoRawNS()
	k := systest.New(hostclock.MonoRawNS, wall+300_000_000, 40_000)
	b, logs, stop := startLogged(t, fmt.Sprintf("clock: system\nsources: [{type: ntp, address: %q, poll: 125ms}]\n", a.NTPServerAddr()),
		Options{Tick: 20 * time.Millisecond, SystemAdj: k})
	defer stop()
	reads, lastErr := followsReference(t, a, b, 15*time.Second, 200*time.Microsecond)
	t.Logf("%d reads held A's time; B's CLOCK_REALTIME now %v from A's", reads, lastErr)
	var steps, freqs int
	for _, c := range k.Calls() {
		if c.Modes&unix.ADJ_SETOFFSET != 0 {
			steps++
		}
		if c.Modes&unix.ADJ_FREQUENCY != 0 {
			freqs++
		}
		if c.Modes&(unix.ADJ_OFFSET|unix.ADJ_TICK) != 0 {
			t.Fatalf("the kernel PLL or tick was touched: %+v", c)
		}
	}
	if steps != 1 || freqs < 5 {
		t.Fatalf("%d steps and %d frequency writes", steps, freqs)
	}
	st, maxerr, esterr := k.Status()
	if st&unix.STA_UNSYNC != 0 || maxerr < 1 || maxerr > 5000 || esterr != maxerr {
		t.Fatalf("kernel status %#x maxerror %d µs esterror %d µs", st, maxerr, esterr)
	}
	// Someone runs `date -s` (+5 ms): noticed at the next update.
	k.StepExternally(5_000_000)
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "stepped or steered by another program"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("external step not noticed:\n%s", logs.String())
		}
	}
	reads, lastErr = followsReference(t, a, b, 15*time.Second, 2*time.Millisecond)
	t.Logf("after the external step: %d reads held A's time; now %v", reads, lastErr)
}
