package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	timev1 "github.com/meridiantime/meridian/api/meridian/time/v1"
	"github.com/meridiantime/meridian/clock"
	"github.com/meridiantime/meridian/clock/hostclock"
	"github.com/meridiantime/meridian/truetime"
	"github.com/meridiantime/meridian/truetime/shm"
)

func runCtl(args ...string) (string, error) {
	var out, errb bytes.Buffer
	cmd := newRoot(&out, &errb)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func publish(t *testing.T, e truetime.Estimate) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tt.shm")
	w, err := shm.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	raw := hostclock.MonoRawNS()
	m := clock.Linear{BaseNS: 1_800_000_000e9, BaseRawNS: raw}
	e.LocalNS, e.LastSampleNS = m.At(raw), m.At(raw)
	w.Publish(m, e)
	return p
}

func TestNowJSON(t *testing.T) {
	p := publish(t, truetime.Estimate{Status: truetime.Synchronized, Eps0NS: 5000, DriftBoundPPB: 15000, MaxErrorNS: 1e9, Stratum: 2})
	out, err := runCtl("--shm", p, "now", "--json")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := decodeDoc(out)
	if err != nil {
		t.Fatal(err)
	}
	n := doc.GetInterval()
	if n.GetStatus() != timev1.ClockStatus_CLOCK_STATUS_SYNCHRONIZED || n.LatestNs-n.EarliestNs < 10000 || n.EarliestNs < 1_800_000_000e9-10000 {
		t.Fatalf("interval %v", n)
	}
	if out, err := runCtl("--shm", p, "now"); err != nil || !strings.Contains(out, "synchronized") {
		t.Fatalf("table: %q %v", out, err)
	}
}

func TestStatusJSON(t *testing.T) {
	p := publish(t, truetime.Estimate{Status: truetime.Synchronized, Eps0NS: 5000, OffsetNS: 42, FreqPPB: -1234.5, MaxErrorNS: 1e9, Stratum: 3, RefID: 0x4c4f434c,
		DriftBoundPPB: 15000, FreqUncPPB: 500})
	out, err := runCtl("--shm", p, "status", "--json")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := decodeDoc(out)
	if err != nil {
		t.Fatal(err)
	}
	s := doc.GetStatus()
	if s.GetStatus() != timev1.ClockStatus_CLOCK_STATUS_SYNCHRONIZED || s.OffsetNs != 42 || s.FrequencyPpb != -1234.5 || s.Stratum != 3 ||
		s.ReferenceId != "LOCL" || s.ErrorBoundNs < 5000 || s.LastSampleAgeNs < 0 || s.DriftBoundPpb != 15000 || s.FrequencyUncertaintyPpb != 500 {
		t.Fatalf("%v", s)
	}
	// What only the daemon knows is left unset over shm.
	if s.Clock != "" || s.UptimeNs != 0 || s.Reason != "" {
		t.Fatalf("shm status claims the daemon's clock, uptime or reason: %v", s)
	}
	if out, err := runCtl("--shm", p, "status"); err != nil || !strings.Contains(out, "error bound") {
		t.Fatalf("table: %q %v", out, err)
	}
}

func TestUnsynchronizedExits1(t *testing.T) {
	p := publish(t, truetime.Estimate{})
	out, err := runCtl("--shm", p, "now", "--json")
	var e exitError
	if !errors.As(err, &e) || e.code != 1 || !strings.Contains(e.msg, "unsynchronized") {
		t.Fatalf("err %v", err)
	}
	if doc, err := decodeDoc(out); err != nil || doc.GetInterval().GetStatus() != timev1.ClockStatus_CLOCK_STATUS_UNSYNCHRONIZED || doc.GetInterval().GetLatestNs() != 0 {
		t.Fatalf("json %q %v", out, err)
	}
	out, err = runCtl("--shm", p, "status", "--json")
	if doc, derr := decodeDoc(out); err != nil || derr != nil || doc.GetStatus().GetStatus() != timev1.ClockStatus_CLOCK_STATUS_UNSYNCHRONIZED || doc.GetStatus().Interval != nil {
		t.Fatalf("status of an unsynchronized clock: %q %v %v", out, err, derr)
	}
}

