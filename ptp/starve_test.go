package ptp

import (
	"context"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/facebook/time/ptp/protocol"

	"github.com/meridiantime/meridian/bench/ptpload"
	"github.com/meridiantime/meridian/hwts"
	"github.com/meridiantime/meridian/ptp/engine"
)

// slowStamps is the real system calls, except that while on, every read
// of the error queue first sleeps cost: each Sync's transmit stamp costs
// the worker that long, as on a CPU it gets a small share of.
type slowStamps struct {
	hwts.Sys
	on   atomic.Bool
	cost time.Duration
}

func (s *slowStamps) Recvmsg(fd int, p, oob []byte, flags int) (int, int, int, error) {
	if flags&unix.MSG_ERRQUEUE != 0 && s.on.Load() {
		time.Sleep(s.cost)
	}
	return s.Sys.Recvmsg(fd, p, oob, flags)
}

// starvedRun serves clients (ptpload.Gen over loopback: Sync and
// Delay_Resp granted at 1/s, a Delay_Req a second each) from one worker
// that, once they are all granted, pays 1 ms per transmit stamp: it can
// send at most ~1000 Syncs a second against the clients' thousands. It
// returns the growth of the heap in use over the load (the largest
// sample, every 50 ms, over the sample as the load began), the most
// datagrams one Ready held, what the clients got, and the counters.
func starvedRun(t *testing.T, clients, seconds int, unbounded bool) (growthMB float64, maxQueued int, r ptpload.Result, c engine.MasterCounters, sh ShellCounters) {
	t.Helper()
	ev, gen := freePorts(t)
	cev, cgen := freePorts(t)
	slow := &slowStamps{Sys: hwts.RealSys(), cost: time.Millisecond}
	// Small socket buffers, so that the Delay_Reqs the worker cannot read
	// overflow them within the run (the kernel sheds them, counted).
	defer func(b int) { socketBuffer = b }(socketBuffer)
	socketBuffer = 256 << 10
	cfg := ServerConfig{
		Listen: netip.MustParseAddr("127.0.0.1"), EventPort: ev, GeneralPort: gen, ClientEventPort: cev, ClientGeneralPort: cgen,
		Timestamping: hwts.Software, TimestampSys: slow,
		Engine: engine.MasterConfig{Identity: 9, MaxClients: 65536},
	}
	if unbounded {
		cfg.Engine.MaxBurst = 1 << 30
	}
	srv := NewServer(cfg, syncedSource{}, nil)
	srv.unbounded = unbounded
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ctx)
	}()
	defer func() {
		slow.on.Store(false)
		cancel()
		<-served
	}()

	var (
		mu       sync.Mutex
		base     uint64
		peak     uint64
		sampling = make(chan struct{})
		stopped  = make(chan struct{})
	)
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	go func() {
		defer close(stopped)
		<-sampling
		tk := time.NewTicker(50 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
				h := heap()
				mu.Lock()
				peak = max(peak, h)
				mu.Unlock()
			}
		}
	}()
	g := &ptpload.Gen{Clients: clients, Base: [2]byte{127, 1},
		ServerEvent: netip.AddrPortFrom(cfg.Listen, ev), ServerGeneral: netip.AddrPortFrom(cfg.Listen, gen),
		Progress: func(phase string, done, total int) {
			if phase == "negotiate" && done == total {
				runtime.GC()
				mu.Lock()
				base = heap()
				peak = base
				mu.Unlock()
				slow.on.Store(true)
				close(sampling)
			}
		}}
	if err := g.Listen(int(cev), int(cgen)); err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	r, err := g.Run(ctx, os.Getpid(), seconds)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	growthMB = float64(int64(peak)-int64(base)) / (1 << 20)
	mu.Unlock()
	slow.on.Store(false)
	cancel()
	<-served
	<-stopped
	return growthMB, srv.workers[0].maxQueued, r, srv.Counters(), srv.ShellCounters()
}

