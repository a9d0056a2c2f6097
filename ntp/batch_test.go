package ntp

import (
	"context"
	"encoding/binary"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/ntp/engine"
	"github.com/meridiantime/meridian/truetime"
)

// steadyTS serves this host's clock from one estimate, published once, as
// the daemon's clock does between updates (hostTS makes a new estimate at
// every call, so the late transmit read would never apply).
type steadyTS struct{ est truetime.Estimate }

func newSteadyTS() *steadyTS {
	n := time.Now().UnixNano()
	return &steadyTS{est: truetime.Estimate{Status: truetime.Synchronized, LocalNS: n, Eps0NS: 1000, MaxErrorNS: 1e9,
		Stratum: 1, RefID: 0x474e5353, LastSampleNS: n}}
}
func (h *steadyTS) LocalNS() int64              { return time.Now().UnixNano() }
func (h *steadyTS) Estimate() truetime.Estimate { return h.est }
func (h *steadyTS) Now() (truetime.Interval, error) {
	return truetime.Bound(h.LocalNS(), h.est), nil
}

// bracketRun sends bursts of requests from one client socket with kernel
// receive stamps to a batched server serving this host's clock, each
// request's transmit field set to the host clock just before its write
// (t1), and checks every reply against the host clock: t1 ≤ receive ≤
// transmit ≤ the client's kernel receive stamp of the reply (t4,
// CLOCK_REALTIME). It returns the violations and how many replies shared
// their transmit timestamp with another (answered in one batch: the burst
// exercised the per-batch clock read).
func bracketRun(t *testing.T, s *Server, bursts, perBurst int) (bad []string, batched int) {
	t.Helper()
	if err := s.Listen("127.0.0.1:0", 1); err != nil {
		t.Fatal(err)
	}
	serve(t, s)
	cl := newXClient(t, "127.0.0.1:0", s.Addr())
	seen := map[uint64]int{}
	for k := range bursts {
		t1s := map[uint64]bool{}
		for range perBurst {
			t1 := engine.ToNTP(time.Now().UnixNano())
			t1s[t1] = true
			if _, err := cl.c.Write(xreq(0, 0, t1)); err != nil {
				t.Fatal(err)
			}
		}
		for range perBurst {
			h, t4 := cl.read(t)
			t1 := engine.ToUnixNS(h.Origin, t4)
			rx, tx := engine.ToUnixNS(h.Receive, t4), engine.ToUnixNS(h.Transmit, t4)
			seen[h.Transmit]++
			// NTP timestamps resolve 0.23 ns and ToNTP truncates: 1 ns slack.
			if !t1s[h.Origin] || t1 > rx+1 || rx > tx || tx > t4+1 {
				bad = append(bad, fmt.Sprintf("burst %d: t1 %d, receive %+d, transmit %+d, client receipt %+d ns (known origin %v)",
					k, t1, rx-t1, tx-t1, t4-t1, t1s[h.Origin]))
			}
		}
	}
	for _, n := range seen {
		if n > 1 {
			batched += n
		}
	}
	return bad, batched
}

// The batched server reads the served clock once per batch, after the
// batch's receive, and uses that reading as every reply's transmit
// timestamp: against the host clock each reply's receive and transmit
// timestamps lie between the request's send and the reply's arrival.
func TestBatchTimestampsBracketedByHostClock(t *testing.T) {
	for _, ts := range []TimeSource{hostTS{}, newSteadyTS()} {
		s := NewServer(ts, RateLimit{}, quietLog())
		bad, batched := bracketRun(t, s, 50, 16)
		if len(bad) > 0 {
			t.Fatalf("%T: %d of %d replies outside the host-clock bracket, first: %s", ts, len(bad), 50*16, bad[0])
		}
		if batched == 0 {
			t.Fatalf("%T: no two replies answered in one batch: the test did not exercise the per-batch read", ts)
		}
		t.Logf("%T: %d of %d replies answered in batches of more than one", ts, batched, 50*16)
	}
}

// Negative control: a transmit reading 200 µs late (test knob) puts replies'
// transmit timestamps after their arrival, and the bracket reports it.
func TestBatchTimestampsNegativeControl(t *testing.T) {
	s := NewServer(newSteadyTS(), RateLimit{}, quietLog())
	s.testTxShiftNS = 200_000
	bad, _ := bracketRun(t, s, 5, 16)
	if len(bad) == 0 {
		t.Fatal("transmit timestamps 200 µs late went unnoticed")
	}
	t.Logf("detected: %s (%d of %d)", bad[0], len(bad), 5*16)
}

