package shm

import (
	"github.com/meridiantime/meridian/truetime"

	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meridiantime/meridian/clock"
	"github.com/meridiantime/meridian/clock/hostclock"
)

// fakeHost is a host whose clocks the test moves: CLOCK_MONOTONIC_RAW,
// CLOCK_BOOTTIME and true time. Running advances all three; a suspend (or a
// VM pause that stops the guest's counter) advances only boottime and true
// time.
//
// w2m is the kernel's wall_to_monotonic offset: a resume injects the sleep
// into CLOCK_REALTIME and CLOCK_BOOTTIME but not CLOCK_MONOTONIC, so it
// falls by the sleep's length. bootReads counts CLOCK_BOOTTIME reads.
type fakeHost struct {
	raw, boot, truth, w2m int64
	bootReads             int
}

func newFakeHost() *fakeHost {
	return &fakeHost{raw: 1_000e9, boot: 1_500e9, truth: 1_800_000_000e9, w2m: -1_799_999_000e9}
}

func (h *fakeHost) clocks() (int64, int64) { h.bootReads++; return h.raw, h.boot }
func (h *fakeHost) rawW2M() (int64, int64) { return h.raw, h.w2m }
func (h *fakeHost) run(d time.Duration)    { h.raw += int64(d); h.boot += int64(d); h.truth += int64(d) }
func (h *fakeHost) suspend(d time.Duration) {
	h.boot += int64(d)
	h.truth += int64(d)
	h.w2m -= int64(d)
}

const fakeOffsetNS = 300_000 // local − true at publish

// model is the virtual clock on the fake host: it reads true time plus
// fakeOffsetNS at the current raw instant and runs at the raw clock's rate.
func (h *fakeHost) model() clock.Linear {
	return clock.Linear{BaseNS: h.truth + fakeOffsetNS, BaseRawNS: h.raw}
}

// estimate is what a discipline that just took a sample would publish.
func (h *fakeHost) estimate(m clock.Linear) truetime.Estimate {
	local := m.At(h.raw)
	return truetime.Estimate{Status: truetime.Synchronized, LocalNS: local, OffsetNS: fakeOffsetNS, Eps0NS: 1_000_000,
		DriftBoundPPB: 15_000, MaxErrorNS: int64(time.Second), HoldoverAfterNS: int64(64 * time.Second), LastSampleNS: local}
}

func contains(iv truetime.Interval, truth int64) bool {
	return iv.EarliestNS <= truth && truth <= iv.LatestNS
}

func fakePair(t *testing.T, h *fakeHost, void time.Duration) (*Writer, *Reader) {
	t.Helper()
	return fakePairWith(t, h, void, nil)
}

