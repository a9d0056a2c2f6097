package hostclock

import (
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// On this machine (linux/amd64 with a vDSO) the clocks must be read through
// the vDSO with the small frame; CI would catch a regression to the
// system call here.
func TestReadPathIsVDSO(t *testing.T) {
	p := ReadPath()
	t.Logf("read path: %+v", p)
	if runtime.GOARCH != "amd64" {
		t.Skip("the vDSO caller is amd64-only")
	}
	if p.Method != "vdso" {
		t.Fatalf("clocks read by %s: %s", p.Method, p.Reason)
	}
	if p.StackUseBytes <= 0 || p.StackUseBytes > p.FrameBytes {
		t.Fatalf("measured vDSO stack use %d bytes, frame %d", p.StackUseBytes, p.FrameBytes)
	}
}

// The vDSO read agrees with the system call for every clock, from many
// goroutines at once, with a CPU profile running (SIGPROF lands inside the
// vDSO), while the GC shrinks and moves stacks and goroutines start on
// small stacks: each reading lies between system-call reads taken just
// before and after it.
func TestVDSOUnderProfilerGCAndSmallStacks(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "cpu")
	if err != nil {
		t.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		t.Skipf("cpu profile: %v", err)
	}
	defer pprof.StopCPUProfile()
	stop := make(chan struct{})
	go func() { // the GC moves and shrinks stacks
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
				time.Sleep(time.Millisecond)
			}
		}
	}()
	deadline := time.Now().Add(time.Second)
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for time.Now().Before(deadline) {
				// A fresh goroutine per round starts on a 2 KiB stack and
				// grows it for the reserved frame.
				done := make(chan struct{})
				go func() {
					defer close(done)
					id := []int32{unix.CLOCK_MONOTONIC_RAW, unix.CLOCK_BOOTTIME, unix.CLOCK_REALTIME}[g%3]
					for i := 0; i < 200; i++ {
						a := syscallNS(id)
						v := clockNS(id)
						b := syscallNS(id)
						if v < a || v > b {
							errs <- "clock " + itoa(int(id)) + " read outside its system-call bracket"
							return
						}
						b0, r0 := syscallNS(unix.CLOCK_BOOTTIME), syscallNS(unix.CLOCK_MONOTONIC_RAW)
						r, bt := BootRawNS()
						r1, b1 := syscallNS(unix.CLOCK_MONOTONIC_RAW), syscallNS(unix.CLOCK_BOOTTIME)
						if r < r0 || r > r1 || bt < b0 || bt > b1 {
							errs <- "BootRawNS outside its brackets"
							return
						}
						// The three-clock call: raw within its bracket, the
						// coarse offset within a tick of the careful one.
						r0 = syscallNS(unix.CLOCK_MONOTONIC_RAW)
						r, w2m := RawWallToMonoNS()
						r1 = syscallNS(unix.CLOCK_MONOTONIC_RAW)
						if w, ok := WallToMonoNS(); r < r0 || r > r1 || ok && (w2m-w > 100e6 || w-w2m > 100e6) {
							errs <- "RawWallToMonoNS outside its brackets"
							return
						}
					}
				}()
				<-done
			}
		}(g)
	}
	wg.Wait()
	close(stop)
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

// Deep recursion leaves little stack above the goroutine's guard: the
// reserved frame must make the prologue grow the stack, not let the vDSO
// write past it.
func TestVDSONearStackLimit(t *testing.T) {
	var rec func(n int) int64
	rec = func(n int) int64 {
		var pad [64]byte
		if n == 0 {
			r, _ := RawWallToMonoNS()
			return min(MonoRawNS(), r) + int64(pad[0])
		}
		return rec(n-1) + int64(pad[n%64])
	}
	for depth := 0; depth < 300; depth += 7 {
		a := syscallNS(unix.CLOCK_MONOTONIC_RAW)
		v := rec(depth)
		if b := syscallNS(unix.CLOCK_MONOTONIC_RAW); v < a || v > b {
			t.Fatalf("depth %d: %d outside [%d, %d]", depth, v, a, b)
		}
	}
}

// The start-up checks send a process to the system call when the image is
// not a usable vDSO.
func TestLoadVDSOFallsBack(t *testing.T) {
	if r := loadVDSO(0); r.fn != 0 || r.path.Method != "syscall" || r.path.Reason == "" {
		t.Fatalf("no vDSO: %+v", r.path)
	}
	// A mapped page that is not an ELF image: a Go array's address.
	var page [4096]byte
	r := loadVDSO(uintptr(unsafePointer(&page)))
	if r.fn != 0 || r.path.Method != "syscall" {
		t.Fatalf("garbage image: %+v", r.path)
	}
	t.Logf("fallback reason: %s", r.path.Reason)
}

// The stack-probe scan finds the encodings a hardened compiler emits.
func TestStackProbesFound(t *testing.T) {
	for _, c := range []struct {
		code []byte
		want int
	}{
		{[]byte{0x48, 0x83, 0x0c, 0x24, 0x00}, 1},                         // orq $0,(%rsp)
		{[]byte{0x48, 0x83, 0x4c, 0x24, 0xf8, 0x00}, 1},                   // orq $0,-8(%rsp)
		{[]byte{0x48, 0x83, 0x8c, 0x24, 0x00, 0xf0, 0xff, 0xff, 0x00}, 1}, // orq $0,-4096(%rsp)
		{[]byte{0x48, 0x81, 0xec, 0x00, 0x10, 0x00, 0x00}, 1},             // subq $4096,%rsp
		{[]byte{0x48, 0x81, 0xec, 0x10, 0x00, 0x00, 0x00}, 0},             // subq $16,%rsp
		{[]byte{0x48, 0x83, 0xec, 0x10, 0x90}, 0},                         // subq $16,%rsp (imm8)
	} {
		if got := stackProbes(append(c.code, 0x90, 0x90, 0x90, 0x90)); got != c.want {
			t.Errorf("% x: %d probes, want %d", c.code, got, c.want)
		}
	}
}

func BenchmarkMonoRawVDSO(b *testing.B) {
	for b.Loop() {
		MonoRawNS()
	}
}

func BenchmarkMonoRawSyscall(b *testing.B) {
	for b.Loop() {
		syscallNS(unix.CLOCK_MONOTONIC_RAW)
	}
}

func BenchmarkBootRawPair(b *testing.B) {
	for b.Loop() {
		BootRawNS()
	}
}

func BenchmarkTimeNow(b *testing.B) {
	for b.Loop() {
		_ = time.Now()
	}
}
