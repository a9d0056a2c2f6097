package timeservice_test

import (
	"context"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	refl "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	timev1 "github.com/meridiantime/meridian/api/meridian/time/v1"
	"github.com/meridiantime/meridian/client"
	"github.com/meridiantime/meridian/clock/hostclock"
	"github.com/meridiantime/meridian/hlc"
	"github.com/meridiantime/meridian/internal/testcerts"
	"github.com/meridiantime/meridian/timeservice"
	"github.com/meridiantime/meridian/truetime"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wall reads the host's realtime clock: it is the server's own clock in
// these tests, and the estimate says it is exact (offset 0, ε known). So the
// tests here that compare intervals with it are plumbing tests (the service
// serves what truetime computes for its clock), not evidence that an
// interval contains true time: that is checked against an independent clock
// by daemon.TestGRPCEndToEnd (reference daemon A) and, to the nanosecond, by
// client.TestAfterBeforeBoundaryAllTransports.
type wall struct{}

func (wall) NowNS() int64 { return time.Now().UnixNano() }

// synced is an estimate of the wall clock with half-width eps.
func synced(eps time.Duration) truetime.Estimate {
	now := time.Now().UnixNano()
	return truetime.Estimate{Status: truetime.Synchronized, LocalNS: now, Eps0NS: int64(eps),
		DriftBoundPPB: 15000, MaxErrorNS: int64(time.Second), LastSampleNS: now, Stratum: 2, RefID: 0x7f000001}
}

type fixture struct {
	tt   *truetime.Clock
	svc  *timeservice.Service
	srv  *timeservice.Server
	reg  *prometheus.Registry
	hlc  *hlc.Clock
	addr []string
	stop func()
}

func start(t *testing.T, cfg timeservice.ServerConfig, opt timeservice.Options) *fixture {
	t.Helper()
	f := &fixture{tt: truetime.NewClock(wall{}, hostclock.RealTimers()), reg: prometheus.NewRegistry()}
	var err error
	if opt.HLC != nil { // made by the caller over its own physical clock
		f.hlc = opt.HLC
	} else if f.hlc, err = hlc.New(f.tt, hlc.Options{}); err != nil {
		t.Fatal(err)
	}
	opt.TT, opt.HLC = f.tt, f.hlc
	if opt.Sources == nil {
		opt.Sources = func() []*timev1.Source { return []*timev1.Source{{Name: "ntp:a", State: "selected"}} }
	}
	if f.svc, err = timeservice.NewService(opt); err != nil {
		t.Fatal(err)
	}
	if cfg.Listen == nil {
		cfg.Listen = []string{"unix://" + filepath.Join(t.TempDir(), "g.sock")}
	}
	cfg.Registerer = f.reg
	if f.srv, err = timeservice.NewServer(f.svc, cfg); err != nil {
		t.Fatal(err)
	}
	f.addr = f.srv.Addrs()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.Serve(ctx) }()
	stopped := false
	f.stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(f.stop)
	return f
}