func fakePairWith(t *testing.T, h *fakeHost, void time.Duration, w2m func() (int64, int64)) (*Writer, *Reader) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tt.shm")
	w, err := CreateWith(path, Options{Clocks: h.clocks, WallToMono: w2m, VoidAfter: void, VMClock: "-"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	r, err := OpenWith(path, Options{Clocks: h.clocks, WallToMono: w2m, VMClock: "-"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return w, r
}

// A writer that stops publishing (killed, hung): reads stay valid until
// void_after, then return unsynchronized. Negative control: without the
// check, the same reads still claim an interval hours later (the bug: a
// killed daemon's segment read "synchronized", then holdover, for ~18 h).
func TestShmVoidAfterDeadWriter(t *testing.T) {
	h := newFakeHost()
	w, r := fakePair(t, h, 5*time.Second)
	m := h.model()
	w.Publish(m, h.estimate(m))
	for _, step := range []time.Duration{time.Second, 3 * time.Second, 999 * time.Millisecond} {
		h.run(step)
		iv, err := r.Now()
		if err != nil || iv.Status != truetime.Synchronized || !contains(iv, h.truth) {
			t.Fatalf("within the void window: %+v %v (true %d)", iv, err, h.truth)
		}
	}
	h.run(time.Millisecond) // exactly void_after
	if iv, err := r.Now(); !errors.Is(err, truetime.ErrUnsynchronized) || iv.Status != truetime.Unsynchronized {
		t.Fatalf("at void_after: %+v %v", iv, err)
	}
	in, err := r.Inspect()
	if err != nil || in.Verdict != truetime.Void {
		t.Fatalf("Inspect: %+v %v", in, err)
	}
	// A new publish revives the segment.
	m = h.model()
	w.Publish(m, h.estimate(m))
	if _, err := r.Now(); err != nil {
		t.Fatalf("after a new publish: %v", err)
	}

	// Negative control: the liveness check off.
	h.run(time.Hour)
	r.noJudge = true
	iv, err := r.Now()
	if err != nil {
		t.Fatalf("negative control: the stale segment should still read as valid without the check: %v", err)
	}
	r.noJudge = false
	if _, err := r.Now(); !errors.Is(err, truetime.ErrUnsynchronized) {
		t.Fatalf("check back on: %v", err)
	}
	t.Logf("without the check, 1 h after the writer stopped: status %v, ε %v", iv.Status, time.Duration(iv.EpsNS()))
}

// A clean Close marks the segment stopped: readers get unsynchronized at
// once, with real clocks, long before void_after.
func TestShmCloseMarksStopped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tt.shm")
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	raw := hostclock.MonoRawNS()
	m := clock.Linear{BaseNS: 1_800_000_000e9, BaseRawNS: raw}
	w.Publish(m, truetime.Estimate{Status: truetime.Synchronized, LocalNS: m.At(raw), Eps0NS: 1000, DriftBoundPPB: 15000, MaxErrorNS: 1e9, LastSampleNS: m.At(raw)})
	if _, err := r.Now(); err != nil {
		t.Fatalf("live writer: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if iv, err := r.Now(); !errors.Is(err, truetime.ErrUnsynchronized) || iv.Status != truetime.Unsynchronized {
		t.Fatalf("after Close: %+v %v", iv, err)
	}
	in, err := r.Inspect()
	if err != nil || in.Verdict != truetime.Void || in.Stamp.VoidAfterNS != 0 {
		t.Fatalf("Inspect after Close: %+v %v", in, err)
	}
	// The lock went with Close: a restarted writer takes the segment.
	w2, err := Create(path)
	if err != nil {
		t.Fatalf("restart after Close: %v", err)
	}
	w2.Close()
}

// A suspend between the publish and the read (the raw clock stopped, so the
// virtual clock is behind true time by the gap): every read either contains
// true time or fails — unsynchronized when the gap outlasts void_after
// (measured in CLOCK_BOOTTIME), disrupted when it does not. Negative
// control: without the check the reads succeed and miss true time by the
// gap.
func TestShmSuspendReaderSide(t *testing.T) {
	for _, tc := range []struct {
		gap, void time.Duration
		want      truetime.Status
		wantErr   error
	}{
		{10 * time.Second, 5 * time.Second, truetime.Unsynchronized, truetime.ErrUnsynchronized},
		{time.Hour, 5 * time.Second, truetime.Unsynchronized, truetime.ErrUnsynchronized},
		{10 * time.Second, 2 * time.Hour, truetime.Disrupted, truetime.ErrDisrupted},
		{time.Hour, 2 * time.Hour, truetime.Disrupted, truetime.ErrDisrupted},
		{3 * time.Second, 5 * time.Second, truetime.Disrupted, truetime.ErrDisrupted},
	} {
		h := newFakeHost()
		w, r := fakePair(t, h, tc.void)
		m := h.model()
		w.Publish(m, h.estimate(m))
		h.run(400 * time.Millisecond)
		if iv, err := r.Now(); err != nil || !contains(iv, h.truth) {
			t.Fatalf("%v: before the suspend: %+v %v", tc, iv, err)
		}
		h.suspend(tc.gap)
		h.run(100 * time.Millisecond)
		iv, err := r.Now()
		if err == nil && !contains(iv, h.truth) {
			t.Fatalf("%v: containment violation: [%d, %d] true %d", tc, iv.EarliestNS, iv.LatestNS, h.truth)
		}
		if !errors.Is(err, tc.wantErr) || iv.Status != tc.want {
			t.Fatalf("%v: got %v %v, want %v %v", tc, iv.Status, err, tc.want, tc.wantErr)
		}
		if !errors.Is(err, truetime.ErrUnsynchronized) {
			t.Fatalf("%v: %v must also match truetime.ErrUnsynchronized", tc, err)
		}
		if iv2, err2 := r.NowAt(h.raw, h.boot); iv2 != iv || !errors.Is(err2, tc.wantErr) {
			t.Fatalf("%v: NowAt %+v %v differs from Now %+v %v", tc, iv2, err2, iv, err)
		}
		// Negative control.
		r.noJudge = true
		iv, err = r.Now()
		r.noJudge = false
		if err != nil || contains(iv, h.truth) {
			t.Fatalf("%v: negative control: without the check the read should succeed and miss true time: %+v %v", tc, iv, err)
		}
		if miss := h.truth - iv.LatestNS; miss < int64(tc.gap)-int64(2*time.Millisecond) {
			t.Fatalf("%v: negative control misses by %v, want about the gap", tc, time.Duration(miss))
		}
	}
}

// The publish side: a daemon resuming from a suspend publishes the same
// estimate it had (its discipline saw nothing). The writer's truetime.Guard notices
// boottime ran ahead of the raw clock since the previous publish and
// publishes truetime.Disrupted until an estimate carries a sample taken after the
// resume. Negative control: without the truetime.Guard the resumed daemon publishes
// "synchronized" intervals 10 s wrong.
func TestShmSuspendWriterSide(t *testing.T) {
	for _, gap := range []time.Duration{10 * time.Second, time.Hour} {
		for _, guard := range []bool{true, false} {
			h := newFakeHost()
			w, r := fakePair(t, h, 5*time.Second)
			w.noGuard = !guard
			m := h.model()
			e := h.estimate(m)
			w.Publish(m, e)
			h.run(time.Second)
			w.Publish(m, e)
			h.suspend(gap)
			h.run(300 * time.Millisecond)
			got := w.Publish(m, e) // the first tick after the resume
			iv, err := r.Now()
			if !guard {
				if err != nil || contains(iv, h.truth) || got.Status != truetime.Synchronized {
					t.Fatalf("%v: negative control: want a synchronized read missing true time, got %+v %v", gap, iv, err)
				}
				continue
			}
			if err == nil && !contains(iv, h.truth) {
				t.Fatalf("%v: containment violation after resume: %+v true %d", gap, iv, h.truth)
			}
			if got.Status != truetime.Disrupted || !errors.Is(err, truetime.ErrDisrupted) || iv.Status != truetime.Disrupted {
				t.Fatalf("%v: after resume: published %v, read %v %v", gap, got.Status, iv.Status, err)
			}
			if held, g := w.Disruption(); !held || g < int64(gap) || g > int64(gap)+int64(time.Millisecond) {
				t.Fatalf("%v: Disruption() = %v %v", gap, held, time.Duration(g))
			}
			// More ticks with the pre-suspend estimate: still disrupted.
			h.run(time.Second)
			if got := w.Heartbeat(); got.Status != truetime.Disrupted {
				t.Fatalf("%v: a tick without a new sample released the hold", gap)
			}
			// A sample after the resume: the discipline now knows the
			// clock is behind by the gap (offset = local − true).
			h.run(time.Second)
			e2 := h.estimate(m)
			e2.OffsetNS = float64(m.At(h.raw) - h.truth)
			if got := w.Publish(m, e2); got.Status != truetime.Synchronized {
				t.Fatalf("%v: a good sample did not release the hold: %v", gap, got.Status)
			}
			if iv, err := r.Now(); err != nil || !contains(iv, h.truth) {
				t.Fatalf("%v: after the good sample: %+v %v (true %d)", gap, iv, err, h.truth)
			}
		}
	}
}

func TestJudge(t *testing.T) {
	s := truetime.Stamp{RawNS: 100e9, BootNS: 200e9, VoidAfterNS: 205e9, GapSlackNS: 1e6, GapTolPPB: 500_000, Marker: 7}
	for _, tc := range []struct {
		name      string
		raw, boot int64
		marker    uint64
		want      truetime.Verdict
	}{
		{"fresh", 101e9, 201e9, 7, truetime.Live},
		{"rate difference within 500 ppm + slack", 104e9, 204e9 + 2_900_000, 7, truetime.Live},
		{"gap just over the tolerance", 104e9, 204e9 + 3_100_000, 7, truetime.Gap},
		{"boottime behind raw (slew), never a gap", 104e9 + 5e6, 204e9, 7, truetime.Live},
		{"void_after reached", 104e9, 205e9, 7, truetime.Void},
		{"boottime before the stamp (another boot)", 1e9, 150e9, 7, truetime.Void},
		{"raw before the stamp (another boot)", 50e9, 201e9, 7, truetime.Void},
		{"reads just before the publish's stamp", 100e9 - 500, 200e9 - 500, 7, truetime.Live},
		{"VMClock marker moved", 101e9, 201e9, 9, truetime.Gap},
		{"reader without the device", 101e9, 201e9, 0, truetime.Live},
	} {
		if got := truetime.Judge(s, tc.raw, tc.boot, tc.marker); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := truetime.Judge(truetime.Stamp{RawNS: 1, BootNS: 1, VoidAfterNS: 10, GapSlackNS: 1, GapTolPPB: 1}, 2, 2, 5); got != truetime.Live {
		t.Errorf("writer without the device: %v", got)
	}
	if got := truetime.Judge(truetime.Stamp{RawNS: 1, BootNS: 1}, 2, 2, 0); got != truetime.Void {
		t.Errorf("stopped writer (void_after 0): %v", got)
	}
}

// writeVMClock writes a fake VMClock page with the given markers.
func writeVMClock(t *testing.T, path string, disruption, gen uint64) {
	t.Helper()
	b := make([]byte, os.Getpagesize())
	binary.LittleEndian.PutUint32(b[0:], vmclockMagic)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)))
	binary.LittleEndian.PutUint16(b[8:], 1)
	binary.LittleEndian.PutUint64(b[vmclockMarkerOff:], disruption)
	binary.LittleEndian.PutUint64(b[vmclockFlagsOff:], vmclockFlagGen)
	binary.LittleEndian.PutUint64(b[vmclockGenOff:], gen)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, 0); err != nil {
		t.Fatal(err)
	}
}

