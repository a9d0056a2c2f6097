package daemon

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meridiantime/meridian/clock/virtual"
	"github.com/meridiantime/meridian/config"
	"github.com/meridiantime/meridian/discipline"
	"github.com/meridiantime/meridian/ntp"
	"github.com/meridiantime/meridian/ntp/engine"
	"github.com/meridiantime/meridian/timeservice"
	"github.com/meridiantime/meridian/truetime"
)

// A daemon whose only source dies enters holdover after
// holdover_after_polls polls of that source, not after a fixed 64 s (before
// the fix: still "synchronized" 64 s later with a 250 ms poll).
func TestHoldoverAfterMissedPolls(t *testing.T) {
	const polls, poll = 4, 250 * time.Millisecond
	a, cancelA, doneA := startDaemon(t, "local_stratum: 1\nntp_server: {listen: [\"127.0.0.1:0\"]}\n")
	stopped := false
	defer func() {
		if !stopped {
			cancelA()
			<-doneA
		}
	}()
	b, cancelB, doneB := startDaemon(t, fmt.Sprintf("local_stratum: 0\nholdover_after_polls: %d\nsources: [{type: ntp, address: %q, poll: %v}]\n",
		polls, a.NTPServerAddr(), poll))
	defer func() { cancelB(); <-doneB }()
	status := func() truetime.Status {
		iv, _ := b.Clock().Now()
		return iv.Status
	}
	for deadline := time.Now().Add(10 * time.Second); status() != truetime.Synchronized; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("B never synchronized")
		}
	}
	time.Sleep(2 * poll) // a few samples in
	cancelA()
	<-doneA
	stopped = true
	died := time.Now()
	// The last sample is at most one poll before the source died: holdover
	// comes between (N−1)·poll and N·poll + a tick after.
	limit := polls*poll + 20*time.Millisecond
	for status() == truetime.Synchronized {
		if time.Since(died) > limit+2*time.Second { // slack for a loaded machine
			t.Fatalf("still synchronized %v after the only source died (holdover_after_polls %d × poll %v)", time.Since(died), polls, poll)
		}
		time.Sleep(2 * time.Millisecond)
	}
	took := time.Since(died)
	if st := status(); st != truetime.Holdover {
		t.Fatalf("status %v after the source died, want holdover", st)
	}
	if took < (polls-1)*poll-50*time.Millisecond {
		t.Fatalf("holdover %v after the source died: before %d missed polls", took, polls-1)
	}
	t.Logf("holdover %v after the source died (N·poll = %v)", took.Round(time.Millisecond), polls*poll)
}

// Configs at the edges of every range start a daemon that answers NTP
// within a second (with the time its clock_offset says) and stops at once.
func TestBoundaryConfigsRun(t *testing.T) {
	for _, tc := range []struct {
		yaml   string
		offset time.Duration
		synced bool
	}{
		{"local_stratum: 1\nclock_offset: 87600h\n", 87600 * time.Hour, true},
		{"local_stratum: 1\nclock_offset: -87600h\n", -87600 * time.Hour, true},
		{"local_stratum: 1\nntp_server: {listen: [\"127.0.0.1:0\"], rate_limit: {requests_per_second: 1000000, burst: 1000000, table_size: 1048576, leak: 1, kod: true}}\n", 0, true},
		{"local_stratum: 1\nntp_server: {listen: [\"127.0.0.1:0\"], rate_limit: {requests_per_second: 0.001, burst: 1, table_size: 1, leak: 0}}\n", 0, true},
		{"local_stratum: 1\nmax_error: 15101ns\nprecision: 100ns\n", 0, true},
		{"local_stratum: 0\nholdover_after_polls: 64\nsources: [{type: ntp, address: \"127.0.0.1:9\", poll: 36h, min_poll: 36h, max_poll: 36h}]\n", 0, false},
		{"local_stratum: 0\nholdover_after_polls: 1\nsources: [{type: ntp, address: \"127.0.0.1:9\", poll: 125ms, iburst: true}]\n", 0, false},
		{"local_stratum: 15\nstep_threshold: 24h\nstep_limit: 1000000\nmax_error: 24h\ndrift_bound_ppm: 1000\noscillator_tolerance_ppm: 100000\n", 0, true},
		{"local_stratum: 1\ngrpc: {max_waiters: 1048576, max_waiters_per_conn: 1048576, max_watchers: 1048576}\nhlc: {max_offset_floor: 1h, eps_factor: 1000}\n", 0, true},
	} {
		t.Run(strings.ReplaceAll(strings.TrimSpace(tc.yaml), "\n", " "), func(t *testing.T) {
			y := tc.yaml
			if !strings.Contains(y, "ntp_server") {
				y += "ntp_server: {listen: [\"127.0.0.1:0\"]}\n"
			}
			d, cancel, done := startDaemon(t, y)
			stopped := false
			defer func() {
				if !stopped {
					cancel()
					<-done
				}
			}()
			conn, err := net.Dial("udp", d.NTPServerAddr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			req := make([]byte, 48)
			req[0] = 4<<3 | engine.ModeClient
			req[47] = 1
			if _, err := conn.Write(req); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(time.Second))
			resp := make([]byte, 128)
			n, err := conn.Read(resp)
			if err != nil || n != 48 {
				t.Fatalf("no NTP answer within a second: %v", err)
			}
			want := time.Now().Add(tc.offset).UnixNano()
			var xmt uint64
			for _, c := range resp[40:48] {
				xmt = xmt<<8 | uint64(c)
			}
			got := engine.ToUnixNS(xmt, want)
			if d := time.Duration(got - want).Abs(); d > time.Second {
				t.Fatalf("served %v, want %v", time.Unix(0, got).UTC(), time.Unix(0, want).UTC())
			}
			if synced := resp[0]>>6 != engine.LeapUnsync; synced != tc.synced {
				t.Fatalf("synchronized %v, want %v", synced, tc.synced)
			}
			start := time.Now()
			cancel()
			select {
			case err := <-done:
				stopped = true
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("did not stop within 3 s of cancel")
			}
			t.Logf("stopped in %v", time.Since(start).Round(time.Millisecond))
		})
	}
}

