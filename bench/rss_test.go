package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The test binary doubles as a ballast process: with BENCH_BALLAST=1 it
// obeys commands on stdin ("touch N": allocate and write N MB; "free":
// drop them and return them to the kernel), answering "ok" to each.
func TestMain(m *testing.M) {
	if os.Getenv("BENCH_BALLAST") == "1" {
		ballast()
		return
	}
	os.Exit(m.Run())
}

func ballast() {
	var hold []byte
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		switch {
		case len(f) == 2 && f[0] == "touch":
			n, _ := strconv.Atoi(f[1])
			hold = make([]byte, n<<20)
			for i := 0; i < len(hold); i += 4096 {
				hold[i] = 1
			}
		case len(f) == 1 && f[0] == "free":
			hold = nil
			runtime.GC()
			debug.FreeOSMemory()
		}
		fmt.Println("ok")
	}
	runtime.KeepAlive(hold)
}

type ballastProc struct {
	cmd *exec.Cmd
	in  io.Writer
	out *bufio.Scanner
}

func startBallast(t *testing.T) *ballastProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "BENCH_BALLAST=1", "GOGC=off")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return &ballastProc{cmd: cmd, in: in, out: bufio.NewScanner(out)}
}

func (b *ballastProc) do(t *testing.T, command string) {
	t.Helper()
	fmt.Fprintln(b.in, command)
	if !b.out.Scan() || b.out.Text() != "ok" {
		t.Fatalf("ballast %q: no ok (%v)", command, b.out.Err())
	}
}

// ReadProcMem agrees with ps(1), an independent reader of the same kernel
// figures, and sees memory a process really touched: 64 MB written by a
// ballast process appear in its VmRSS (anonymous), stay in VmHWM after they
// are returned, and ResetPeakRSS brings VmHWM back down.
func TestReadProcMemSeesTouchedMemory(t *testing.T) {
	b := startBallast(t)
	b.do(t, "touch 0")
	pid := b.cmd.Process.Pid
	before, err := ReadProcMem(pid)
	if err != nil {
		t.Fatal(err)
	}
	if ps, err := exec.Command("ps", "-o", "rss=,nlwp=", "-p", strconv.Itoa(pid)).Output(); err == nil {
		f := strings.Fields(string(ps))
		kb, _ := strconv.ParseInt(f[0], 10, 64)
		if d := math.Abs(float64(kb*1024 - before.RSS)); d > 1<<20 {
			t.Errorf("ps says RSS %d KiB, ReadProcMem %d bytes", kb, before.RSS)
		}
		if n, _ := strconv.Atoi(f[1]); n != before.Threads {
			t.Errorf("ps says %d threads, ReadProcMem %d", n, before.Threads)
		}
	} else {
		t.Logf("ps not available (%v): only the ballast checks", err)
	}
	b.do(t, "touch 64")
	touched, err := ReadProcMem(pid)
	if err != nil {
		t.Fatal(err)
	}
	if grew := touched.RSS - before.RSS; grew < 60<<20 {
		t.Fatalf("64 MB touched, VmRSS grew %.1f MB: %v → %v", MB(grew), before, touched)
	}
	if touched.RssAnon-before.RssAnon < 60<<20 {
		t.Fatalf("64 MB touched, RssAnon %v → %v", before, touched)
	}
	// The bound assertion of the memory tests catches it (its negative
	// control): 64 MB held exceed a bound 32 MB above the process's start
	// (a race-enabled build starts above 40 MB), which the start is within.
	bound := before.RSS + 32e6
	if err := CheckRSS("ballast", touched.RSS, bound); err == nil || !strings.Contains(err.Error(), "exceeds the bound") {
		t.Fatalf("64 MB held against a bound 32 MB above the start: %v", err)
	}
	if err := CheckRSS("ballast", before.RSS, bound); err != nil {
		t.Fatalf("before the ballast: %v", err)
	}
	b.do(t, "free")
	freed, err := ReadProcMem(pid)
	if err != nil {
		t.Fatal(err)
	}
	if freed.RSS > touched.RSS-32<<20 || freed.HWM < touched.RSS {
		t.Fatalf("freed: want VmRSS back down and VmHWM the peak: touched %v, freed %v", touched, freed)
	}
	if err := ResetPeakRSS(pid); err != nil {
		t.Fatal(err)
	}
	reset, err := ReadProcMem(pid)
	if err != nil {
		t.Fatal(err)
	}
	if reset.HWM > freed.RSS+8<<20 {
		t.Fatalf("after ResetPeakRSS VmHWM %.1f MB, want about VmRSS %.1f MB", MB(reset.HWM), MB(freed.RSS))
	}
	t.Logf("before %v\ntouched %v\nfreed %v\nreset %v", before, touched, freed, reset)
}

