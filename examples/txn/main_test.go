package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/meridiantime/meridian/clock"
	"github.com/meridiantime/meridian/clock/hostclock"
	"github.com/meridiantime/meridian/internal/testdaemon"
	"github.com/meridiantime/meridian/truetime"
	"github.com/meridiantime/meridian/truetime/shm"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The example over gRPC to a TimeService on a unix socket: transfers
// commit, each acknowledged after TrueTime passed its timestamp, and the
// audit sees the total.
func TestExampleOverGRPC(t *testing.T) {
	addr, tt := testdaemon.ServeWall(t, nil)
	tt.SetEstimate(testdaemon.WallEstimate(200 * time.Microsecond))
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--time", "grpc", "--grpc", addr, "--transfers", "20"}, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "transfers committed") || !strings.Contains(out.String(), "total 1000, as opened") {
		t.Fatalf("output:\n%s", out.String())
	}
	t.Log(out.String())
}

// The example over a shared-memory segment published the way meridiand
// publishes it.
func TestExampleOverShm(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tt.shm")
	w, err := shm.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	now := testdaemon.Wall{}.NowNS()
	e := testdaemon.WallEstimate(200 * time.Microsecond)
	e.LocalNS, e.LastSampleNS = now, now
	w.Publish(clock.Linear{BaseNS: now, BaseRawNS: hostclock.MonoRawNS()}, e)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--time", "shm", "--shm", path, "--transfers", "20"}, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "TrueTime over shm") || !strings.Contains(out.String(), "total 1000, as opened") {
		t.Fatalf("output:\n%s", out.String())
	}
}

// No daemon, or an unsynchronized one: an error, never a fallback clock.
func TestExampleRefusesWithoutTrueTime(t *testing.T) {
	dir := t.TempDir()
	addr, _ := testdaemon.ServeWall(t, nil) // never synchronized
	for _, args := range [][]string{
		{"--time", "shm", "--shm", filepath.Join(dir, "missing.shm")},
		{"--time", "grpc", "--grpc", "unix://" + filepath.Join(dir, "missing.sock")},
		{"--time", "grpc", "--grpc", addr},
		{"--time", "ntp"},
	} {
		var out bytes.Buffer
		err := run(context.Background(), args, &out)
		if err == nil {
			t.Errorf("%v: ran without TrueTime:\n%s", args, out.String())
			continue
		}
		if len(args) == 4 && args[3] == addr && !errors.Is(err, truetime.ErrUnsynchronized) {
			t.Errorf("%v: %v, want ErrUnsynchronized", args, err)
		}
		t.Logf("%v: %v", args, err)
	}
}
