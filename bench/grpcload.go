package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	timev1 "github.com/meridiantime/meridian/api/meridian/time/v1"
	"github.com/meridiantime/meridian/client"
)

// GRPCLoad describes a bounded closed-loop load of unary calls.
type GRPCLoad struct {
	Address     string        // unix:///path or host:port
	TLS         client.TLS    // TCP only
	Conns       int           // client connections (HTTP/2 transports)
	Concurrency int           // goroutines per connection, each with one call in flight
	Duration    time.Duration // stop after this long (required, ≤ 2 min)
	MaxRequests uint64        // and after this many calls in total (0: no limit)
	// Method: "now" (TimeService.Now, every reply checked: earliest ≤
	// latest, synchronized) or "health" (grpc.health.v1 Check: the cost of
	// gRPC itself on the same server, the baseline).
	Method string
}

// GRPCLoadResult is what the load measured.
type GRPCLoadResult struct {
	Requests, Errors, BadReplies uint64
	FirstError                   error // of the Errors, the first
	Elapsed                      time.Duration
	RPS                          float64
	P50, P99, P999, Max          time.Duration
}

// RunGRPCLoad runs the load and returns its throughput and latency
// percentiles (every call's latency is kept; a 2-minute bound keeps that
// finite).
func RunGRPCLoad(ctx context.Context, l GRPCLoad) (GRPCLoadResult, error) {
	if l.Conns <= 0 || l.Concurrency <= 0 || l.Duration <= 0 || l.Duration > 2*time.Minute {
		return GRPCLoadResult{}, errors.New("bench: grpc load needs conns, concurrency > 0 and 0 < duration ≤ 2m")
	}
	if l.Method != "now" && l.Method != "health" {
		return GRPCLoadResult{}, fmt.Errorf("bench: method %q: want now or health", l.Method)
	}
	conns := make([]*grpc.ClientConn, l.Conns)
	for i := range conns {
		c, err := client.Dial(l.Address, l.TLS)
		if err != nil {
			return GRPCLoadResult{}, err
		}
		defer c.Close()
		conns[i] = c
	}
	// Warm up each connection (and fail fast when the server is absent).
	for _, c := range conns {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := healthpb.NewHealthClient(c).Check(wctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err != nil {
			return GRPCLoadResult{}, fmt.Errorf("bench: %s: %w", l.Address, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, l.Duration)
	defer cancel()
	var issued, errs, bad atomic.Uint64
	var firstErr atomic.Pointer[error]
	lats := make([][]time.Duration, l.Conns*l.Concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range lats {
		conn := conns[i%l.Conns]
		tc, hc := timev1.NewTimeServiceClient(conn), healthpb.NewHealthClient(conn)
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, 1<<14)
			nreq, hreq := &timev1.NowRequest{}, &healthpb.HealthCheckRequest{}
			for ctx.Err() == nil {
				if l.MaxRequests > 0 && issued.Add(1) > l.MaxRequests {
					break
				}
				t0 := time.Now()
				var err error
				if l.Method == "now" {
					var iv *timev1.Interval
					iv, err = tc.Now(ctx, nreq)
					if err == nil && (iv.EarliestNs > iv.LatestNs || iv.Status != timev1.ClockStatus_CLOCK_STATUS_SYNCHRONIZED) {
						bad.Add(1)
					}
				} else {
					_, err = hc.Check(ctx, hreq)
				}
				d := time.Since(t0)
				if err != nil {
					// The run's own deadline can surface through gRPC's
					// timer a moment before ctx reports it: not an error.
					if c := status.Code(err); ctx.Err() == nil && c != codes.DeadlineExceeded && c != codes.Canceled {
						errs.Add(1)
						firstErr.CompareAndSwap(nil, &err)
					}
					continue
				}
				mine = append(mine, d)
			}
			lats[i] = mine
		}()
	}
	wg.Wait()
	el := time.Since(start)
	all := mergeLatencies(lats)
	r := GRPCLoadResult{Requests: uint64(len(all)), Errors: errs.Load(), BadReplies: bad.Load(), Elapsed: el}
	if e := firstErr.Load(); e != nil {
		r.FirstError = *e
	}
	r.P50, r.P99, r.P999, r.Max = all.q(500), all.q(990), all.q(999), all.q(1000)
	r.RPS = float64(len(all)) / el.Seconds()
	return r, nil
}
