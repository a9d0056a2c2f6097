package daemon

import (
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/meridiantime/meridian/internal/sdnotify"
)

// Type=notify: the daemon says READY=1 once it serves, its status as it
// changes, pings the watchdog from its update loop at half WATCHDOG_USEC,
// and STOPPING=1 when it stops.
func TestSystemdNotify(t *testing.T) {
	p := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Net: "unixgram", Name: p})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Setenv("NOTIFY_SOCKET", p)
	t.Setenv("WATCHDOG_USEC", "200000")
	t.Setenv("WATCHDOG_PID", "")
	n, err := sdnotify.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	_, cancel, done := startDaemonOpt(t, "local_stratum: 1\n", Options{Tick: 20 * time.Millisecond, Notifier: n})
	var got []string
	buf := make([]byte, 1024)
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	for {
		k, err := c.Read(buf)
		if err != nil {
			break
		}
		got = append(got, string(buf[:k]))
		if strings.Count(strings.Join(got, "|"), "WATCHDOG=1") >= 3 {
			break
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		k, err := c.Read(buf)
		if err != nil {
			break
		}
		got = append(got, string(buf[:k]))
		if string(buf[:k]) == "STOPPING=1" {
			break
		}
	}
	all := strings.Join(got, "|")
	if !strings.HasPrefix(all, "READY=1") || !strings.Contains(all, "STATUS=synchronized") ||
		strings.Count(all, "WATCHDOG=1") < 3 || !strings.HasSuffix(all, "STOPPING=1") {
		t.Fatalf("notifications %q", got)
	}
}

// meridian_build_info is 1 with the build's Go version as a label.
func TestBuildInfoMetric(t *testing.T) {
	d, cancel, done := startDaemon(t, "local_stratum: 1\n")
	defer func() { cancel(); <-done }()
	resp, err := http.Get("http://" + d.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !regexp.MustCompile(`(?m)^meridian_build_info\{goversion="go1\.[^"]+",revision="[^"]*",version="[^"]+"\} 1$`).Match(body) {
		t.Fatalf("no meridian_build_info in\n%s", body)
	}
	// The clock read path is exported; on linux/amd64 it is the vDSO.
	want := `(?m)^meridian_clock_read_path\{frame_bytes="\d+",method="(vdso|syscall)"\} 1$`
	if runtime.GOARCH == "amd64" {
		want = `(?m)^meridian_clock_read_path\{frame_bytes="\d+",method="vdso"\} 1$`
	}
	if !regexp.MustCompile(want).Match(body) {
		t.Fatalf("no meridian_clock_read_path matching %s in\n%s", want, body)
	}
}
