// Package sdnotify speaks systemd's notification protocol (sd_notify(3)):
// newline-separated KEY=VALUE lines in one datagram to the unix socket
// named by $NOTIFY_SOCKET ("@" prefix: the abstract namespace). Without
// $NOTIFY_SOCKET every call is a no-op, so the daemon runs the same under
// Type=simple, Type=notify or no systemd at all.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// Notifier sends notifications; the zero value (no socket) sends nothing.
type Notifier struct {
	addr     *net.UnixAddr
	watchdog time.Duration
}

// FromEnv reads $NOTIFY_SOCKET, and $WATCHDOG_USEC (honoured when
// $WATCHDOG_PID is unset or this process's PID).
func FromEnv() (Notifier, error) {
	var n Notifier
	p := os.Getenv("NOTIFY_SOCKET")
	if p == "" {
		return n, nil
	}
	if p[0] != '/' && p[0] != '@' {
		return n, fmt.Errorf("sdnotify: NOTIFY_SOCKET=%q: want an absolute path or @abstract name", p)
	}
	n.addr = &net.UnixAddr{Net: "unixgram", Name: p}
	if p[0] == '@' {
		n.addr.Name = "\x00" + p[1:]
	}
	if us := os.Getenv("WATCHDOG_USEC"); us != "" {
		if pid := os.Getenv("WATCHDOG_PID"); pid == "" || pid == strconv.Itoa(os.Getpid()) {
			v, err := strconv.ParseInt(us, 10, 64)
			if err != nil || v <= 0 {
				return n, fmt.Errorf("sdnotify: WATCHDOG_USEC=%q: want a positive integer", us)
			}
			n.watchdog = time.Duration(v) * time.Microsecond
		}
	}
	return n, nil
}

// Enabled reports whether a notification socket is set.
func (n Notifier) Enabled() bool { return n.addr != nil }

// WatchdogInterval is how often to send WATCHDOG=1: half the watchdog
// timeout, as sd_watchdog_enabled(3) advises; 0 when there is none.
func (n Notifier) WatchdogInterval() time.Duration { return n.watchdog / 2 }

// Notify sends state (e.g. "READY=1\nSTATUS=synchronized").
func (n Notifier) Notify(state string) error {
	if n.addr == nil {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	return nil
}
