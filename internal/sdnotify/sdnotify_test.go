package sdnotify

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Net: "unixgram", Name: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestNotifyPathAndAbstract(t *testing.T) {
	p := filepath.Join(t.TempDir(), "notify.sock")
	c := listen(t, p)
	t.Setenv("NOTIFY_SOCKET", p)
	t.Setenv("WATCHDOG_USEC", "")
	n, err := FromEnv()
	if err != nil || !n.Enabled() || n.WatchdogInterval() != 0 {
		t.Fatalf("%+v %v", n, err)
	}
	if err := n.Notify("READY=1\nSTATUS=synchronized"); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, c); got != "READY=1\nSTATUS=synchronized" {
		t.Fatalf("got %q", got)
	}
	abs := "@meridian-test-" + strconv.Itoa(os.Getpid())
	ca := listen(t, "\x00"+abs[1:])
	t.Setenv("NOTIFY_SOCKET", abs)
	n, _ = FromEnv()
	if err := n.Notify("WATCHDOG=1"); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, ca); got != "WATCHDOG=1" {
		t.Fatalf("abstract: got %q", got)
	}
}

func TestEnvironment(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if n, err := FromEnv(); err != nil || n.Enabled() || n.Notify("READY=1") != nil {
		t.Fatalf("no socket: %+v %v", n, err)
	}
	t.Setenv("NOTIFY_SOCKET", "relative.sock")
	if _, err := FromEnv(); err == nil {
		t.Fatal("relative NOTIFY_SOCKET accepted")
	}
	t.Setenv("NOTIFY_SOCKET", "/run/x.sock")
	t.Setenv("WATCHDOG_USEC", "3000000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	if n, err := FromEnv(); err != nil || n.WatchdogInterval() != 1500*time.Millisecond {
		t.Fatalf("watchdog: %v %v", n.WatchdogInterval(), err)
	}
	t.Setenv("WATCHDOG_PID", "1")
	if n, _ := FromEnv(); n.WatchdogInterval() != 0 {
		t.Fatal("another process's watchdog honoured")
	}
	t.Setenv("WATCHDOG_PID", "")
	t.Setenv("WATCHDOG_USEC", "soon")
	if _, err := FromEnv(); err == nil {
		t.Fatal("bad WATCHDOG_USEC accepted")
	}
}