func TestMemSamplerSummary(t *testing.T) {
	b := startBallast(t)
	b.do(t, "touch 0")
	s := SampleMem(b.cmd.Process.Pid, 10*time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	b.do(t, "touch 48")
	time.Sleep(100 * time.Millisecond)
	sum, err := s.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if sum.Samples < 5 || sum.SteadyRSS < 44<<20 || sum.MaxRSS < sum.SteadyRSS || sum.HWM < sum.MaxRSS || sum.MaxThreads < 1 {
		t.Fatalf("%v", sum)
	}
	// A process that is gone is an error, not a zero.
	_ = b.cmd.Process.Kill()
	_ = b.cmd.Wait()
	if _, err := SampleMem(b.cmd.Process.Pid, 10*time.Millisecond).Stop(); err == nil {
		t.Fatal("sampling a dead process: no error")
	}
}

const statusSample = `Name:	meridiand
Umask:	0022
State:	S (sleeping)
VmPeak:	 1718228 kB
VmHWM:	   19156 kB
VmRSS:	   18836 kB
RssAnon:	    2884 kB
RssFile:	   16272 kB
RssShmem:	       0 kB
Threads:	7
voluntary_ctxt_switches:	24
`

func TestParseProcStatus(t *testing.T) {
	m, err := ParseProcStatus([]byte(statusSample))
	if err != nil {
		t.Fatal(err)
	}
	want := ProcMem{RSS: 18836 << 10, HWM: 19156 << 10, RssAnon: 2884 << 10, RssFile: 16272 << 10, Threads: 7}
	if m != want {
		t.Fatalf("got %+v, want %+v", m, want)
	}
	for _, bad := range []struct{ text, want string }{
		{"Name:\tkthreadd\nThreads:\t1\n", "no VmRSS"},
		{strings.Replace(statusSample, "VmRSS:	   18836 kB", "VmRSS:	18836 MB", 1), "VmRSS"},
		{strings.Replace(statusSample, "Threads:	7", "Threads:	x", 1), "Threads"},
		{strings.Replace(statusSample, "VmHWM:	   19156 kB", "VmHWM:	-1 kB", 1), "VmHWM"},
		{strings.Replace(statusSample, "Threads:	7\n", "", 1), "no Threads"},
	} {
		if _, err := ParseProcStatus([]byte(bad.text)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: error %v, want one naming %q", bad.text, err, bad.want)
		}
	}
}

func renderStatus(m ProcMem) string {
	return fmt.Sprintf("VmHWM:\t%d kB\nVmRSS:\t%d kB\nRssAnon:\t%d kB\nRssFile:\t%d kB\nThreads:\t%d\n",
		m.HWM>>10, m.RSS>>10, m.RssAnon>>10, m.RssFile>>10, m.Threads)
}

// Whatever the kernel's text, a successful parse has kB multiples and a
// positive thread count, rendering it back parses to the same figures, and
// lines of other keys in between change nothing.
func FuzzParseProcStatus(f *testing.F) {
	f.Add([]byte(statusSample))
	f.Add([]byte("VmRSS: 1 kB\nVmHWM: 2 kB\nThreads: 1"))
	f.Add([]byte("VmRSS:\t9007199254740991 kB\nVmHWM:\t0 kB\nThreads:\t3\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseProcStatus(b)
		if err != nil {
			return
		}
		if m.Threads < 1 || m.RSS < 0 || m.HWM < 0 || m.RssAnon < 0 || m.RssFile < 0 ||
			m.RSS%1024 != 0 || m.HWM%1024 != 0 || m.RssAnon%1024 != 0 || m.RssFile%1024 != 0 {
			t.Fatalf("%q parsed to %+v", b, m)
		}
		again, err := ParseProcStatus([]byte(renderStatus(m)))
		if err != nil || again != m {
			t.Fatalf("%q: %+v rendered and parsed again: %+v, %v", b, m, again, err)
		}
		noisy := strings.ReplaceAll(renderStatus(m), "\n", "\nVmRSSx:\t1 kB\nRss:\tfoo\n")
		if n, err := ParseProcStatus([]byte(noisy)); err != nil || n != m {
			t.Fatalf("other keys changed the parse: %+v → %+v, %v", m, n, err)
		}
	})
}

const metricsSample = `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 17
go_goroutines_total 99
go_goroutines{worker="a"} 3
go_threads 8
`

func TestMetricValue(t *testing.T) {
	if v, err := MetricValue([]byte(metricsSample), "go_goroutines"); err != nil || v != 17 {
		t.Fatalf("go_goroutines = %v, %v; want 17", v, err)
	}
	if v, err := MetricValue([]byte("x 1.5e+07 1700000000000\n"), "x"); err != nil || v != 1.5e7 {
		t.Fatalf("with timestamp: %v, %v", v, err)
	}
	for _, bad := range []struct{ text, name, want string }{
		{metricsSample, "go_gc", "not exposed"},
		{"x 1\nx 2\n", "x", "two unlabelled"},
		{"x one\n", "x", "bad value"},
		{"x 1 2 3\n", "x", "malformed"},
		{metricsSample, "", "empty metric name"},
	} {
		if _, err := MetricValue([]byte(bad.text), bad.name); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q in %q: error %v, want %q", bad.name, bad.text, err, bad.want)
		}
	}
}

