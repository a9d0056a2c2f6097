package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/bench/report"
)

func execute(args ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	root := newRoot(&o, &e)
	root.SetArgs(args)
	err = root.Execute()
	return o.String(), e.String(), err
}

// exitCode is what main does with err.
func exitCode(err error) int {
	var e exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &e):
		return e.code
	}
	return 2
}

func TestUsageErrorsExit2(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"bogus"}, 2, `unknown command "bogus"`},
		{[]string{"truetime", "--bogus"}, 2, "unknown flag: --bogus"},
		{[]string{"sim", "--worlds", "many"}, 2, `invalid argument "many"`},
		{[]string{"commit-wait", "--backend", "etcd"}, 2, "memory only"},
		{[]string{"truetime", "--duration", "3m"}, 2, "--duration 3m0s: want (0, 2m]"},
		{[]string{"report"}, 2, "--out DIR is required"},
		{[]string{"accuracy", "--paths", "nowhere"}, 2, "nowhere"},
		{[]string{"accuracy", "--server", "bogus"}, 2, `server: unknown "bogus"`},
		{[]string{"accuracy", "--server", "chronyd", "--contestants", "meridian-ptp"}, 2, "a chronyd server serves no PTP"},
		{[]string{"accuracy", "--server", "chronyd", "--offset", "1ms"}, 2, "only 0 is possible"},
		{[]string{"stability"}, 2, "--out DIR is required"},
		{[]string{"ptp-server", "--meridiand", "/nonexistent"}, 2, `meridiand binary "/nonexistent"`},
		{[]string{"report", "--out", "/nonexistent/dir"}, 1, "results.json"},
		{[]string{"truetime", "--meridiand", "/nonexistent/meridiand"}, 1, "--meridiand"},
	} {
		_, _, err := execute(c.args...)
		if got := exitCode(err); got != c.code || err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: exit %d, error %v; want exit %d and an error containing %q", c.args, got, err, c.code, c.want)
		}
	}
	// Control: a good command exits 0.
	if out, _, err := execute("--version"); err != nil || !strings.Contains(out, "meridian-bench") {
		t.Errorf("--version: %q, %v", out, err)
	}
}

// The results directory is merged, not overwritten: a subcommand replaces
// its own sections and keeps everyone else's.
func TestFinishMergesResults(t *testing.T) {
	dir := t.TempDir()
	other := &report.Results{Title: "earlier run",
		ServerEfficiency: &report.ServerEfficiency{Rows: []report.EfficiencyRow{{Name: "meridiand", RepliesPerCPUSecond: 1, SocketLimitPerCPUSecond: 2}}},
		NotMeasured:      map[string]string{report.SectionCoverage: "skipped", report.SectionStability: "no PHC"},
		Tables:           []report.Table{{ID: "other", Heading: "h", Columns: []string{"c"}, Rows: [][]string{{"1"}}}}}
	if err := report.Save(dir, other); err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	g := &globalFlags{json: true, out: dir, stdout: &stdout, stderr: &bytes.Buffer{}}
	for _, v := range []string{"1", "2"} {
		err := g.finish("sim", map[string]string{"v": v}, func(r *report.Results) {
			r.SetTable(report.Table{ID: tableSimScenarios, Heading: "h", Columns: []string{"v"}, Rows: [][]string{{v}}})
			r.Coverage = &report.Coverage{}
			filled(r, report.SectionCoverage)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := report.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Title != "earlier run" || got.ServerEfficiency == nil || got.Table("other") == nil || got.NotMeasured[report.SectionStability] != "no PHC" {
		t.Errorf("other sections lost: %+v", got)
	}
	if _, ok := got.NotMeasured[report.SectionCoverage]; ok || got.Coverage == nil {
		t.Errorf("coverage: %+v, not measured %q", got.Coverage, got.NotMeasured)
	}
	if len(got.Tables) != 2 || got.Table(tableSimScenarios).Rows[0][0] != "2" {
		t.Errorf("tables: %+v", got.Tables)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "sim.json"))
	if !strings.Contains(string(raw), `"v": "2"`) || strings.Count(stdout.String(), `"v"`) != 2 {
		t.Errorf("sim.json %q, stdout %q", raw, stdout.String())
	}
	// A results.json that does not validate is an error, never overwritten.
	bad := []byte(`{"title":"x","colour":"red"}`)
	_ = os.WriteFile(filepath.Join(dir, report.ResultsFile), bad, 0o644)
	if err := g.finish("sim", 1, func(*report.Results) {}); err == nil || !strings.Contains(err.Error(), "colour") {
		t.Errorf("invalid results.json: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, report.ResultsFile)); !bytes.Equal(b, bad) {
		t.Error("invalid results.json overwritten")
	}
}

// openPTY opens a pseudo-terminal pair (posix_openpt, unlockpt, ptsname).
func openPTY(t *testing.T) (master, slave *os.File) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Skipf("ptsname: %v", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Skipf("open pts: %v", err)
	}
	t.Cleanup(func() { s.Close(); m.Close() })
	// A new pseudo-terminal is 0×0: give it a terminal's size.
	if err := unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 80}); err != nil {
		t.Fatal(err)
	}
	return m, s
}

func TestProgressPlainLinesIntoAPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pr := newProgress(w)
	if _, ok := pr.(*lines); !ok {
		t.Fatalf("a pipe got %T, want plain lines", pr)
	}
	set := pr.task("phase", 20)
	for i := 1; i <= 20; i++ {
		set(i)
	}
	pr.wait()
	w.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(r)
	out := b.String()
	if strings.ContainsAny(out, "\x1b\r") {
		t.Errorf("escape codes or carriage returns into a pipe: %q", out)
	}
	if !strings.Contains(out, "meridian-bench: phase: 0/20\n") || !strings.Contains(out, "meridian-bench: phase: 20/20\n") || strings.Count(out, "\n") > 12 {
		t.Errorf("progress lines: %q", out)
	}
	// Also into a regular file and a buffer.
	if _, ok := newProgress(&bytes.Buffer{}).(*lines); !ok {
		t.Error("a buffer got bars")
	}
}

// The other side of the detection (and so the pipe test's control): a
// terminal gets bars, drawn with escape codes.
func TestProgressBarsOnATerminal(t *testing.T) {
	m, s := openPTY(t)
	if !isTerminal(s) {
		t.Fatal("a pseudo-terminal is not detected as a terminal")
	}
	pr := newProgress(s)
	if _, ok := pr.(*bars); !ok {
		t.Fatalf("a terminal got %T, want bars", pr)
	}
	done := make(chan []byte)
	go func() {
		var b []byte
		buf := make([]byte, 4096)
		for {
			n, err := m.Read(buf)
			b = append(b, buf[:n]...)
			if err != nil { // EIO once the slave side is closed
				done <- b
				return
			}
		}
	}()
	set := pr.task("phase", 3)
	set(1)
	time.Sleep(400 * time.Millisecond) // mpb redraws every 150 ms: the redraw moves the cursor up
	set(3)
	unfinished := pr.task("failed midway", 5) // wait must not block on it
	unfinished(1)
	pr.wait()
	time.Sleep(100 * time.Millisecond)
	s.Close()
	out := <-done
	if !bytes.Contains(out, []byte("\x1b[")) {
		t.Errorf("no escape codes on a terminal: %q", out)
	}
}
