package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	timev1 "github.com/meridiantime/meridian/api/meridian/time/v1"
	"github.com/meridiantime/meridian/client"
	"github.com/meridiantime/meridian/clock/hostclock"
	"github.com/meridiantime/meridian/config"
	"github.com/meridiantime/meridian/hlc"
	"github.com/meridiantime/meridian/hlc/hlcfile"
	"github.com/meridiantime/meridian/internal/testcerts"
	"github.com/meridiantime/meridian/truetime"
	"github.com/meridiantime/meridian/truetime/shm"
)

// End to end over gRPC: B starts 3 ms behind reference A and disciplines
// itself from A over loopback NTP; B serves TimeService on a unix socket
// and on TCP with mTLS. A's clock, read from its shm model on the same
// CLOCK_MONOTONIC_RAW, is the ground truth: every interval B serves over
// either transport contains A's time (bracketed by reads before and after
// the call), WaitUntilAfter returns only once A's time has passed the
// target, and HLC timestamps are never below true time.
func TestGRPCEndToEnd(t *testing.T) {
	dir := t.TempDir()
	certs, err := testcerts.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, cancelA, doneA := startDaemon(t, "local_stratum: 1\nntp_server: {listen: [\"127.0.0.1:0\"]}\n")
	defer func() { cancelA(); <-doneA }()
	sock := filepath.Join(dir, "b.sock")
	b, cancelB, doneB := startDaemon(t, fmt.Sprintf(`local_stratum: 0
clock_offset: -3ms
sources: [{type: ntp, address: %q, poll: 250ms}]
grpc:
  listen: ["unix://%s", "127.0.0.1:0"]
  tls: {cert: %s, key: %s, ca: %s}
`, a.NTPServerAddr(), sock, certs.ServerCert, certs.ServerKey, certs.CA))
	defer func() {
		cancelB()
		if err := <-doneB; err != nil {
			t.Error(err)
		}
	}()
	addrs := b.GRPCAddrs()
	if len(addrs) != 2 || addrs[0] != "unix://"+sock {
		t.Fatalf("listeners %v", addrs)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode: %v %v", fi.Mode(), err)
	}
	ra, err := shm.Open(a.ShmPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	truth := func() int64 {
		m, _, err := ra.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		return m.At(hostclock.MonoRawNS())
	}
	rb, err := shm.Open(b.ShmPath)
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	// Control: B's raw clock really is ~3 ms off A's, so an interval
	// around it (ε well under 3 ms) would miss the truth.
	if mb, _, _ := rb.Snapshot(); time.Duration(mb.At(hostclock.MonoRawNS())-truth()).Abs() < 2*time.Millisecond {
		t.Fatal("B does not start offset from A: the containment check would prove nothing")
	}

	transports := map[string]client.TLS{
		addrs[0]: {},
		addrs[1]: {CA: certs.CA, Cert: certs.ClientCert, Key: certs.ClientKey},
	}
	for addr, tl := range transports {
		src, err := client.DialGRPC(addr, tl)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		// Wait for synchronisation: FAILED_PRECONDITION → ErrUnsynchronized.
		for {
			_, err := src.Now(ctx)
			if err == nil {
				break
			}
			if !errors.Is(err, truetime.ErrUnsynchronized) {
				t.Fatalf("%s: %v", addr, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		var maxEps int64
		for i := 0; i < 300; i++ {
			lo := truth()
			iv, err := src.Now(ctx)
			hi := truth()
			if err != nil {
				t.Fatalf("%s read %d: %v", addr, i, err)
			}
			if iv.EarliestNS > hi || iv.LatestNS < lo {
				t.Fatalf("%s read %d: [%d, %d] misses A's time in [%d, %d]", addr, i, iv.EarliestNS, iv.LatestNS, lo, hi)
			}
			maxEps = max(maxEps, iv.EpsNS())
		}
		if maxEps >= int64(2*time.Millisecond) {
			t.Fatalf("%s: ε up to %v: too wide for the 3 ms control to matter", addr, time.Duration(maxEps))
		}
		for i := 0; i < 3; i++ {
			iv, _ := src.Now(ctx)
			target := iv.LatestNS + int64(5*time.Millisecond)
			if err := src.WaitUntilAfter(ctx, target); err != nil {
				t.Fatal(err)
			}
			if now := truth(); now <= target {
				t.Fatalf("%s: WaitUntilAfter returned %v before A's clock reached the target", addr, time.Duration(target-now))
			}
			if ok, err := src.After(ctx, target); err != nil || !ok {
				t.Fatalf("%s: After(target) %v %v after the wait", addr, ok, err)
			}
		}
		svc := src.Service()
		lo := truth()
		h, err := svc.HLCNow(ctx, &timev1.HLCNowRequest{})
		if err != nil || h.WallNs < lo {
			t.Fatalf("%s: HLC %v below true time %d: %v", addr, h, lo, err)
		}
		st, err := svc.Status(ctx, &timev1.StatusRequest{})
		if err != nil || st.Status != timev1.ClockStatus_CLOCK_STATUS_SYNCHRONIZED || st.Stratum != 2 || st.ReferenceId != "127.0.0.1" || st.Clock != "virtual" {
			t.Fatalf("%s: status %v %v", addr, st, err)
		}
		srcs, err := svc.Sources(ctx, &timev1.SourcesRequest{})
		if err != nil || len(srcs.Sources) != 1 || srcs.Sources[0].State != "selected" || srcs.Sources[0].Reach == 0 || srcs.Sources[0].Valid == 0 {
			t.Fatalf("%s: sources %v %v", addr, srcs, err)
		}
		hr, err := healthpb.NewHealthClient(src.Conn()).Check(ctx, &healthpb.HealthCheckRequest{Service: "meridian.time.v1.TimeService"})
		if err != nil || hr.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("%s: health %v %v", addr, hr, err)
		}
		cancel()
		src.Close()
	}
	// The metrics endpoint has the gRPC latency and HLC rejection series.
	resp, err := http.Get("http://" + b.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`meridian_grpc_request_duration_seconds_count\{code="OK",method="Now"\} (\d+)`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no Now latency histogram in\n%s", body)
	}
	if n, _ := strconv.Atoi(string(m[1])); n < 600 {
		t.Fatalf("Now count %d, want ≥ 600", n)
	}
	if !regexp.MustCompile(`(?m)^meridian_hlc_rejected_total 0$`).Match(body) {
		t.Fatal("no meridian_hlc_rejected_total")
	}
}

// restartHLC runs a daemon on stateDir with the given clock offset, takes
// HLC timestamps over gRPC and stops the daemon. It returns the last
// timestamp, the first error, and the largest lead of a timestamp over the
// daemon's TrueTime latest read right after it.
func restartHLC(t *testing.T, stateDir, offset string, persist bool) (last hlc.Timestamp, maxLead time.Duration, err error) {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(fmt.Sprintf("local_stratum: 1\nclock_offset: %s\nhlc: {persist: %v}\n", offset, persist)))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Shm.Path, cfg.StateDir, cfg.Metrics.Listen = filepath.Join(dir, "tt.shm"), stateDir, ""
	cfg.GRPC.Listen = config.ListenList{"unix://" + filepath.Join(dir, "g.sock")}
	d, cancel, done := runDaemon(t, cfg)
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	g, err := client.DialGRPC(d.GRPCAddrs()[0], client.TLS{})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	for i := 0; i < 20; i++ {
		h, err := g.Service().HLCNow(cctx, &timev1.HLCNowRequest{})
		if err != nil {
			return last, maxLead, err
		}
		iv, err := g.Now(cctx)
		if err != nil {
			t.Fatal(err)
		}
		last = hlc.Timestamp{WallNS: h.WallNs, Logical: h.Logical}
		maxLead = max(maxLead, time.Duration(h.WallNs-iv.LatestNS))
	}
	return last, maxLead, nil
}

// HLC timestamps never go backwards across a daemon restart, and a
// restarted daemon's timestamps are not ahead of its physical time
// (TrueTime latest read just after; 1 ms of slack for an estimate update
// in between — the old restart rule put them ~0.9 s ahead): restarted at once, or with its clock 300 ms behind (a
// host clock stepped back), it waits until latest passes the bound
// persisted in state_dir and then issues timestamps above everything issued
// before. With the clock 5 s behind it answers UNAVAILABLE with a retry
// hint instead of waiting. Negative control: with hlc.persist false the
// 300 ms step back regresses, and the check sees it.
func TestHLCMonotonicAcrossRestart(t *testing.T) {
	for _, persist := range []bool{true, false} {
		state := t.TempDir()
		before, _, err := restartHLC(t, state, "0s", persist)
		if err != nil {
			t.Fatal(err)
		}
		again, lead, err := restartHLC(t, state, "0s", persist)
		if err != nil || lead > time.Millisecond || (persist && !before.Less(again)) {
			t.Fatalf("persist=%v, immediate restart: %v after %v, lead %v, %v", persist, again, before, lead, err)
		}
		after, lead, err := restartHLC(t, state, "-300ms", persist)
		if err != nil || lead > time.Millisecond {
			t.Fatalf("persist=%v, restart 300 ms behind: lead %v, %v", persist, lead, err)
		}
		if persist && !again.Less(after) {
			t.Fatalf("after restart %v ≤ %v", after, again)
		}
		if !persist && again.Less(after) {
			t.Fatalf("without persistence the restart should regress (control), got %v then %v", again, after)
		}
		_, statErr := os.Stat(filepath.Join(state, hlcfile.Name))
		if persist != (statErr == nil) {
			t.Fatalf("persist=%v but hlc.upper: %v", persist, statErr)
		}
		if !persist {
			continue
		}
		_, _, err = restartHLC(t, state, "-5s", persist)
		st := status.Convert(err)
		var hint time.Duration
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok {
				hint = ri.GetRetryDelay().AsDuration()
			}
		}
		if st.Code() != codes.Unavailable || hint < 4*time.Second || hint > 6*time.Second {
			t.Fatalf("restart 5 s behind: %v (retry hint %v), want UNAVAILABLE with a ~5 s hint", err, hint)
		}
	}
}
