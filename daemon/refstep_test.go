package daemon

import (
	"fmt"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"testing"
	"time"

	"github.com/meridiantime/meridian/discipline"
	"github.com/meridiantime/meridian/truetime"
)

// refStepRun follows a lone reference daemon that restarts 500 ms ahead and
// then 757 ms behind that, and checks every read of the follower: a
// synchronized read holds the reference's old or new time, and no read's
// latest falls below an earlier read's earliest. The references' times are
// known exactly: every virtual clock here runs on the same
// CLOCK_MONOTONIC_RAW, so reading a reference's clock before and after a
// follower's read brackets what the reference said at that instant.
func refStepRun(t *testing.T, abl discipline.Ablation) (outside, backwards, synced int) {
	t.Helper()
	addr := freeUDPAddr(t)
	startRef := func(offset string) (*Daemon, func()) {
		d, cancel, done := startDaemon(t, fmt.Sprintf("local_stratum: 1\nclock_offset: %s\nntp_server: {listen: [%q]}\n", offset, addr))
		return d, func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
	ref, stopRef := startRef("0s")
	fol, cancel, done := startDaemonOpt(t, fmt.Sprintf("clock_offset: +3ms\nsources: [{type: ntp, address: %q, poll: 250ms}]\n", addr),
		Options{Tick: 20 * time.Millisecond, Ablation: abl})
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	var maxEarliest int64
	refs := []*Daemon{ref}
	watch := func(d time.Duration) {
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
			var before, after []int64
			for _, r := range refs {
				before = append(before, r.Clock().LocalNS())
			}
			iv, err := fol.Clock().Now()
			for _, r := range refs {
				after = append(after, r.Clock().LocalNS())
			}
			if err != nil {
				continue
			}
			if iv.LatestNS < maxEarliest {
				backwards++
			}
			maxEarliest = max(maxEarliest, iv.EarliestNS)
			if iv.Status != truetime.Synchronized {
				continue
			}
			synced++
			held := false
			// The newest two references: the one before the latest step and
			// the one after it.
			for i := max(0, len(refs)-2); i < len(refs); i++ {
				if iv.EarliestNS <= after[i] && iv.LatestNS >= before[i] {
					held = true
				}
			}
			if !held {
				outside++
			}
		}
	}
	watch(4 * time.Second)
	if synced == 0 {
		t.Fatal("the follower never synchronized to the reference")
	}
	stopRef()
	ref2, stopRef2 := startRef("+500ms")
	refs = append(refs, ref2)
	watch(4 * time.Second)
	stopRef2()
	ref3, stopRef3 := startRef("-257ms")
	refs = append(refs, ref3)
	watch(4 * time.Second)
	stopRef3()
	if abl == (discipline.Ablation{}) {
		// Both steps were noticed and exported: the forward one as a fault,
		// the backward one raising the floor.
		if f, r := testutil.ToFloat64(fol.m.faults), testutil.ToFloat64(fol.m.floorRaises); f < 1 || r < 1 {
			t.Errorf("metrics: %v selection faults, %v floor raises; want both ≥ 1", f, r)
		}
	}
	return outside, backwards, synced
}

func TestLoneReferenceRestartsAheadAndBehind(t *testing.T) {
	if testing.Short() {
		t.Skip("12 s of real time")
	}
	outside, backwards, synced := refStepRun(t, discipline.Ablation{})
	t.Logf("%d synchronized reads, %d outside, %d backwards", synced, outside, backwards)
	if outside != 0 || backwards != 0 {
		t.Fatalf("%d of %d synchronized reads held neither the reference's old nor new time; %d reads went backwards", outside, synced, backwards)
	}
}

// Negative control: without the floor, the reference stepping back takes
// TrueTime backwards on real daemons.
func TestLoneReferenceStepBackWithoutFloor(t *testing.T) {
	if testing.Short() {
		t.Skip("12 s of real time")
	}
	outside, backwards, synced := refStepRun(t, discipline.Ablation{OmitFloor: true})
	t.Logf("%d synchronized reads, %d outside, %d backwards", synced, outside, backwards)
	if backwards == 0 {
		t.Fatal("without the floor, a reference stepping back 757 ms must take some read backwards")
	}
}
