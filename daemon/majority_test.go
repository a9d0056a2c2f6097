package daemon

import (
	"fmt"
	"testing"
	"time"
)

// Three reference daemons on loopback; one of them restarts 60 ms ahead
// (a falseticker), later honest again. The follower's every read holds the
// honest references' time, read from their clocks before and after it (all
// virtual clocks here run on the same CLOCK_MONOTONIC_RAW), and its sources
// report the liar as a falseticker while it lies. (The discipline before
// the engine rework failed here: 124 of 4,928 reads missed the majority's
// time, by up to 19 ms, once the liar was honest again and its old samples
// fed the frequency regression.)
func TestFalsetickerLiesThenRecovers(t *testing.T) {
	if testing.Short() {
		t.Skip("12 s of real time")
	}
	addrs := []string{freeUDPAddr(t), freeUDPAddr(t), freeUDPAddr(t)}
	startRef := func(addr, offset string) (*Daemon, func()) {
		d, cancel, done := startDaemon(t, fmt.Sprintf("local_stratum: 1\nclock_offset: %s\nntp_server: {listen: [%q]}\n", offset, addr))
		return d, func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
	a, stopA := startRef(addrs[0], "0s")
	defer stopA()
	_, stopB := startRef(addrs[1], "0s")
	defer stopB()
	_, stopC := startRef(addrs[2], "0s")
	fol, cancel, done := startDaemonOpt(t, fmt.Sprintf("clock_offset: -2ms\nsources: [{type: ntp, address: %q, poll: 250ms}, {type: ntp, address: %q, poll: 250ms}, {type: ntp, address: %q, poll: 250ms}]\n", addrs[0], addrs[1], addrs[2]),
		Options{Tick: 20 * time.Millisecond})
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	var reads, missed int
	var worst time.Duration
	watch := func(d time.Duration) {
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
			before := a.Clock().LocalNS()
			iv, err := fol.Clock().Now()
			after := a.Clock().LocalNS()
			if err != nil {
				continue
			}
			reads++
			if iv.EarliestNS > after || iv.LatestNS < before {
				missed++
				worst = max(worst, time.Duration(max(iv.EarliestNS-after, before-iv.LatestNS)))
			}
		}
	}
	falseticker := func() bool {
		fol.reportsMu.Lock()
		defer fol.reportsMu.Unlock()
		return fol.reports["ntp:"+addrs[2]].State.String() == "falseticker"
	}
	watch(3 * time.Second)
	if reads == 0 {
		t.Fatal("the follower never synchronized")
	}
	stopC()
	_, stopC = startRef(addrs[2], "+60ms") // C lies
	seen := false
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); {
		watch(100 * time.Millisecond)
		seen = seen || falseticker()
	}
	stopC()
	_, stopC = startRef(addrs[2], "0s") // and tells the truth again
	watch(4 * time.Second)
	stopC()
	t.Logf("%d reads, %d missed the honest majority's time (worst by %v); liar flagged: %v", reads, missed, worst, seen)
	if missed != 0 {
		t.Fatalf("%d of %d reads missed the honest references' time, worst by %v", missed, reads, worst)
	}
	if !seen {
		t.Fatal("the reference 60 ms ahead was never reported as a falseticker")
	}
}