// A reply never sends before it received: when the batch's readings of
// the served clock come out earlier than a request's receive timestamp
// (test knob: both readings 5 ms early), its transmit timestamp is its
// receive timestamp, in the reply built at the batch's receive and in the
// late patch before the send alike. (Both fall back per reply from the
// batch's one encoded reading; always using that reading fails here.)
func TestBatchTransmitNeverBeforeReceive(t *testing.T) {
	s := NewServer(newSteadyTS(), RateLimit{}, quietLog())
	s.testTxShiftNS = -5_000_000
	if err := s.Listen("127.0.0.1:0", 1); err != nil {
		t.Fatal(err)
	}
	serve(t, s)
	cl := newXClient(t, "127.0.0.1:0", s.Addr())
	for k := range 20 {
		for range 8 {
			if _, err := cl.c.Write(xreq(0, 0, uint64(k+1))); err != nil {
				t.Fatal(err)
			}
		}
		for range 8 {
			h, _ := cl.read(t)
			if h.Transmit < h.Receive {
				t.Fatalf("burst %d: transmit %#x before receive %#x", k, h.Transmit, h.Receive)
			}
			if h.Transmit != h.Receive {
				t.Fatalf("burst %d: transmit %#x ≠ receive %#x although the served clock read 5 ms early", k, h.Transmit, h.Receive)
			}
		}
	}
}

// stepTS is a served clock that moves 1 ms at every reading and remembers
// its readings; its estimate can be replaced from the second call of
// Estimate on (a publication between the batch's two reads).
type stepTS struct {
	mu        sync.Mutex
	local     int64
	est, next truetime.Estimate
	estCalls  int
	reads     []int64
	before    map[int64]bool // readings taken before the estimate was replaced
}

func newStepTS() *stepTS {
	e := truetime.Estimate{Status: truetime.Synchronized, LocalNS: now, Eps0NS: 50_000, MaxErrorNS: 1e9,
		Stratum: 2, RefID: 0x7f000001, RootDelayNS: 20_000, LastSampleNS: now - 1e9}
	return &stepTS{local: now, est: e, next: e, before: map[int64]bool{}}
}
func (f *stepTS) LocalNS() int64 { f.mu.Lock(); defer f.mu.Unlock(); return f.local }
func (f *stepTS) Estimate() truetime.Estimate {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.estCalls++
	if f.estCalls > 1 {
		return f.next
	}
	return f.est
}
func (f *stepTS) Now() (truetime.Interval, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.local += 1e6
	iv := truetime.Bound(f.local, f.est)
	f.reads = append(f.reads, iv.MidNS())
	if f.estCalls <= 1 {
		f.before[iv.MidNS()] = true
	}
	return iv, nil
}

// oneReply sends one basic request to a batched server on ts and returns
// the reply.
func oneReply(t *testing.T, ts TimeSource) engine.Header {
	t.Helper()
	s := NewServer(ts, RateLimit{}, quietLog())
	if err := s.Listen("127.0.0.1:0", 1); err != nil {
		t.Fatal(err)
	}
	serve(t, s)
	cl := newXClient(t, "127.0.0.1:0", s.Addr())
	if _, err := cl.c.Write(xreq(0, 0, 12345)); err != nil {
		t.Fatal(err)
	}
	h, _ := cl.read(t)
	return h
}

// A basic reply's transmit timestamp is the served clock's last reading
// before the send, not the reading taken when the batch arrived: the work
// between the two (a whole batch of replies) would otherwise count as
// path delay, and half of it as offset, in every client.
func TestBatchTransmitReadBeforeSend(t *testing.T) {
	ts := newStepTS()
	h := oneReply(t, ts)
	ts.mu.Lock()
	reads := append([]int64(nil), ts.reads...)
	ts.mu.Unlock()
	tx, rx := engine.ToUnixNS(h.Transmit, now), engine.ToUnixNS(h.Receive, now)
	// The receive timestamp is the batch's first reading less the
	// request's age in the kernel (µs); the transmit reading comes at
	// least one reading (1 ms here) later.
	if tx-rx < 1e6 {
		t.Fatalf("transmit − receive = %d ns: the transmit timestamp is the receive-time reading, not one taken before the send (readings %v)", tx-rx, reads)
	}
	if last := reads[len(reads)-1]; tx != last {
		t.Fatalf("transmit %d is not the last reading %d (readings %v)", tx, last, reads)
	}
	// The root dispersion is the late reading's: ε − root delay/2.
	iv := truetime.Bound(ts.local, ts.est)
	if want := engine.NSToShort(iv.EpsNS() - ts.est.RootDelayNS/2); h.RootDisp != want {
		t.Fatalf("root dispersion %#x, want %#x (the late reading's)", h.RootDisp, want)
	}
}

