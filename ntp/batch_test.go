package ntp

import (
	"fmt"
	"testing"
	"time"

	"github.com/meridiantime/meridian/ntp/engine"
)

// bracketRun sends bursts of requests from one client socket with kernel
// receive stamps to a batched server serving this host's clock, each
// request's transmit field set to the host clock just before its write
// (t1), and checks every reply against the host clock: t1 ≤ receive ≤
// transmit ≤ the client's kernel receive stamp of the reply (t4,
// CLOCK_REALTIME). It returns the violations and how many replies shared
// their transmit timestamp with another (answered in one batch: the burst
// exercised the per-batch clock read).
func bracketRun(t *testing.T, s *Server, bursts, perBurst int) (bad []string, batched int) {
	t.Helper()
	if err := s.Listen("127.0.0.1:0", 1); err != nil {
		t.Fatal(err)
	}
	serve(t, s)
	cl := newXClient(t, "127.0.0.1:0", s.Addr())
	seen := map[uint64]int{}
	for k := range bursts {
		t1s := map[uint64]bool{}
		for range perBurst {
			t1 := engine.ToNTP(time.Now().UnixNano())
			t1s[t1] = true
			if _, err := cl.c.Write(xreq(0, 0, t1)); err != nil {
				t.Fatal(err)
			}
		}
		for range perBurst {
			h, t4 := cl.read(t)
			t1 := engine.ToUnixNS(h.Origin, t4)
			rx, tx := engine.ToUnixNS(h.Receive, t4), engine.ToUnixNS(h.Transmit, t4)
			seen[h.Transmit]++
			// NTP timestamps resolve 0.23 ns and ToNTP truncates: 1 ns slack.
			if !t1s[h.Origin] || t1 > rx+1 || rx > tx || tx > t4+1 {
				bad = append(bad, fmt.Sprintf("burst %d: t1 %d, receive %+d, transmit %+d, client receipt %+d ns (known origin %v)",
					k, t1, rx-t1, tx-t1, t4-t1, t1s[h.Origin]))
			}
		}
	}
	for _, n := range seen {
		if n > 1 {
			batched += n
		}
	}
	return bad, batched
}

// The batched server reads the served clock once per batch, after the
// batch's receive, and uses that reading as every reply's transmit
// timestamp: against the host clock each reply's receive and transmit
// timestamps lie between the request's send and the reply's arrival.
func TestBatchTimestampsBracketedByHostClock(t *testing.T) {
	s := NewServer(hostTS{}, RateLimit{}, quietLog())
	bad, batched := bracketRun(t, s, 50, 16)
	if len(bad) > 0 {
		t.Fatalf("%d of %d replies outside the host-clock bracket, first: %s", len(bad), 50*16, bad[0])
	}
	if batched == 0 {
		t.Fatal("no two replies answered in one batch: the test did not exercise the per-batch read")
	}
	t.Logf("%d of %d replies answered in batches of more than one", batched, 50*16)
}

// Negative control: a transmit reading 200 µs late (test knob) puts replies'
// transmit timestamps after their arrival, and the bracket reports it.
func TestBatchTimestampsNegativeControl(t *testing.T) {
	s := NewServer(hostTS{}, RateLimit{}, quietLog())
	s.testTxShiftNS = 200_000
	bad, _ := bracketRun(t, s, 5, 16)
	if len(bad) == 0 {
		t.Fatal("transmit timestamps 200 µs late went unnoticed")
	}
	t.Logf("detected: %s (%d of %d)", bad[0], len(bad), 5*16)
}