// A live migration or snapshot restore changes the VMClock markers: the
// raw clock may have jumped with no boottime gap to show it. Readers report
// disrupted at once; the writer holds truetime.Disrupted from its next publish until
// a new sample. Negative control: without the device the same event goes
// unnoticed.
func TestShmVMClockDisruption(t *testing.T) {
	for _, change := range []struct {
		name       string
		dm, gen    uint64
		withDevice bool
	}{
		{"migration", 2, 1, true},
		{"snapshot restore", 1, 2, true},
		{"migration, no device (negative control)", 2, 1, false},
	} {
		h := newFakeHost()
		dev := filepath.Join(t.TempDir(), "vmclock0")
		writeVMClock(t, dev, 1, 1)
		vm := dev
		if !change.withDevice {
			vm = "-"
		}
		path := filepath.Join(t.TempDir(), "tt.shm")
		w, err := CreateWith(path, Options{Clocks: h.clocks, VMClock: vm})
		if err != nil {
			t.Fatal(err)
		}
		r, err := OpenWith(path, Options{Clocks: h.clocks, VMClock: vm})
		if err != nil {
			t.Fatal(err)
		}
		m := h.model()
		e := h.estimate(m)
		w.Publish(m, e)
		h.run(time.Second)
		if _, err := r.Now(); err != nil {
			t.Fatalf("%s: before: %v", change.name, err)
		}
		writeVMClock(t, dev, change.dm, change.gen)
		_, rerr := r.Now()
		h.run(time.Second)
		pub := w.Publish(m, e)
		if change.withDevice {
			if !errors.Is(rerr, truetime.ErrDisrupted) || pub.Status != truetime.Disrupted {
				t.Fatalf("%s: reader %v, published %v", change.name, rerr, pub.Status)
			}
		} else if rerr != nil || pub.Status != truetime.Synchronized {
			t.Fatalf("%s: without the device nothing can notice: reader %v, published %v", change.name, rerr, pub.Status)
		}
		r.Close()
		w.Close()
	}
}