func dial(t *testing.T, addr string, tl client.TLS) (*grpc.ClientConn, timev1.TimeServiceClient) {
	t.Helper()
	conn, err := client.Dial(addr, tl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, timev1.NewTimeServiceClient(conn)
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func code(err error) codes.Code { return status.Code(err) }

// Plumbing: the interval served contains the server's own clock (wall)
// read before and after the call, its half-width is the estimate's, and
// status, sources, After/Before and the latency metrics follow.
func TestNowPlumbing(t *testing.T) {
	f := start(t, timeservice.ServerConfig{}, timeservice.Options{})
	_, c := dial(t, f.addr[0], client.TLS{})
	ctx := ctxT(t, 10*time.Second)
	if _, err := c.Now(ctx, &timev1.NowRequest{}); code(err) != codes.FailedPrecondition {
		t.Fatalf("unsynchronized Now: %v", err)
	}
	st, err := c.Status(ctx, &timev1.StatusRequest{})
	if err != nil || st.Status != timev1.ClockStatus_CLOCK_STATUS_UNSYNCHRONIZED || st.Interval != nil {
		t.Fatalf("status while unsynchronized: %v %v", st, err)
	}
	est := synced(200 * time.Microsecond)
	est.FreqUncPPB = 2500
	f.tt.SetEstimate(est)
	for i := 0; i < 200; i++ {
		before := time.Now().UnixNano()
		iv, err := c.Now(ctx, &timev1.NowRequest{})
		after := time.Now().UnixNano()
		if err != nil {
			t.Fatal(err)
		}
		if iv.EarliestNs > after || iv.LatestNs < before {
			t.Fatalf("read %d: [%d, %d] misses the served clock's [%d, %d]", i, iv.EarliestNs, iv.LatestNs, before, after)
		}
		// ε is the estimate's 200 µs plus 15 + 2.5 ppm of the time since it.
		if eps, grown := (iv.LatestNs-iv.EarliestNs)/2, (after-est.LocalNS)*175/10_000_000+1; eps < int64(200*time.Microsecond) || eps > int64(200*time.Microsecond)+grown {
			t.Fatalf("ε %d", eps)
		}
	}
	st, err = c.Status(ctx, &timev1.StatusRequest{})
	if err != nil || st.Status != timev1.ClockStatus_CLOCK_STATUS_SYNCHRONIZED || st.ReferenceId != "127.0.0.1" || st.ErrorBoundNs < 200_000 {
		t.Fatalf("status: %v %v", st, err)
	}
	// ε's growth terms are the estimate's (what the segment carries too).
	if st.DriftBoundPpb != 15000 || st.FrequencyUncertaintyPpb != 2500 {
		t.Fatalf("status: drift bound %v, frequency uncertainty %v ppb; want 15000, 2500", st.DriftBoundPpb, st.FrequencyUncertaintyPpb)
	}
	src, err := c.Sources(ctx, &timev1.SourcesRequest{})
	if err != nil || len(src.Sources) != 1 || src.Sources[0].State != "selected" {
		t.Fatalf("sources: %v %v", src, err)
	}
	// After / Before against known points.
	now := time.Now().UnixNano()
	if r, err := c.After(ctx, &timev1.TimestampRequest{TsNs: now - int64(5*time.Second)}); err != nil || !r.Value {
		t.Fatalf("After(now−5s): %v %v", r, err)
	}
	if r, err := c.After(ctx, &timev1.TimestampRequest{TsNs: now + int64(5*time.Second)}); err != nil || r.Value {
		t.Fatalf("After(now+5s): %v %v", r, err)
	}
	if r, err := c.Before(ctx, &timev1.TimestampRequest{TsNs: now + int64(5*time.Second)}); err != nil || !r.Value {
		t.Fatalf("Before(now+5s): %v %v", r, err)
	}
	if r, err := c.Before(ctx, &timev1.TimestampRequest{TsNs: now}); err != nil || r.Value {
		t.Fatalf("Before(now): %v %v", r, err)
	}
	// Latency metrics were recorded for the calls made.
	if n := histCount(t, f.reg, "Now", "OK"); n != 200 {
		t.Fatalf("Now OK count %d", n)
	}
	if n := histCount(t, f.reg, "Now", "FailedPrecondition"); n != 1 {
		t.Fatalf("Now FailedPrecondition count %d", n)
	}
}

func histCount(t *testing.T, reg *prometheus.Registry, method, code string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "meridian_grpc_request_duration_seconds" {
			continue
		}
		for _, m := range mf.Metric {
			l := map[string]string{}
			for _, p := range m.Label {
				l[p.GetName()] = p.GetValue()
			}
			if l["method"] == method && l["code"] == code {
				return m.Histogram.GetSampleCount()
			}
		}
	}
	return 0
}

// Plumbing: WaitUntilAfter returns only once After(ts) holds on the
// server's clock, not before ts + ε of that clock (wall) has passed, and
// honours deadlines, cancellation and shutdown.
func TestWaitUntilAfterPlumbing(t *testing.T) {
	f := start(t, timeservice.ServerConfig{}, timeservice.Options{})
	_, c := dial(t, f.addr[0], client.TLS{})
	const eps = 2 * time.Millisecond
	f.tt.SetEstimate(synced(eps))
	for i := 0; i < 5; i++ {
		ts := time.Now().UnixNano() + int64(15*time.Millisecond)
		iv, err := c.WaitUntilAfter(ctxT(t, 5*time.Second), &timev1.TimestampRequest{TsNs: ts})
		returned := time.Now().UnixNano()
		if err != nil {
			t.Fatal(err)
		}
		if iv.EarliestNs <= ts {
			t.Fatalf("returned with earliest %d ≤ ts %d", iv.EarliestNs, ts)
		}
		if ok, _ := f.tt.After(ts); !ok {
			t.Fatal("server's After(ts) false after the wait")
		}
		// The served clock (wall) must be past ts + ε − slack.
		if returned < ts+int64(eps)-int64(100*time.Microsecond) {
			t.Fatalf("returned %v before ts+ε", time.Duration(ts+int64(eps)-returned))
		}
	}
	// Deadline.
	ts := time.Now().UnixNano() + int64(time.Minute)
	start := time.Now()
	_, err := c.WaitUntilAfter(ctxT(t, 50*time.Millisecond), &timev1.TimestampRequest{TsNs: ts})
	if code(err) != codes.DeadlineExceeded || time.Since(start) > 5*time.Second {
		t.Fatalf("deadline: %v after %v", err, time.Since(start))
	}
	// Already expired deadline.
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	_, err = c.WaitUntilAfter(ctx, &timev1.TimestampRequest{TsNs: ts})
	cancel()
	if code(err) != codes.DeadlineExceeded {
		t.Fatalf("expired deadline: %v", err)
	}
	// Cancellation.
	ctx, cancel = context.WithCancel(context.Background())
	go func() { time.Sleep(30 * time.Millisecond); cancel() }()
	if _, err = c.WaitUntilAfter(ctx, &timev1.TimestampRequest{TsNs: ts}); code(err) != codes.Canceled {
		t.Fatalf("cancel: %v", err)
	}
	// Bad targets.
	if _, err = c.WaitUntilAfter(ctxT(t, time.Second), &timev1.TimestampRequest{TsNs: 0}); code(err) != codes.InvalidArgument {
		t.Fatalf("ts 0: %v", err)
	}
	if _, err = c.WaitUntilAfter(ctxT(t, time.Second), &timev1.TimestampRequest{TsNs: time.Now().UnixNano() + int64(2*time.Hour)}); code(err) != codes.OutOfRange {
		t.Fatalf("ts +2h: %v", err)
	}
	// Shutdown ends a blocked wait with UNAVAILABLE.
	errc := make(chan error, 1)
	go func() {
		_, err := c.WaitUntilAfter(context.Background(), &timev1.TimestampRequest{TsNs: ts})
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	f.stop()
	select {
	case err := <-errc:
		if code(err) != codes.Unavailable {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("wait survived the shutdown")
	}
}

// Watch sends the status at once, then the change to synchronized, then
// the time-driven fall to unsynchronized once ε passes max_error.
func TestWatchStreamsStatusChanges(t *testing.T) {
	f := start(t, timeservice.ServerConfig{}, timeservice.Options{MaxWatchers: 2})
	_, c := dial(t, f.addr[0], client.TLS{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := c.Watch(ctx, &timev1.WatchRequest{ChangesOnly: true, MinIntervalMs: 20})
	if err != nil {
		t.Fatal(err)
	}
	first, err := w.Recv()
	if err != nil || first.Status != timev1.ClockStatus_CLOCK_STATUS_UNSYNCHRONIZED {
		t.Fatalf("first: %v %v", first, err)
	}
	e := synced(time.Millisecond)
	// ε grows at 1%: it passes max error 200 ms later (time enough for
	// the synchronized status to be seen even on a loaded machine).
	e.MaxErrorNS = int64(3 * time.Millisecond)
	e.DriftBoundPPB = 10_000_000
	f.tt.SetEstimate(e)
	second, err := w.Recv()
	if err != nil || second.Status != timev1.ClockStatus_CLOCK_STATUS_SYNCHRONIZED || second.Interval == nil {
		t.Fatalf("second: %v %v", second, err)
	}
	third, err := w.Recv()
	if err != nil || third.Status != timev1.ClockStatus_CLOCK_STATUS_UNSYNCHRONIZED {
		t.Fatalf("third: %v %v", third, err)
	}
	// The cap: a second stream is fine, a third is refused.
	w2, err := c.Watch(ctx, &timev1.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w2.Recv(); err != nil {
		t.Fatal(err)
	}
	w3, err := c.Watch(ctx, &timev1.WatchRequest{})
	if err == nil {
		_, err = w3.Recv()
	}
	if code(err) != codes.ResourceExhausted {
		t.Fatalf("third stream: %v", err)
	}
	bad, err := c.Watch(ctx, &timev1.WatchRequest{MinIntervalMs: 1})
	if err == nil {
		_, err = bad.Recv()
	}
	if code(err) != codes.InvalidArgument {
		t.Fatalf("min_interval 1ms: %v", err)
	}
	// Closing a stream releases its slot.
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for f.svc.Watchers() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d watchers after the clients left", f.svc.Watchers())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Many concurrent streams beyond the cap: every one is either served or
// refused with RESOURCE_EXHAUSTED, never more than the cap at once.
func TestWatchFlood(t *testing.T) {
	const limit = 16
	f := start(t, timeservice.ServerConfig{}, timeservice.Options{MaxWatchers: limit})
	_, c := dial(t, f.addr[0], client.TLS{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ok, refused := 0, 0
	for i := 0; i < 200; i++ {
		w, err := c.Watch(ctx, &timev1.WatchRequest{})
		if err == nil {
			_, err = w.Recv()
		}
		switch code(err) {
		case codes.OK:
			ok++
		case codes.ResourceExhausted:
			refused++
		default:
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	if ok != limit || refused != 200-limit || f.svc.Watchers() != limit {
		t.Fatalf("ok %d refused %d open %d", ok, refused, f.svc.Watchers())
	}
}

func TestHLC(t *testing.T) {
	f := start(t, timeservice.ServerConfig{}, timeservice.Options{})
	_, c := dial(t, f.addr[0], client.TLS{})
	ctx := ctxT(t, 10*time.Second)
	if _, err := c.HLCNow(ctx, &timev1.HLCNowRequest{}); code(err) != codes.FailedPrecondition {
		t.Fatalf("unsynchronized HLCNow: %v", err)
	}
	f.tt.SetEstimate(synced(100 * time.Microsecond))
	var last hlc.Timestamp
	for i := 0; i < 100; i++ {
		before := time.Now().UnixNano()
		ts, err := c.HLCNow(ctx, &timev1.HLCNowRequest{})
		if err != nil {
			t.Fatal(err)
		}
		got := hlc.Timestamp{WallNS: ts.WallNs, Logical: ts.Logical}
		if !last.Less(got) {
			t.Fatalf("not monotonic: %v after %v", got, last)
		}
		if ts.WallNs < before { // l ≥ pt = latest ≥ the served clock
			t.Fatalf("l %d below the served clock %d", ts.WallNs, before)
		}
		if p, err := hlc.Parse(ts.Text); err != nil || p != got {
			t.Fatalf("text %q: %v", ts.Text, err)
		}
		if k, err := hlc.FromKey(ts.Key); err != nil || k != got {
			t.Fatalf("key %x: %v %v", ts.Key, k, err)
		}
		last = got
	}
	// A remote slightly ahead is merged: the result is above it.
	remote := hlc.Timestamp{WallNS: time.Now().UnixNano() + 500_000, Logical: 7}
	got, err := c.HLCUpdate(ctx, &timev1.HLCUpdateRequest{RemoteWallNs: remote.WallNS, RemoteLogical: remote.Logical})
	if err != nil || !remote.Less(hlc.Timestamp{WallNS: got.WallNs, Logical: got.Logical}) || !last.Less(hlc.Timestamp{WallNS: got.WallNs, Logical: got.Logical}) {
		t.Fatalf("update: %v %v", got, err)
	}
	// A remote 1 s ahead (max offset is max(1 ms, 2ε)) is refused and counted.
	far := time.Now().UnixNano() + 1_000_000_000
	if _, err := c.HLCUpdate(ctx, &timev1.HLCUpdateRequest{RemoteWallNs: far}); code(err) != codes.OutOfRange {
		t.Fatalf("far remote: %v", err)
	}
	if f.hlc.Rejected() != 1 {
		t.Fatalf("rejected %d", f.hlc.Rejected())
	}
	if _, err := c.HLCUpdate(ctx, &timev1.HLCUpdateRequest{}); code(err) != codes.InvalidArgument {
		t.Fatalf("zero remote: %v", err)
	}
	after, _ := c.HLCNow(ctx, &timev1.HLCNowRequest{})
	if !(hlc.Timestamp{WallNS: got.WallNs, Logical: got.Logical}).Less(hlc.Timestamp{WallNS: after.WallNs, Logical: after.Logical}) {
		t.Fatal("HLC regressed after a rejection")
	}
}

// memBound is a persisted HLC bound in memory.
type memBound struct{ ns int64 }

func (m *memBound) Load() (int64, bool, error) { return m.ns, true, nil }
func (m *memBound) Store(ns int64) error       { m.ns = ns; return nil }

// Right after a restart the HLC calls wait until TrueTime's latest passes
// the persisted bound, then answer with a timestamp that is not ahead of
// physical time (the wall clock is the truth here). A wait longer than
// HLCRestartWait, or than the call's deadline, is answered at once with
// UNAVAILABLE and a RetryInfo holding the remaining time.
func TestHLCRestartWait(t *testing.T) {
	const eps = 100 * time.Microsecond
	var bound int64
	serve := func(boundAhead time.Duration) timev1.TimeServiceClient {
		tt := truetime.NewClock(wall{}, hostclock.RealTimers())
		tt.SetEstimate(synced(eps))
		bound = time.Now().UnixNano() + int64(boundAhead)
		h, err := hlc.New(tt, hlc.Options{Persist: &memBound{ns: bound}})
		if err != nil {
			t.Fatal(err)
		}
		f := start(t, timeservice.ServerConfig{}, timeservice.Options{HLC: h})
		f.tt.SetEstimate(synced(eps))
		_, c := dial(t, f.addr[0], client.TLS{})
		return c
	}
	// 150 ms ahead: waited out.
	c := serve(150 * time.Millisecond)
	ts, err := c.HLCNow(ctxT(t, 10*time.Second), &timev1.HLCNowRequest{})
	after := time.Now()
	if err != nil {
		t.Fatalf("restart wait of 150 ms: %v", err)
	}
	// Answered only once latest (≤ wall + ε) passed the bound, and above it.
	if early := time.Duration(bound - after.UnixNano()); early > eps || ts.WallNs <= bound {
		t.Fatalf("answered %v before the wall clock reached the bound, with %d (bound %d)", early, ts.WallNs, bound)
	}
	// Not ahead of physical time: l ≤ latest at the answer ≤ wall + ε (+ drift slack).
	if lead := time.Duration(ts.WallNs - after.UnixNano()); lead > eps+50*time.Microsecond {
		t.Fatalf("first timestamp after the restart is %v ahead of the wall clock", lead)
	}
	retryAfter := func(err error) time.Duration {
		t.Helper()
		st := status.Convert(err)
		if st.Code() != codes.Unavailable {
			t.Fatalf("want UNAVAILABLE, got %v", err)
		}
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok {
				return ri.GetRetryDelay().AsDuration()
			}
		}
		t.Fatalf("UNAVAILABLE without RetryInfo: %v", err)
		return 0
	}
	// 5 s ahead (a clock stepped back at restart): beyond HLCRestartWait.
	c = serve(5 * time.Second)
	t0 := time.Now()
	_, err = c.HLCNow(ctxT(t, 10*time.Second), &timev1.HLCNowRequest{})
	if d := retryAfter(err); d < 4*time.Second || d > 5*time.Second+eps {
		t.Fatalf("retry hint %v for a bound 5 s ahead", d)
	}
	_, err = c.HLCUpdate(ctxT(t, 10*time.Second), &timev1.HLCUpdateRequest{RemoteWallNs: time.Now().UnixNano()})
	retryAfter(err)
	if took := time.Since(t0); took > time.Second {
		t.Fatalf("UNAVAILABLE took %v: it should not wait for what it cannot wait out", took)
	}
	// 300 ms ahead but a 50 ms deadline: UNAVAILABLE at once, not DEADLINE_EXCEEDED.
	c = serve(300 * time.Millisecond)
	_, err = c.HLCNow(ctxT(t, 50*time.Millisecond), &timev1.HLCNowRequest{})
	if d := retryAfter(err); d < 200*time.Millisecond || d > 300*time.Millisecond+eps {
		t.Fatalf("retry hint %v for a bound 300 ms ahead", d)
	}
}

// rawCodec sends bytes as they are: garbage that is not a protobuf.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)   { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(b []byte, v any) error { *(v.(*[]byte)) = b; return nil }
func (rawCodec) Name() string                    { return "proto" }
func (rawCodec) String() string                  { return "raw" }
func invoke(conn *grpc.ClientConn, method string, b []byte) error {
	var out []byte
	return conn.Invoke(context.Background(), method, &b, &out, grpc.ForceCodec(rawCodec{}))
}

// Malformed and oversized requests get clean status codes and the server
// keeps serving.
func TestBadInput(t *testing.T) {
	f := start(t, timeservice.ServerConfig{}, timeservice.Options{})
	f.tt.SetEstimate(synced(time.Millisecond))
	conn, c := dial(t, f.addr[0], client.TLS{})
	for _, b := range [][]byte{{0xff, 0xff, 0xff}, {0x08}, []byte("not a protobuf at all")} {
		err := invoke(conn, "/meridian.time.v1.TimeService/After", b)
		if code(err) != codes.Internal || !strings.Contains(err.Error(), "unmarshal") {
			t.Fatalf("garbage %x: %v", b, err)
		}
	}
	big := make([]byte, 1<<20)
	if err := invoke(conn, "/meridian.time.v1.TimeService/Now", big); code(err) != codes.ResourceExhausted {
		t.Fatalf("1 MiB request: %v", err)
	}
	if err := invoke(conn, "/meridian.time.v1.TimeService/NoSuchMethod", nil); code(err) != codes.Unimplemented {
		t.Fatalf("unknown method: %v", err)
	}
	if _, err := c.After(ctxT(t, time.Second), &timev1.TimestampRequest{TsNs: -5}); code(err) != codes.InvalidArgument {
		t.Fatalf("negative ts: %v", err)
	}
	if _, err := c.Now(ctxT(t, time.Second), &timev1.NowRequest{}); err != nil {
		t.Fatalf("server hurt by bad input: %v", err)
	}
}

// Health: the server is SERVING; the TimeService follows synchronisation.
// Reflection lists the services (what grpcurl list does).
func TestHealthAndReflection(t *testing.T) {
	f := start(t, timeservice.ServerConfig{}, timeservice.Options{})
	conn, _ := dial(t, f.addr[0], client.TLS{})
	h := healthpb.NewHealthClient(conn)
	ctx := ctxT(t, 10*time.Second)
	check := func(svc string) healthpb.HealthCheckResponse_ServingStatus {
		r, err := h.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatal(err)
		}
		return r.Status
	}
	if s := check(""); s != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("server health %v", s)
	}
	if s := check(timeservice.ServiceName); s != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("unsynchronized TimeService health %v", s)
	}
	f.tt.SetEstimate(synced(time.Millisecond))
	deadline := time.Now().Add(5 * time.Second)
	for check(timeservice.ServiceName) != healthpb.HealthCheckResponse_SERVING {
		if time.Now().After(deadline) {
			t.Fatal("TimeService health did not follow synchronisation")
		}
		time.Sleep(5 * time.Millisecond)
	}

	rc, err := refl.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Send(&refl.ServerReflectionRequest{MessageRequest: &refl.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := rc.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.Name)
	}
	sort.Strings(names)
	want := []string{"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection", "meridian.time.v1.TimeService"}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("services %v", names)
	}
	// The file descriptor for the TimeService is served (grpcurl describe).
	if err := rc.Send(&refl.ServerReflectionRequest{MessageRequest: &refl.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "meridian.time.v1.TimeService"}}); err != nil {
		t.Fatal(err)
	}
	if resp, err = rc.Recv(); err != nil || len(resp.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
		t.Fatalf("descriptor: %v %v", resp, err)
	}
	_ = rc.CloseSend()
}

// TLS on TCP: the right CA and client certificate work; no client
// certificate, a rogue client certificate, a client that does not trust
// the server, and plaintext to a TLS port all fail with UNAVAILABLE,
// within the deadline.
func TestTLS(t *testing.T) {
	certs, err := testcerts.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := start(t, timeservice.ServerConfig{Listen: []string{"127.0.0.1:0"},
		TLS: timeservice.TLSFiles{Cert: certs.ServerCert, Key: certs.ServerKey, CA: certs.CA}}, timeservice.Options{})
	f.tt.SetEstimate(synced(time.Millisecond))
	addr := f.addr[0]
	good := client.TLS{CA: certs.CA, Cert: certs.ClientCert, Key: certs.ClientKey}
	src, err := client.DialGRPC(addr, good)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	before := time.Now().UnixNano()
	iv, err := src.Now(ctxT(t, 5*time.Second))
	if err != nil || iv.EarliestNS > time.Now().UnixNano() || iv.LatestNS < before {
		t.Fatalf("mTLS Now: %+v %v", iv, err)
	}
	for name, tl := range map[string]client.TLS{
		"no client cert":    {CA: certs.CA},
		"rogue client cert": {CA: certs.CA, Cert: certs.RogueClientCert, Key: certs.RogueClientKey},
		"untrusted server":  {CA: certs.RogueCA, Cert: certs.ClientCert, Key: certs.ClientKey},
		"plaintext":         {},
	} {
		g, err := client.DialGRPC(addr, tl)
		if err != nil {
			t.Fatalf("%s: dial: %v", name, err)
		}
		start := time.Now()
		_, err = g.Service().Now(ctxT(t, 3*time.Second), &timev1.NowRequest{})
		g.Close()
		if c := code(err); c != codes.Unavailable || time.Since(start) > 3*time.Second {
			t.Errorf("%s: %v (%v)", name, err, c)
		}
	}
	if _, err := client.Dial("unix:///x.sock", good); err == nil {
		t.Error("TLS on a unix socket accepted")
	}
}

// The unix socket is created 0660; a live socket is not stolen by a second
// server, a stale one is replaced.
func TestUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.sock")
	f := start(t, timeservice.ServerConfig{Listen: []string{"unix://" + path}}, timeservice.Options{})
	if got := f.addr[0]; got != "unix://"+path {
		t.Fatalf("addr %s", got)
	}
	if fi, err := osStat(path); err != nil || fi&0o777 != 0o660 {
		t.Fatalf("mode %o %v", fi, err)
	}
	tt := truetime.NewClock(wall{}, hostclock.RealTimers())
	svc, _ := timeservice.NewService(timeservice.Options{TT: tt})
	if _, err := timeservice.NewServer(svc, timeservice.ServerConfig{Listen: []string{"unix://" + path}}); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second server on a live socket: %v", err)
	}
	f.stop()
	// A stale socket file (server gone without unlinking) is replaced.
	if err := makeStaleSocket(path); err != nil {
		t.Fatal(err)
	}
	srv, err := timeservice.NewServer(svc, timeservice.ServerConfig{Listen: []string{"unix://" + path}})
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := srv.Serve(ctx); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"unix:relative.sock", "unix://rel/x.sock", "nohostport"} {
		if _, err := timeservice.NewServer(svc, timeservice.ServerConfig{Listen: []string{bad}}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
