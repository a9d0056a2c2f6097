package daemon

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meridiantime/meridian/config"
)

// Reload (SIGHUP) adds and removes NTP sources without a restart: an added
// source is polled and selected, a removed one disappears from the Sources
// call, the discipline and the metrics; a change that needs a restart is
// reported by key after the sources were applied; an invalid configuration
// changes nothing.
func TestReloadAddsAndRemovesSources(t *testing.T) {
	a, cancelA, doneA := startDaemon(t, "local_stratum: 1\nntp_server: {listen: [\"127.0.0.1:0\"]}\n")
	defer func() { cancelA(); <-doneA }()
	b, cancelB, doneB := startDaemon(t, "local_stratum: 1\nntp_server: {listen: [\"127.0.0.1:0\"]}\n")
	defer func() { cancelB(); <-doneB }()
	srcA, srcB := a.NTPServerAddr(), b.NTPServerAddr()
	yamlFor := func(extra string, addrs ...string) string {
		var s []string
		for _, ad := range addrs {
			s = append(s, fmt.Sprintf("{type: ntp, address: %q, poll: 125ms}", ad))
		}
		return extra + "sources: [" + strings.Join(s, ", ") + "]\n"
	}
	c, cancelC, doneC := startDaemon(t, yamlFor("ntp_server: {listen: [\"127.0.0.1:0\"]}\n", srcA))
	defer func() { cancelC(); <-doneC }()
	reload := func(y string) error {
		cfg, err := config.Parse([]byte(y))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Shm, cfg.StateDir, cfg.Metrics, cfg.GRPC = c.cfg.Shm, c.cfg.StateDir, c.cfg.Metrics, c.cfg.GRPC
		cfg.NTPServer.Listen = c.cfg.NTPServer.Listen
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return c.Reload(ctx, cfg)
	}
	states := func() map[string]string {
		m := map[string]string{}
		for _, s := range c.sourceInfo() {
			m[s.Name] = s.State
		}
		return m
	}
	waitFor := func(what string, ok func(map[string]string) bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(states()); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: states %v", what, states())
			}
		}
	}
	nA, nB := "ntp:"+srcA, "ntp:"+srcB
	waitFor("A selected", func(m map[string]string) bool { return m[nA] == "selected" })
	if err := reload(yamlFor("", srcA, srcB)); err != nil {
		t.Fatal(err)
	}
	waitFor("A and B selected", func(m map[string]string) bool { return m[nA] == "selected" && m[nB] == "selected" })
	if err := reload(yamlFor("", srcB)); err != nil {
		t.Fatal(err)
	}
	waitFor("only B", func(m map[string]string) bool { _, hasA := m[nA]; return !hasA && m[nB] == "selected" })
	time.Sleep(200 * time.Millisecond) // updates after the removal
	c.reportsMu.Lock()
	_, inReports := c.reports[nA]
	c.reportsMu.Unlock()
	if inReports {
		t.Fatalf("the discipline still reports %s", nA)
	}
	resp, err := http.Get("http://" + c.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), nA) || !strings.Contains(string(body), nB) {
		t.Fatalf("metrics after removing %s:\n%s", nA, body)
	}
	// A key a reload cannot apply: named, sources still applied.
	err = reload(yamlFor("max_error: 2s\n", srcA, srcB))
	if err == nil || !strings.Contains(err.Error(), "max_error") {
		t.Fatalf("max_error change: %v", err)
	}
	waitFor("A back", func(m map[string]string) bool { return m[nA] == "selected" && m[nB] == "selected" })
	// Selection options and the server's access list apply at once.
	served := func() bool {
		conn, err := net.Dial("udp", c.NTPServerAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		req := make([]byte, 48)
		req[0] = 4<<3 | 3 // version 4, client
		_, _ = conn.Write(req)
		_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err = conn.Read(make([]byte, 128))
		return err == nil
	}
	if !served() {
		t.Fatal("C's server does not answer before the deny")
	}
	opts := strings.Replace(yamlFor("ntp_server: {deny: [\"127.0.0.0/8\"]}\n", srcA, srcB), "poll: 125ms}]", "poll: 125ms, noselect: true}]", 1)
	if err := reload(opts); err != nil {
		t.Fatal(err)
	}
	waitFor("B noselect", func(m map[string]string) bool { return m[nB] == "noselect" && m[nA] == "selected" })
	if served() {
		t.Fatal("C's server still answers 127.0.0.1 after a reload denied it")
	}
	// Invalid: nothing changes.
	bad, _ := config.Parse([]byte(yamlFor("", srcA)))
	bad.MinSources = 99
	if err := c.Reload(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "min_sources") {
		t.Fatalf("invalid config: %v", err)
	}
	if m := states(); len(m) != 2 {
		t.Fatalf("an invalid reload changed the sources: %v", m)
	}
}
