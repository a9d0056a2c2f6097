package daemon

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// A pool entry (chrony's pool): the name's addresses become sources, at
// most max_sources of them; a member that stops answering for 8 polls is
// dropped and replaced by an address not in use.
func TestPoolMembersReplaced(t *testing.T) {
	_, portS, _ := net.SplitHostPort(freeUDPAddr(t))
	var servers [3]*Daemon
	var stops [3]func()
	for i := range servers {
		d, cancel, done := startDaemon(t, fmt.Sprintf("local_stratum: 1\nntp_server: {listen: [\"127.0.0.%d:%s\"]}\n", i+1, portS))
		servers[i], stops[i] = d, func() { cancel(); <-done }
	}
	defer func() {
		for _, s := range stops {
			if s != nil {
				s()
			}
		}
	}()
	lookup := func(_ context.Context, host string) ([]netip.Addr, error) {
		if host != "pool.test" {
			return nil, fmt.Errorf("no such host %q", host)
		}
		return []netip.Addr{netip.MustParseAddr("127.0.0.3"), netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")}, nil
	}
	c, logs, stop := startLogged(t, fmt.Sprintf("sources: [{type: pool, address: \"pool.test:%s\", max_sources: 2, poll: 125ms}]\n", portS),
		Options{Tick: 20 * time.Millisecond, LookupHost: lookup})
	defer stop()
	name := func(i int) string { return fmt.Sprintf("ntp:127.0.0.%d:%s", i, portS) }
	states := func() map[string]string {
		m := map[string]string{}
		for _, s := range c.sourceInfo() {
			m[s.Name] = s.State
		}
		return m
	}
	wait := func(what string, ok func(map[string]string) bool) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); !ok(states()); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v\n%s", what, states(), logs.String())
			}
		}
	}
	wait("two members selected", func(m map[string]string) bool {
		return len(m) == 2 && m[name(1)] == "selected" && m[name(2)] == "selected"
	})
	stops[0]()
	stops[0] = nil
	wait("127.0.0.1 replaced by 127.0.0.3", func(m map[string]string) bool {
		_, has1 := m[name(1)]
		return !has1 && len(m) == 2 && m[name(3)] == "selected" && m[name(2)] == "selected"
	})
	if n := strings.Count(logs.String(), "pool member unreachable: replacing it"); n != 1 {
		t.Fatalf("%d replacement log lines:\n%s", n, logs.String())
	}
}
