package impair

import (
	"context"
	"encoding/binary"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// seqpacket returns the two ends of a SOCK_SEQPACKET pair (one message per
// read, like a TAP device), non-blocking.
func seqpacket(t *testing.T) (wireEnd, testEnd *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(fds[0]), "wire"), os.NewFile(uintptr(fds[1]), "test")
}

// The driver without namespaces: frames written at side A come out at side
// B no earlier than the configured delay, the other way with the other
// delay; losses are counted; Close stops every goroutine (goleak).
func TestWireDriverDelaysAndCloses(t *testing.T) {
	wa, ta := seqpacket(t)
	wb, tb := seqpacket(t)
	defer ta.Close()
	defer tb.Close()
	cfg := Config{AtoB: Path{Delay: 3 * time.Millisecond}, BtoA: Path{Delay: time.Millisecond, LossPct: 50}, Seed: 9}
	w, err := New(context.Background(), wa, wb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	send := func(f *os.File, i int) time.Time {
		var b [16]byte
		binary.LittleEndian.PutUint64(b[:], uint64(i))
		t0 := time.Now()
		if _, err := f.Write(b[:]); err != nil {
			t.Fatal(err)
		}
		return t0
	}
	buf := make([]byte, 64)
	for i := 0; i < 20; i++ {
		t0 := send(ta, i)
		_ = tb.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := tb.Read(buf)
		if err != nil || n != 16 || binary.LittleEndian.Uint64(buf) != uint64(i) {
			t.Fatalf("frame %d: read %d bytes %x, %v", i, n, buf[:n], err)
		}
		if d := time.Since(t0); d < 3*time.Millisecond || d > 100*time.Millisecond {
			t.Fatalf("frame %d took %v through a 3 ms wire", i, d)
		}
	}
	// b→a loses about half: send 200 and count.
	for i := 0; i < 200; i++ {
		send(tb, i)
	}
	got := 0
	for {
		_ = ta.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := ta.Read(buf); err != nil {
			break
		}
		got++
	}
	st := w.Stats()
	if st.BtoA.Dropped+st.BtoA.Forwarded != 200 || uint64(got) != st.BtoA.Forwarded || got < 60 || got > 140 {
		t.Fatalf("b→a: %d read, stats %+v", got, st.BtoA)
	}
	if st.AtoB.Forwarded != 20 || st.AtoB.LatenessP50NS < 0 || st.AtoB.WriteP50NS <= 0 {
		t.Fatalf("a→b stats %+v", st.AtoB)
	}
	t.Logf("a→b delivery lateness p50 %v p99 %v, write p50 %v", time.Duration(st.AtoB.LatenessP50NS), time.Duration(st.AtoB.LatenessP99NS), time.Duration(st.AtoB.WriteP50NS))
	// Frames in flight at Close are dropped with it; Close returns promptly.
	w.Configure(Config{AtoB: Path{Delay: time.Hour}})
	send(ta, 1)
	t0 := time.Now()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Fatalf("Close took %v", d)
	}
	if w.Err() != nil {
		t.Fatalf("wire error after a clean Close: %v", w.Err())
	}
}

// The wire stops with its context.
func TestWireStopsWithContext(t *testing.T) {
	wa, ta := seqpacket(t)
	wb, tb := seqpacket(t)
	defer ta.Close()
	defer tb.Close()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := New(ctx, wa, wb, Config{})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		// The wire closed its ends: the test ends see the peer gone.
		_ = tb.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := tb.Read(make([]byte, 8)); err == nil || !os.IsTimeout(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the wire did not stop when its context ended")
		}
	}
	_ = w.Close() // waits for the goroutines, for goleak
}

func TestNewRefusesBadConfig(t *testing.T) {
	wa, ta := seqpacket(t)
	wb, tb := seqpacket(t)
	defer func() { ta.Close(); tb.Close(); wa.Close(); wb.Close() }()
	if _, err := New(context.Background(), wa, wb, Config{AtoB: Path{LossPct: -1}}); err == nil {
		t.Fatal("negative loss accepted")
	}
}

// The wire's own clock may read a little behind the timer's: a frame whose
// timer expired before monoNS says it is (nearly) due must still go out,
// not wait for a timer that already fired. With monoNS 1 ms behind, every
// frame meets that case; before the delivery loop re-armed after each
// expiry, the first frame stalled the direction for good.
func TestWireDeliversWhenItsClockLags(t *testing.T) {
	testMonoLagNS = int64(time.Millisecond)
	defer func() { testMonoLagNS = 0 }()
	wa, ta := seqpacket(t)
	wb, tb := seqpacket(t)
	defer ta.Close()
	defer tb.Close()
	w, err := New(context.Background(), wa, wb, Config{AtoB: Path{Delay: 2 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	buf := make([]byte, 64)
	for i := range 20 {
		t0 := time.Now()
		if _, err := ta.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		_ = tb.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := tb.Read(buf)
		if err != nil || n != 1 || buf[0] != byte(i) {
			t.Fatalf("frame %d: %d bytes %x, %v (stats %+v)", i, n, buf[:n], err, w.Stats().AtoB)
		}
		if d := time.Since(t0); d < 2*time.Millisecond {
			t.Fatalf("frame %d came through a 2 ms wire in %v", i, d)
		}
	}
}