// One unlabelled sample of a name among arbitrary other lines (comments,
// other metrics, names it is a prefix of, labelled samples of the same
// name) is always found with its exact value.
func FuzzMetricValue(f *testing.F) {
	f.Add("go_goroutines", 17.0, []byte(metricsSample))
	f.Add("a", -0.5, []byte("ab 1\na{x=\"1\"} 2\n# a 3\n"))
	f.Fuzz(func(t *testing.T, name string, v float64, junk []byte) {
		if name == "" || strings.ContainsAny(name, " \t\n{#") || math.IsNaN(v) {
			return
		}
		var text strings.Builder
		for line := range strings.SplitSeq(string(junk), "\n") {
			if rest, ok := strings.CutPrefix(line, name); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
				continue // another unlabelled sample of name: the text would be ambiguous
			}
			text.WriteString(line + "\n")
		}
		fmt.Fprintf(&text, "%s{l=\"v\"} 1\n%s_x 2\n%s %s\n", name, name, name, strconv.FormatFloat(v, 'g', -1, 64))
		got, err := MetricValue([]byte(text.String()), name)
		if err != nil || got != v {
			t.Fatalf("%q in %q: %v, %v; want %v", name, text.String(), got, err, v)
		}
	})
}

func TestScrapeMetric(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, metricsSample)
	}))
	defer srv.Close()
	if v, err := ScrapeMetric(context.Background(), srv.URL+"/metrics", "go_threads"); err != nil || v != 8 {
		t.Fatalf("%v %v", v, err)
	}
	if _, err := ScrapeMetric(context.Background(), srv.URL+"/nope", "go_threads"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("404: %v", err)
	}
}

// The open-loop generator offers its rate whatever the server does: against
// a real server at a modest rate it sends the schedule and gets the replies.
func TestNTPLoadOpenAgainstServer(t *testing.T) {
	s := startServer(t)
	r, err := RunNTPLoadOpen(context.Background(), NTPOpenLoad{Addr: s.Addr(), Rate: 5000, Clients: 2, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent+r.Late < 4990 || r.Sent+r.Late > 5000 || r.Sent < 4000 || r.Received < r.Sent*9/10 || r.Received > r.Sent {
		t.Fatalf("%v", r)
	}
	t.Log(r)
	// Against a port nobody answers, it still sends on schedule: open loop.
	r, err = RunNTPLoadOpen(context.Background(), NTPOpenLoad{Addr: "127.0.0.1:9", Rate: 2000, Clients: 1, Duration: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.Received != 0 || r.Sent+r.Late < 990 {
		t.Fatalf("unanswered: %v", r)
	}
	if _, err := RunNTPLoadOpen(context.Background(), NTPOpenLoad{Addr: s.Addr(), Rate: 0, Clients: 1, Duration: time.Second}); err == nil || !strings.Contains(err.Error(), "rate") {
		t.Fatalf("rate 0: %v", err)
	}
}