// A grandmaster starved of time sheds load with bounded memory: offered
// 4000 clients' Syncs and Delay_Resps a second while it can afford ~1000
// transmit stamps a second, its heap in use grows by less than 4 MB over
// the load, no Ready holds more than MaxBurst + rxBurst datagrams, and the
// Syncs it skipped are counted as shed. The clients still get Delay_Resps
// (the worker keeps reading while behind). Negative control: the same run
// with the old flush (the schedule run after every stamp, each stamp
// waited for on its own, no cap) queues without limit — the check fails.
func TestServerStarvedMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("8 s of load")
	}
	const clients, seconds, boundMB = 4000, 4, 4.0
	growth, queued, r, c, sh := starvedRun(t, clients, seconds, false)
	t.Logf("bounded: heap +%.1f MB, largest Ready %d, served Sync %.1f%% Delay_Resp %.1f%%, shed %d Syncs, %d datagrams dropped by the kernel; sent %d Syncs %d Follow_Ups %d Delay_Resps, %d send errors",
		growth, queued, 100*r.SyncServed, 100*r.DelayRespServed, c.ShedSyncs, sh.RxDropped, c.Syncs, c.FollowUps, c.DelayResps, sh.SendErrors)
	if r.SyncGrants != clients || r.DelayRespGrants != clients {
		t.Fatalf("granted %d Sync, %d Delay_Resp of %d clients", r.SyncGrants, r.DelayRespGrants, clients)
	}
	if r.SyncServed > 0.6 {
		t.Fatalf("served %.0f%% of Syncs: not starved, the test shows nothing", 100*r.SyncServed)
	}
	if growth > boundMB || queued > engine.DefaultMaxBurst+rxBurst {
		t.Errorf("starved: heap grew %.1f MB (bound %.0f), a Ready held %d datagrams (bound %d)", growth, boundMB, queued, engine.DefaultMaxBurst+rxBurst)
	}
	// The Delay_Reqs it could not read, the kernel dropped at its socket,
	// counted; with those answered, never more than the generator sent.
	// (Fewer: some are still queued at the end, and a busy host drops
	// some before they reach the socket.)
	offered := uint64(clients * seconds)
	if sh.RxDropped == 0 || c.DelayResps+sh.RxDropped > offered+clients {
		t.Errorf("%d Delay_Resps sent and %d datagrams dropped by the kernel for %d Delay_Reqs offered", c.DelayResps, sh.RxDropped, offered)
	}
	if c.ShedSyncs == 0 {
		t.Errorf("no Syncs counted as shed while serving %.0f%%", 100*r.SyncServed)
	}
	if r.DelayRespServed < 0.05 {
		t.Errorf("Delay_Resps %.1f%%: the worker stopped reading while behind", 100*r.DelayRespServed)
	}

	growth, queued, r, _, _ = starvedRun(t, clients, seconds, true)
	t.Logf("control (old flush): heap +%.1f MB, largest Ready %d, served Sync %.1f%% Delay_Resp %.1f%%", growth, queued, 100*r.SyncServed, 100*r.DelayRespServed)
	if growth <= boundMB || queued <= engine.DefaultMaxBurst+rxBurst {
		t.Errorf("control: the old flush grew the heap %.1f MB with a Ready of %d: the check would not catch it", growth, queued)
	}
}

// lostStamps is the real system calls, except that the error queue reads
// as empty: every transmit stamp is lost (as when a full receive buffer
// leaves the kernel no room to queue it).
type lostStamps struct{ hwts.Sys }

func (lostStamps) Recvmsg(int, []byte, []byte, int) (int, int, int, error) {
	return 0, 0, 0, unix.EAGAIN
}

// flushLost grants n clients Sync and times one flush whose stamps are
// all lost.
func flushLost(t *testing.T, n int, waitEach bool) (time.Duration, engine.MasterCounters) {
	t.Helper()
	ev, gen := freePorts(t)
	srv := NewServer(ServerConfig{
		Listen: netip.MustParseAddr("127.0.0.1"), EventPort: ev, GeneralPort: gen, ClientEventPort: ev, ClientGeneralPort: gen,
		Timestamping: hwts.Software, TimestampSys: lostStamps{hwts.RealSys()}, TxTimeout: 10 * time.Millisecond,
		Engine: engine.MasterConfig{Identity: 7},
	}, syncedSource{}, nil)
	srv.stampWaitEach = waitEach
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	w := srv.workers[0]
	now := srv.servedNS()
	for i := range n {
		id := protocol.PortIdentity{ClockIdentity: protocol.ClockIdentity(i + 1), PortNumber: 1}
		w.m.Step(now, engine.Input{Kind: engine.InputDatagram, Peer: peerOf(netip.AddrFrom4([4]byte{127, 0, 1, byte(i)})), Datagram: syncRequest(id), RxNS: now})
	}
	start := time.Now()
	srv.flush(context.Background(), w)
	return time.Since(start), w.m.Counters()
}

// The Syncs of one flush share one TxTimeout for their stamps: with all
// 100 stamps lost, the flush ends after about one timeout (10 ms; allowed
// 500 ms on a busy machine), each lost stamp counted. Negative control:
// waiting a TxTimeout per stamp, as the shell first did, takes at least
// 100 × 10 ms — what made a starved worker's rounds last seconds.
func TestServerLostStampsShareOneTimeout(t *testing.T) {
	const n = 100
	d, c := flushLost(t, n, false)
	if c.Syncs != n || c.TxTimeouts != n || c.FollowUps != 0 {
		t.Fatalf("counters %+v, want %d Syncs, %d stamp timeouts, no Follow_Up", c, n, n)
	}
	if d > 500*time.Millisecond {
		t.Errorf("a flush of %d Syncs with lost stamps took %v, want about one 10 ms timeout", n, d)
	}
	if d, _ := flushLost(t, n, true); d < n*10*time.Millisecond {
		t.Errorf("control: a timeout per stamp took only %v", d)
	}
}
