package bench

import (
	"context"
	"testing"
	"time"

	"github.com/meridiantime/meridian/internal/testdaemon"
)

func grpcServer(t *testing.T, synced bool) string {
	t.Helper()
	addr, tt := testdaemon.ServeWall(t, nil)
	if synced {
		tt.SetEstimate(testdaemon.WallEstimate(time.Microsecond))
	}
	return addr
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