type fakeLocal struct {
	h *fakeHost
	m clock.Linear
}

func (f fakeLocal) NowNS() int64 { return f.m.At(f.h.raw) }

// In-process readers (truetime.Clock, which serves gRPC and NTP) run the
// writer's Check: right after a resume, before the next publish, they fail
// as shm readers do, and a stalled publisher voids them too. Negative
// control: without the check the in-process read misses true time by the
// gap.
func TestClockCheckAfterResume(t *testing.T) {
	for _, tc := range []struct {
		gap, void time.Duration
		want      error
	}{
		{10 * time.Second, 5 * time.Second, truetime.ErrUnsynchronized},
		{time.Hour, 5 * time.Second, truetime.ErrUnsynchronized},
		{10 * time.Second, 2 * time.Hour, truetime.ErrDisrupted},
	} {
		for _, check := range []bool{true, false} {
			h := newFakeHost()
			w, _ := fakePair(t, h, tc.void)
			m := h.model()
			e := h.estimate(m)
			c := truetime.NewClock(fakeLocal{h, m}, hostclock.RealTimers())
			if check {
				c.SetCheck(w.Check)
			}
			c.SetEstimate(w.Publish(m, e))
			h.run(500 * time.Millisecond)
			if iv, err := c.Now(); err != nil || !contains(iv, h.truth) {
				t.Fatalf("%v: before the suspend: %+v %v", tc, iv, err)
			}
			h.suspend(tc.gap)
			h.run(10 * time.Millisecond)
			iv, err := c.Now()
			if !check {
				if err != nil || contains(iv, h.truth) {
					t.Fatalf("%v: negative control: want a read that misses true time, got %+v %v", tc, iv, err)
				}
				continue
			}
			if err == nil && !contains(iv, h.truth) {
				t.Fatalf("%v: containment violation: %+v true %d", tc, iv, h.truth)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("%v: %v, want %v", tc, err, tc.want)
			}
		}
	}
	// After Close, Check reports the stop and does not touch the unmapped
	// segment.
	h := newFakeHost()
	w, _ := fakePair(t, h, 5*time.Second)
	w.Close()
	if err := w.Check(); !errors.Is(err, truetime.ErrUnsynchronized) {
		t.Fatalf("Check after Close: %v", err)
	}
}

