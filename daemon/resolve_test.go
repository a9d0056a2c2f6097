package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// startLogged is startDaemonOpt with the daemon's log kept.
func startLogged(t *testing.T, yaml string, opt Options) (*Daemon, *lockedBuf, func()) {
	t.Helper()
	logs := &lockedBuf{}
	d, cancel, done := runDaemonLog(t, tempConfig(t, yaml), opt, slog.New(slog.NewTextHandler(logs, nil)))
	return d, logs, func() { cancel(); <-done }
}

func sourceState(d *Daemon, name string) string {
	for _, s := range d.sourceInfo() {
		if s.Name == name {
			return s.State
		}
	}
	return ""
}

// A source name is resolved at every start of the source: one that cannot
// be resolved yet is retried with a doubling backoff (the source is not
// lost, as it was after one DNS failure), and a named server that stopped
// answering for 8 polls is resolved again — here the name moves to a
// server that answers, and the source follows it.
func TestSourceNamesResolvedAgain(t *testing.T) {
	a, cancelA, doneA := startDaemon(t, "local_stratum: 1\nntp_server: {listen: [\"127.0.0.1:0\"]}\n")
	defer func() { cancelA(); <-doneA }()
	dead := freeUDPAddr(t) // nothing listens here
	var mu sync.Mutex
	var calls []time.Time
	target := "" // "": resolution fails
	resolve := func(addr string) (*net.UDPAddr, error) {
		mu.Lock()
		defer mu.Unlock()
		if addr != "time.example.test:123" {
			return nil, fmt.Errorf("unexpected name %q", addr)
		}
		calls = append(calls, time.Now())
		if target == "" {
			return nil, errors.New("no such host (test)")
		}
		return net.ResolveUDPAddr("udp", target)
	}
	b, logs, stop := startLogged(t, "sources: [{type: ntp, address: \"time.example.test\", poll: 125ms}]\n",
		Options{Tick: 20 * time.Millisecond, Resolve: resolve, SourceRetryMin: 100 * time.Millisecond})
	defer stop()
	name := "ntp:time.example.test:123"
	time.Sleep(800 * time.Millisecond) // 100 + 200 + 400 ms: four attempts
	mu.Lock()
	n := len(calls)
	var gaps []time.Duration
	for i := 1; i < len(calls); i++ {
		gaps = append(gaps, calls[i].Sub(calls[i-1]))
	}
	target = dead // resolvable now, but nobody answers there
	mu.Unlock()
	if n < 3 || n > 5 || gaps[1] < gaps[0]*3/2 {
		t.Fatalf("%d resolutions in 0.8 s, gaps %v: want a doubling backoff from 100 ms", n, gaps)
	}
	if !strings.Contains(logs.String(), "ntp source failed: retrying") {
		t.Fatalf("no retry logged:\n%s", logs.String())
	}
	// Unanswered at the dead address: after 8 polls the name is resolved
	// again; point it at A meanwhile.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "resolving its name again"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never re-resolved:\n%s", logs.String())
		}
	}
	mu.Lock()
	target = a.NTPServerAddr()
	mu.Unlock()
	for deadline := time.Now().Add(10 * time.Second); sourceState(b, name) != "selected"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the source did not follow its name to A: state %q\n%s", sourceState(b, name), logs.String())
		}
	}
}

// The configuration's selection options and the server's access list reach
// the running parts: a noselect source is measured but shown as noselect,
// never selected; a server whose allow list leaves out the client's
// address drops its requests (counted), so that source never answers.
func TestSourceOptionsAndAccessWired(t *testing.T) {
	a, cancelA, doneA := startDaemon(t, "local_stratum: 1\nntp_server: {listen: [\"127.0.0.1:0\"]}\n")
	defer func() { cancelA(); <-doneA }()
	b, cancelB, doneB := startDaemon(t, "local_stratum: 1\nntp_server: {listen: [\"127.0.0.1:0\"]}\n")
	defer func() { cancelB(); <-doneB }()
	closed, cancelC, doneC := startDaemon(t, "local_stratum: 1\nntp_server: {listen: [\"127.0.0.1:0\"], allow: [\"127.0.0.2/32\"], deny: [\"127.0.0.0/8\"]}\n")
	defer func() { cancelC(); <-doneC }()
	c, cancel, done := startDaemon(t, fmt.Sprintf(`sources:
  - {type: ntp, address: %q, poll: 125ms}
  - {type: ntp, address: %q, poll: 125ms, noselect: true}
  - {type: ntp, address: %q, poll: 125ms}
`, a.NTPServerAddr(), b.NTPServerAddr(), closed.NTPServerAddr()))
	defer func() { cancel(); <-done }()
	na, nb, nc := "ntp:"+a.NTPServerAddr(), "ntp:"+b.NTPServerAddr(), "ntp:"+closed.NTPServerAddr()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if sourceState(c, na) == "selected" && sourceState(c, nb) == "noselect" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("states: a %q, b %q", sourceState(c, na), sourceState(c, nb))
		}
	}
	for _, s := range c.sourceInfo() {
		if s.Name == nb && s.Valid == 0 {
			t.Fatal("the noselect source was not measured")
		}
		if s.Name == nc && s.Valid != 0 {
			t.Fatalf("the server that denies us answered %d times", s.Valid)
		}
	}
	if v, ok := metricValue(t, closed, "meridian_ntp_server_dropped_denied_total"); !ok || v == 0 {
		t.Fatalf("denied requests counted: %v %v", v, ok)
	}
}