// When a new estimate is published between the batch's
// two reads, the reply keeps its first reading (its stratum, leap and root
// figures come from the first estimate and must agree with its transmit
// timestamp).
func TestBatchTransmitKeptAcrossPublication(t *testing.T) {
	ts := newStepTS()
	ts.next.Stratum = 3
	ts.next.LastSampleNS++
	h := oneReply(t, ts)
	// The served clock moves 1 ms at each reading: the reply must carry
	// a reading taken before the publication.
	tx := engine.ToUnixNS(h.Transmit, now)
	ts.mu.Lock()
	reads, ok := append([]int64(nil), ts.reads...), ts.before[tx]
	ts.mu.Unlock()
	if !ok {
		t.Fatalf("transmit %d: a reading from after the new publication was used (readings %v)", tx, reads)
	}
	if h.Stratum != 2 {
		t.Fatalf("stratum %d, want the first estimate's 2", h.Stratum)
	}
}

// settled returns the server's counters once they stop moving: a worker
// counts a reply after sendmmsg returns, so a client can hold a reply
// before it is counted.
func settled(s *Server) ServerStats {
	prev := s.Stats()
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		st := s.Stats()
		if reflect.DeepEqual(st, prev) {
			return st
		}
		prev = st
	}
	return prev
}

// A worker blocked in recvmmsg on an idle socket is woken by Close (the
// socket is shut down), not left to its receive timeout, here an hour; and
// a server closed before Serve starts no worker on the closed descriptors.
func TestCloseWakesBlockedWorkers(t *testing.T) {
	s := NewServer(synced(), RateLimit{}, quietLog())
	s.testWake = time.Hour
	if err := s.Listen("127.0.0.1:0", 2); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Serve(ctx); close(done) }()
	cl := newXClient(t, "127.0.0.1:0", s.Addr()) // the workers are up once one answers
	if _, err := cl.c.Write(xreq(0, 0, 1)); err != nil {
		t.Fatal(err)
	}
	cl.read(t)
	time.Sleep(50 * time.Millisecond) // both workers block in recvmmsg
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second): // the receive timeout is an hour: only the shutdown ends the wait
		t.Fatal("Serve did not return after cancel: the workers were not woken")
	}
	s2 := NewServer(synced(), RateLimit{}, quietLog())
	if err := s2.Listen("127.0.0.1:0", 1); err != nil {
		t.Fatal(err)
	}
	s2.Close()
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	_ = s2.Serve(ctx2) // returns at once, without touching the closed descriptor
}

// BenchmarkBuildBatch measures a batch's user-space work without its system
// calls (buildBatch: the clock reads, 64 replies, the client log and the
// counters), per request, from one client address and from 4096.
func BenchmarkBuildBatch(b *testing.B) {
	for _, addrs := range []int{1, 4096} {
		b.Run(fmt.Sprintf("addrs=%d", addrs), func(b *testing.B) {
			s := NewServer(newSteadyTS(), RateLimit{}, quietLog())
			s.EnableInterleaved(DefaultInterleavedTable)
			sk := &sock{clog: newClientLog()}
			bio := newBatchIO()
			bio.ts = newTxStamper(false)
			fill := func(k int) {
				stamp := time.Now().UnixNano() - 20_000
				for i := range batchSize {
					n := (k*batchSize + i) % addrs
					sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&bio.names[i]))
					*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Port: uint16(40000 + i), Addr: [4]byte{10, byte(n >> 8), byte(n), 1}}
					bio.rx[i].Msghdr.Namelen = unix.SizeofSockaddrInet4
					copy(bio.bufs[i][:], xreq(0, 0, uint64(k*batchSize+i+1)))
					bio.rx[i].Len = engine.HeaderLen
					oob := bio.oobs[i][:]
					binary.NativeEndian.PutUint64(oob[0:], unix.SizeofCmsghdr+16)
					binary.NativeEndian.PutUint32(oob[8:], unix.SOL_SOCKET)
					binary.NativeEndian.PutUint32(oob[12:], unix.SCM_TIMESTAMPNS)
					binary.NativeEndian.PutUint64(oob[16:], uint64(stamp/1e9))
					binary.NativeEndian.PutUint64(oob[24:], uint64(stamp%1e9))
					bio.rx[i].Msghdr.SetControllen(unix.SizeofCmsghdr + 16)
				}
				bio.n = batchSize
			}
			fill(0)
			b.ResetTimer()
			for k := range b.N {
				if addrs > 1 && k%64 == 0 {
					b.StopTimer()
					fill(k)
					b.StartTimer()
				}
				s.buildBatch(sk, bio)
				if bio.nTx != batchSize {
					b.Fatalf("%d replies of %d", bio.nTx, batchSize)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batchSize), "ns/req")
		})
	}
}