// Publisher hands the in-process truetime.Clock the estimate as the writer published
// it: after a resume both say truetime.Disrupted, not only the segment.
func TestPublisherCarriesDisruption(t *testing.T) {
	h := newFakeHost()
	w, r := fakePair(t, h, 2*time.Hour)
	m := h.model()
	c := truetime.NewClock(fakeLocal{h, m}, hostclock.RealTimers())
	p := Publisher{Clock: c, Shm: w, Model: func() clock.Linear { return m }}
	e := h.estimate(m)
	p.Publish(e)
	h.run(time.Second)
	h.suspend(30 * time.Second)
	pub := p.Publish(e)
	if got := c.Estimate().Status; got != truetime.Disrupted || pub.Status != truetime.Disrupted {
		t.Fatalf("in-process estimate after resume: %v", got)
	}
	if _, err := c.Now(); !errors.Is(err, truetime.ErrDisrupted) {
		t.Fatalf("in-process read: %v", err)
	}
	if _, err := r.Now(); !errors.Is(err, truetime.ErrDisrupted) {
		t.Fatalf("shm read: %v", err)
	}
}

// A publisher preempted between its clock reads (5 ms, far above the
// 1.5 ms tolerance over a 1 s tick) is not a suspend: the gap is bounded
// from below with the raw reads that bracket the boottime read. Negative
// control: without the bracket (raw1 = raw0) the same readings look like a
// 5 ms gap and the clock would read disrupted until the next sample.
func TestGuardPreemptionIsNotAGap(t *testing.T) {
	_, e := sampleEstimate(1)
	e.Status, e.LastSampleNS = truetime.Synchronized, 0 // no sample after the publishes below
	for _, bracket := range []bool{true, false} {
		var g truetime.Guard
		g.Check(100e9, 200e9, 100e9, 0, 1, e) // a prompt publish
		// One second later, preempted 5 ms between the raw and boot reads.
		const ms = int64(time.Millisecond)
		raw0, boot, raw1 := int64(101e9), int64(201e9)+5*ms, int64(101e9)+5*ms
		if !bracket {
			raw1 = raw0
		}
		out, gap := g.Check(raw0, boot, raw1, 0, 2, e)
		if bracket && (out.Status != truetime.Synchronized || gap != 0) {
			t.Fatalf("with the bracket: %v gap %v", out.Status, time.Duration(gap))
		}
		if !bracket && out.Status != truetime.Disrupted {
			t.Fatalf("negative control: without the bracket the preemption should look like a gap: %v", out.Status)
		}
	}
	// A real 2 s suspend is still seen through the bracket.
	const ms = int64(time.Millisecond)
	var g truetime.Guard
	g.Check(100e9, 200e9, 100e9, 0, 1, e)
	if out, gap := g.Check(101e9, 203e9, 101e9+ms, 0, 2, e); out.Status != truetime.Disrupted || gap < 2e9-ms {
		t.Fatalf("2 s suspend: %v gap %v", out.Status, time.Duration(gap))
	}
}

