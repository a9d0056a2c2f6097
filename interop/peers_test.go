package interop

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meridiantime/meridian/config"
	"github.com/meridiantime/meridian/daemon"
	"github.com/meridiantime/meridian/impair"
	"github.com/meridiantime/meridian/internal/testdaemon"
	"github.com/meridiantime/meridian/truetime/shm"
)

// need returns the path of a peer program, skipping (or failing under CI).
func need(t testing.TB, prog string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required under CI (install it in .ci/run): %v", prog, err)
		}
		t.Skipf("%s not installed", prog)
	}
	return p
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// startMeridian runs a daemon in-process with temp dirs and a fast tick.
func startMeridian(t *testing.T, yaml string) *daemon.Daemon {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	testdaemon.TempPaths(t, cfg)
	cfg.Metrics.Listen = ""
	return testdaemon.Start(t, cfg, daemon.Options{Tick: 100 * time.Millisecond})
}

// chronyd runs chronyd -x (never adjusts the clock) under a bounding set
// without CAP_SYS_TIME, with every file in a temp dir. It returns the
// chronyc command socket.
func chronyd(t *testing.T, directives string) string {
	t.Helper()
	return chronydIn(t, nil, impair.A, directives)
}

// chronydIn is chronyd run inside side's namespace of p (on the host when p
// is nil).
func chronydIn(t *testing.T, p *impair.Pair, side impair.Side, directives string) string {
	t.Helper()
	bin := need(t, "chronyd")
	need(t, "chronyc")
	setpriv := need(t, "setpriv")
	dir := t.TempDir()
	_ = os.Chmod(dir, 0o700) // chronyd refuses a command socket in a group/world-accessible dir
	sock := filepath.Join(dir, "chronyd.sock")
	conf := fmt.Sprintf("%s\ncmdport 0\nbindcmdaddress %s\npidfile %s\ndriftfile %s\n",
		directives, sock, filepath.Join(dir, "chronyd.pid"), filepath.Join(dir, "drift"))
	cf := filepath.Join(dir, "chrony.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--bounding-set", "-sys_time", "--", bin, "-x", "-d", "-u", "root", "-f", cf}
	cmd := exec.Command(setpriv, args...)
	if p != nil {
		cmd = p.Command(side, setpriv, args...) // ip execs setpriv, setpriv execs chronyd: one PID
	}
	// Dies with the test binary (a timed-out run leaves no chronyd behind to
	// hold its ports): stopped by PID here, never by name anywhere.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	log, _ := os.Create(filepath.Join(dir, "chronyd.log"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("chronyd log:\n%s", b)
		}
	})
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(sock); err == nil {
			return sock
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("chronyd did not open its command socket")
	return ""
}

// chronyc runs one chronyc command in CSV mode and returns its lines' fields.
func chronyc(t *testing.T, sock string, args ...string) [][]string {
	t.Helper()
	out, err := exec.Command("chronyc", append([]string{"-h", sock, "-c"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("chronyc %v: %v\n%s", args, err, out)
	}
	var rows [][]string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			rows = append(rows, strings.Split(l, ","))
		}
	}
	return rows
}

// waitShm opens the segment a daemon just started will create at path,
// waiting up to ~10 s for it to appear, and closes it when the test ends;
// logTail (nil: none) adds the daemon's log to the failure.
func waitShm(t *testing.T, path string, logTail func() string) *shm.Reader {
	t.Helper()
	for i := 0; ; i++ {
		r, err := shm.Open(path)
		if err == nil {
			t.Cleanup(func() { r.Close() })
			return r
		}
		if i > 100 {
			msg := ""
			if logTail != nil {
				msg = "\n" + logTail()
			}
			t.Fatalf("the daemon's shm segment %s never appeared: %v%s", path, err, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
