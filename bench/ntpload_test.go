package bench

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meridiantime/meridian/ntp"
	"github.com/meridiantime/meridian/truetime"
)

type tsFixed struct{}

func (tsFixed) Now() (truetime.Interval, error) {
	n := time.Now().UnixNano()
	return truetime.Interval{EarliestNS: n - 1000, LatestNS: n + 1000, Status: truetime.Synchronized}, nil
}
func (tsFixed) Estimate() truetime.Estimate {
	return truetime.Estimate{Status: truetime.Synchronized, Stratum: 2}
}
func (tsFixed) LocalNS() int64 { return time.Now().UnixNano() }

// The generator stops by itself at its request cap and counts every reply
// of a real server.
// startServer runs a real NTP server on loopback for the test.
func startServer(t *testing.T) *ntp.Server {
	t.Helper()
	s := ntp.NewServer(tsFixed{}, ntp.RateLimit{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := s.Listen("127.0.0.1:0", 2); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

func TestNTPLoadAgainstServer(t *testing.T) {
	s := startServer(t)
	r, err := RunNTPLoad(context.Background(), NTPLoad{Addr: s.Addr(), Clients: 4, InFlight: 2, Duration: 10 * time.Second, MaxRequests: 2000})
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent != 2000 || r.Received < 1990 || r.Received > 2000 {
		t.Fatalf("%v", r)
	}
	// The server counts a batch once sendmmsg returns, which can be after
	// the generator has read the replies: give the counter a moment.
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		st := s.Stats()
		if st.Replies >= uint64(r.Received) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server replied %d, generator received %d", st.Replies, r.Received)
		}
	}
	t.Log(r)
}

func TestNTPLoadRefusesForeignAddresses(t *testing.T) {
	if _, err := RunNTPLoad(context.Background(), NTPLoad{Addr: "8.8.8.8:123", Clients: 1, InFlight: 1, Duration: time.Second}); err == nil {
		t.Fatal("load against a public address accepted")
	}
	if _, err := RunNTPLoad(context.Background(), NTPLoad{Addr: "127.0.0.1:1", Clients: 1, InFlight: 1, Duration: time.Hour}); err == nil {
		t.Fatal("unbounded load accepted")
	}
}

func TestProcessCPU(t *testing.T) {
	if d, err := ProcessCPU(os.Getpid()); err != nil || d < 0 {
		t.Fatalf("%v %v", d, err)
	}
}

// ThreadsCPU agrees with getrusage (the kernel's total for the process, in
// µs) over a spin, and fails for a process that does not exist.
func TestThreadsCPU(t *testing.T) {
	if _, err := ThreadsCPU(1 << 30); err == nil {
		t.Fatal("no error for a missing process")
	}
	rusage := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	th0, err := ThreadsCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	ru0 := rusage()
	for spin := time.Now(); time.Since(spin) < 200*time.Millisecond; {
	}
	ru1 := rusage()
	th1, _ := ThreadsCPU(os.Getpid())
	// The two reads of each bracket the spin in opposite orders; what runs
	// between them (a few syscalls, the runtime's other threads) is far
	// below a millisecond or two.
	if d, r := th1-th0, ru1-ru0; r < 10*time.Millisecond || d < r-2*time.Millisecond || d > r+5*time.Millisecond {
		t.Fatalf("ThreadsCPU moved %v while getrusage moved %v", d, r)
	}
}

// CoreBusy counts this process's own work on its core, and names a core
// that does not exist.
func TestCoreBusy(t *testing.T) {
	if _, err := CoreBusy(1 << 20); err == nil || !strings.Contains(err.Error(), "cpu1048576") {
		t.Fatalf("a missing core: %v", err)
	}
	total := time.Duration(0)
	for cpu := 0; ; cpu++ {
		d, err := CoreBusy(cpu)
		if err != nil {
			break
		}
		total += d
	}
	self0, _ := ProcessCPU(os.Getpid())
	spin := time.Now()
	for x := 0; time.Since(spin) < 300*time.Millisecond; x++ {
		_ = x
	}
	self1, _ := ProcessCPU(os.Getpid())
	after := time.Duration(0)
	for cpu := 0; ; cpu++ {
		d, err := CoreBusy(cpu)
		if err != nil {
			break
		}
		after += d
	}
	// The cores were busy at least while this process spun (less two ticks).
	if after-total < self1-self0-20*time.Millisecond {
		t.Fatalf("cores busy %v while this process used %v", after-total, self1-self0)
	}
}

func TestNTPLoadBatchedAgainstServer(t *testing.T) {
	s := startServer(t)
	r, err := RunNTPLoadBatched(context.Background(), NTPLoad{Addr: s.Addr(), Clients: 2, InFlight: 16, Duration: 10 * time.Second, MaxRequests: 5000})
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent != 5000 || r.Received < 4900 || r.Received > 5000 {
		t.Fatalf("%v", r)
	}
	t.Log(r)
}
