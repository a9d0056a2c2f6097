package daemon

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meridiantime/meridian/clock/hostclock"
	"github.com/meridiantime/meridian/truetime"
)

// A suspend noticed at a publish (CLOCK_BOOTTIME ran 10 s ahead of
// CLOCK_MONOTONIC_RAW) makes the daemon's reads fail at once and voids what
// the discipline measured before it: the clock re-acquires from new samples
// only, and is synchronized again within a few polls.
func TestSuspendVoidsSamples(t *testing.T) {
	addr := freeUDPAddr(t)
	_, cancelRef, doneRef := startDaemon(t, fmt.Sprintf("local_stratum: 1\nntp_server: {listen: [%q]}\n", addr))
	defer func() { cancelRef(); <-doneRef }()

	var sleptNS atomic.Int64
	d, cancel, done := startDaemonOpt(t, fmt.Sprintf("sources: [{type: ntp, address: %q, poll: 250ms}]\n", addr),
		Options{Tick: 20 * time.Millisecond, ShmClocks: func() (int64, int64) {
			raw, boot := hostclock.BootRawNS()
			return raw, boot + sleptNS.Load()
		}})
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitStatus := func(what string, ok func(err error) bool, within time.Duration) {
		t.Helper()
		for end := time.Now().Add(within); ; time.Sleep(5 * time.Millisecond) {
			_, err := d.Clock().Now()
			if ok(err) {
				return
			}
			if time.Now().After(end) {
				t.Fatalf("not %s within %v: %v", what, within, err)
			}
		}
	}
	synced := func(err error) bool { return err == nil }
	waitStatus("synchronized", synced, 10*time.Second)
	samples := func() int {
		d.reportsMu.Lock()
		defer d.reportsMu.Unlock()
		n := 0
		for _, r := range d.reports {
			n += r.Samples
		}
		return n
	}
	for end := time.Now().Add(10 * time.Second); samples() < 4; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("the filter never filled: %d samples", samples())
		}
	}
	before := d.shm.Disruptions()
	sleptNS.Add(int64(10 * time.Second)) // the host slept 10 s
	// Reads fail at once (the in-process clock runs the writer's check)...
	if _, err := d.Clock().Now(); !errors.Is(err, truetime.ErrUnsynchronized) {
		t.Fatalf("read right after the resume: %v, want an error", err)
	}
	// ...the next publish notices it and the discipline forgets its samples...
	waitStatus("disrupted or unsynchronized", func(err error) bool { return err != nil && d.shm.Disruptions() > before }, 2*time.Second)
	// (the filter held ≥ 4 samples; right after, it holds what arrived since)
	low := false
	for end := time.Now().Add(time.Second); !low && time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		low = samples() <= 1
	}
	if !low {
		t.Fatalf("samples from before the suspend were kept: %d", samples())
	}
	// ...and new samples bring it back. (Without Loop.Disrupted in the
	// daemon's publisher (Disrupted) the filter keeps its 8 samples from
	// before: this fails.)
	waitStatus("synchronized again", synced, 10*time.Second)
}