// A segment behind a symlink (another user may have planted it) is refused
// with exit status 2 and a message saying why.
func TestUntrustedShmRefused(t *testing.T) {
	p := publish(t, truetime.Estimate{Status: truetime.Synchronized, Eps0NS: 5000, MaxErrorNS: 1e9})
	link := filepath.Join(t.TempDir(), "link.shm")
	if err := os.Symlink(p, link); err != nil {
		t.Fatal(err)
	}
	_, err := runCtl("--shm", link, "now")
	var e exitError
	if !errors.As(err, &e) || e.code != 2 || !strings.Contains(e.msg, "refusing") || !strings.Contains(e.msg, "symlink") {
		t.Fatalf("err %v", err)
	}
	if _, err := runCtl("--shm", p, "now"); err != nil {
		t.Fatalf("the real path: %v", err)
	}
}

func TestMissingShm(t *testing.T) {
	_, err := runCtl("--shm", filepath.Join(t.TempDir(), "none.shm"), "now")
	var e exitError
	if !errors.As(err, &e) || e.code != 2 || !strings.Contains(e.msg, "is meridiand running?") {
		t.Fatalf("err %v", err)
	}
}

func TestHelpHasExamples(t *testing.T) {
	out, err := runCtl("--help")
	if err != nil || !strings.Contains(out, "meridianctl now --json") {
		t.Fatalf("%q %v", out, err)
	}
}

// Disrupted and stopped segments: now exits 1 naming the cause; status
// shows the status and the writer's liveness.
func TestDisruptedAndStoppedShm(t *testing.T) {
	p := publish(t, truetime.Estimate{Status: truetime.Disrupted, Eps0NS: 5000, MaxErrorNS: 1e9})
	out, err := runCtl("--shm", p, "now", "--json")
	var e exitError
	if !errors.As(err, &e) || e.code != 1 || !strings.Contains(e.msg, "disrupted") || !strings.Contains(out, `"status":"CLOCK_STATUS_DISRUPTED"`) {
		t.Fatalf("now on a disrupted segment: %q %v", out, err)
	}
	out, err = runCtl("--shm", p, "status")
	if err != nil || !strings.Contains(out, "disrupted") || !strings.Contains(out, "writer") || strings.Contains(out, "error bound") {
		t.Fatalf("status on a disrupted segment: %q %v", out, err)
	}

	// A cleanly stopped writer.
	q := filepath.Join(t.TempDir(), "tt.shm")
	w, err := shm.Create(q)
	if err != nil {
		t.Fatal(err)
	}
	raw := hostclock.MonoRawNS()
	m := clock.Linear{BaseNS: 1_800_000_000e9, BaseRawNS: raw}
	w.Publish(m, truetime.Estimate{Status: truetime.Synchronized, LocalNS: m.At(raw), LastSampleNS: m.At(raw), Eps0NS: 5000, MaxErrorNS: 1e9})
	if _, err := runCtl("--shm", q, "now"); err != nil {
		t.Fatalf("live: %v", err)
	}
	w.Close()
	if _, err := runCtl("--shm", q, "now"); !errors.As(err, &e) || e.code != 1 || !strings.Contains(e.msg, "unsynchronized") {
		t.Fatalf("now after a clean stop: %v", err)
	}
	out, err = runCtl("--shm", q, "status", "--json")
	doc, derr := decodeDoc(out)
	if s := doc.GetStatus(); err != nil || derr != nil || s.GetStatus() != timev1.ClockStatus_CLOCK_STATUS_UNSYNCHRONIZED || !strings.Contains(s.GetReason(), "meridiand stopped") {
		t.Fatalf("status after a clean stop: %q %v %v", out, err, derr)
	}
	if out, err := runCtl("--shm", q, "status"); err != nil || !strings.Contains(out, "stopped (last heartbeat") {
		t.Fatalf("status table after a clean stop: %q %v", out, err)
	}
}

// A local reference is labelled as such: its intervals are this host's
// clock, not UTC.
func TestStatusLabelsLocalReference(t *testing.T) {
	p := publish(t, truetime.Estimate{Status: truetime.Synchronized, Eps0NS: 5000, MaxErrorNS: 1e9, Stratum: 10, RefID: truetime.RefIDLocal})
	out, err := runCtl("--shm", p, "status")
	if err != nil || !strings.Contains(out, "LOCL (local reference: this host's clock, not UTC)") {
		t.Fatalf("status: %q %v", out, err)
	}
}