// FuzzConfigDaemon: whatever YAML config accepts, daemon.New takes it (or
// refuses only what it documents as not implemented) and every runtime
// value derived from it is in range: the discipline accepts its
// configuration, holdover starts within [125 ms, 64 × 36 h], the virtual
// clock serves a time within the bounded offset of the host (no overflow),
// and the rate limiter and gRPC caps are bounded. (A whole daemon per input
// is too slow for a fuzz budget; TestBoundaryConfigsRun starts one for each
// edge of the ranges.)
func FuzzConfigDaemon(f *testing.F) {
	f.Add(config.DefaultYAML())
	f.Add([]byte("clock_offset: 87600h\nlocal_stratum: 1\n"))
	f.Add([]byte("sources: [{type: ntp, address: \"127.0.0.1:123\", min_poll: 1s, max_poll: 36h}]\nholdover_after_polls: 64\n"))
	f.Add([]byte("ntp_server: {listen: [\":123\"], rate_limit: {requests_per_second: 1000000, burst: 1, table_size: 1048576, leak: 1}}\n"))
	f.Add([]byte("sources: [{type: ptp, address: \"10.0.0.1\"}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := config.Parse(data)
		if err != nil {
			return
		}
		dir := t.TempDir()
		cfg.Shm.Path, cfg.StateDir = filepath.Join(dir, "tt.shm"), filepath.Join(dir, "state")
		cfg.GRPC.Listen = config.ListenList{"unix://" + filepath.Join(dir, "g.sock")}
		_, err = New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{})
		if err != nil && !strings.Contains(err.Error(), "not implemented") && !strings.Contains(err.Error(), "not supported") {
			t.Fatalf("New refused an accepted config: %v", err)
		}
		dc := cfg.DisciplineConfig()
		now := time.Now().UnixNano()
		if _, err := discipline.New(dc, now); err != nil {
			t.Fatalf("discipline refuses the derived config: %v", err)
		}
		if h := time.Duration(dc.HoldoverAfterNS); h < 125*time.Millisecond || h > 64*36*time.Hour {
			t.Fatalf("holdover after %v", h)
		}
		clk, err := virtual.New(virtual.Options{OffsetNS: int64(cfg.ClockOffset), PrecisionNS: int64(cfg.Precision)})
		if err != nil {
			t.Fatalf("virtual clock: %v", err)
		}
		if d := time.Duration(clk.NowNS() - time.Now().UnixNano() - int64(cfg.ClockOffset)).Abs(); d > time.Second {
			t.Fatalf("clock_offset %v serves %v from host+offset (overflow?)", cfg.ClockOffset.D(), d)
		}
		if y := time.Unix(0, clk.NowNS()).Year(); y < 2000 || y > 2100 {
			t.Fatalf("clock_offset %v serves the year %d", cfg.ClockOffset.D(), y)
		}
		rl := cfg.NTPRateLimit()
		if math.IsNaN(rl.RequestsPerSecond) || rl.RequestsPerSecond < 0 || rl.RequestsPerSecond > config.MaxRequestsPerSecond ||
			rl.Burst < 1 || rl.TableSize < 1 || rl.TableSize > ntp.MaxRateLimitTable || !(rl.Leak == -1 || (rl.Leak > 0 && rl.Leak <= 1)) {
			t.Fatalf("rate limit %+v", rl)
		}
		if rl.RequestsPerSecond > 0 && float64(rl.Burst)/rl.RequestsPerSecond*1e9 > math.MaxInt64 {
			t.Fatalf("burst/rate %v s overflows the KoD interval", float64(rl.Burst)/rl.RequestsPerSecond)
		}
		if _, err := timeservice.NewService(timeservice.Options{TT: truetime.NewClock(clk, nil), MaxWatchers: cfg.GRPC.MaxWatchers,
			MaxWaiters: cfg.GRPC.MaxWaiters, MaxWaitersPerConn: cfg.GRPC.MaxWaitersPerConn}); err != nil {
			t.Fatal(err)
		}
		if g := cfg.GRPC; g.MaxWaiters < 1 || g.MaxWaitersPerConn < 1 || g.MaxWaitersPerConn > g.MaxWaiters || g.MaxWatchers < 0 {
			t.Fatalf("gRPC caps %+v", g)
		}
	})
}