// fakePairFast is fakePair with the kernel's wall_to_monotonic offset
// faked too, so the reader takes the fast path (truetime.JudgeFast).
func fakePairFast(t *testing.T, h *fakeHost, void time.Duration) (*Writer, *Reader) {
	t.Helper()
	return fakePairWith(t, h, void, h.rawW2M)
}

// The reader's fast path (truetime.JudgeFast): while the kernel's
// wall_to_monotonic offset is the one recorded at the publish, a read
// needs no CLOCK_BOOTTIME and still expires with the heartbeat; a resume
// moves the offset, and the read falls back to CLOCK_BOOTTIME and fails as
// the careful path does (TestShmSuspendReaderSide's table); a tick between
// the two coarse reads only costs the careful path. Negative control: a
// resume the offset did not show (a detector that missed it) is read as
// live, and the interval misses true time by the gap: the offset is what
// guards the fast path.
func TestShmFastPathJudgesWithoutBoottime(t *testing.T) {
	h := newFakeHost()
	w, r := fakePairFast(t, h, 5*time.Second)
	m := h.model()
	w.Publish(m, h.estimate(m))
	h.bootReads = 0
	h.run(400 * time.Millisecond)
	if iv, err := r.Now(); err != nil || !contains(iv, h.truth) || h.bootReads != 0 {
		t.Fatalf("live read: %+v %v, %d boottime reads (want 0)", iv, err, h.bootReads)
	}
	// A tick between the coarse reads: one tick off, the careful path.
	h.w2m += 4_000_000
	if iv, err := r.Now(); err != nil || !contains(iv, h.truth) || h.bootReads != 1 {
		t.Fatalf("straddled tick: %+v %v, %d boottime reads (want 1)", iv, err, h.bootReads)
	}
	h.w2m -= 4_000_000
	// The heartbeat expires by the raw clock, never later than by boottime.
	h.run(4500 * time.Millisecond) // 4.9 s after the publish
	if _, err := r.Now(); err != nil {
		t.Fatalf("4.9 s after the publish (void after 5 s): %v", err)
	}
	h.run(100 * time.Millisecond)
	if iv, err := r.Now(); !errors.Is(err, truetime.ErrUnsynchronized) || errors.Is(err, truetime.ErrDisrupted) || iv.Status != truetime.Unsynchronized || h.bootReads != 1 {
		t.Fatalf("5 s after the publish: %+v %v, %d boottime reads (want void by the raw clock alone)", iv, err, h.bootReads)
	}

	for _, tc := range []struct {
		gap, void time.Duration
		want      truetime.Status
	}{
		{10 * time.Second, 5 * time.Second, truetime.Unsynchronized},
		{time.Hour, 2 * time.Hour, truetime.Disrupted},
		{3 * time.Second, 5 * time.Second, truetime.Disrupted},
		{50 * time.Millisecond, 5 * time.Second, truetime.Disrupted},
	} {
		h := newFakeHost()
		w, r := fakePairFast(t, h, tc.void)
		m := h.model()
		w.Publish(m, h.estimate(m))
		h.run(400 * time.Millisecond)
		h.suspend(tc.gap)
		h.run(100 * time.Millisecond)
		h.bootReads = 0
		iv, err := r.Now()
		if err == nil && !contains(iv, h.truth) {
			t.Fatalf("%v: containment violation: [%d, %d] true %d", tc, iv.EarliestNS, iv.LatestNS, h.truth)
		}
		if iv.Status != tc.want || err == nil || h.bootReads != 1 {
			t.Fatalf("%v: got %v %v after %d boottime reads, want %v after 1", tc, iv.Status, err, h.bootReads, tc.want)
		}
		// Negative control: the resume left the offset as it was.
		h.w2m += int64(tc.gap)
		iv, err = r.Now()
		if err != nil || contains(iv, h.truth) {
			t.Fatalf("%v: negative control: with the offset unchanged the read should succeed and miss true time: %+v %v", tc, iv, err)
		}
	}
}
