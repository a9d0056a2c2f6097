package bench

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/meridiantime/meridian/clock"
	"github.com/meridiantime/meridian/timeservice"
	"github.com/meridiantime/meridian/truetime"
)

type wall struct{}

func (wall) NowNS() int64 { return time.Now().UnixNano() }

func grpcServer(t *testing.T, synced bool) string {
	t.Helper()
	tt := truetime.NewClock(wall{}, clock.RealTimers())
	if synced {
		now := time.Now().UnixNano()
		tt.SetEstimate(truetime.Estimate{Status: truetime.Synchronized, LocalNS: now, LastSampleNS: now, Eps0NS: 1000, DriftBoundPPB: 15000, MaxErrorNS: 1e9})
	}
	svc, err := timeservice.NewService(timeservice.Options{TT: tt})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := timeservice.NewServer(svc, timeservice.ServerConfig{Listen: []string{"unix://" + filepath.Join(t.TempDir(), "g.sock")}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv.Addrs()[0]
}

// The gRPC generator stops at its request cap, checks every reply, and
// counts a server that cannot answer (negative control: unsynchronized).
func TestGRPCLoad(t *testing.T) {
	addr := grpcServer(t, true)
	for _, m := range []string{"now", "health"} {
		r, err := RunGRPCLoad(context.Background(), GRPCLoad{Address: addr, Conns: 2, Concurrency: 4, Duration: 10 * time.Second, MaxRequests: 2000, Method: m})
		if err != nil {
			t.Fatal(err)
		}
		if r.Requests != 2000 || r.Errors != 0 || r.BadReplies != 0 || r.P50 <= 0 || r.P99 < r.P50 || r.Max < r.P999 {
			t.Fatalf("%s: %+v", m, r)
		}
	}
	r, err := RunGRPCLoad(context.Background(), GRPCLoad{Address: grpcServer(t, false), Conns: 1, Concurrency: 2, Duration: 10 * time.Second, MaxRequests: 100, Method: "now"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors != 100 || r.Requests != 0 {
		t.Fatalf("unsynchronized server: %+v", r)
	}
	if _, err := RunGRPCLoad(context.Background(), GRPCLoad{Address: addr, Conns: 1, Concurrency: 1, Duration: time.Hour, Method: "now"}); err == nil {
		t.Fatal("an unbounded load accepted")
	}
}
