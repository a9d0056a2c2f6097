package interop

import (
	"fmt"
	"testing"
	"time"

	"github.com/beevik/ntp"
)

// (d) beevik/ntp, an independent client implementation, validates our
// replies and measures the injected offset; an unsynchronized meridiand
// fails its validation (LI=3).
func TestBeevikQueries(t *testing.T) {
	port := freeUDPPort(t)
	startMeridian(t, fmt.Sprintf("local_stratum: 2\nclock_offset: +2.5ms\nntp_server: {listen: [\"127.0.0.1:%d\"]}\n", port))
	var r *ntp.Response
	var err error
	for i := 0; i < 50; i++ {
		if r, err = ntp.QueryWithOptions("127.0.0.1", ntp.QueryOptions{Port: port, Timeout: time.Second}); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Validate(); err != nil {
		t.Fatalf("beevik rejects our reply: %v", err)
	}
	if r.Stratum != 2 || r.Leap != ntp.LeapNoWarning {
		t.Fatalf("stratum %d leap %v", r.Stratum, r.Leap)
	}
	// NTP's own guarantee: the true offset lies within the measured one ±
	// RTT/2 (plus the server's advertised root values, ~µs here).
	for i := 0; i < 5; i++ {
		r, err := ntp.QueryWithOptions("127.0.0.1", ntp.QueryOptions{Port: port, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		bound := r.RTT/2 + r.RootDistance + 20*time.Microsecond
		if d := r.ClockOffset - 2500*time.Microsecond; d.Abs() > bound {
			t.Fatalf("beevik offset %v, want +2.5ms ± %v (RTT %v)", r.ClockOffset, bound, r.RTT)
		}
	}

	port2 := freeUDPPort(t)
	startMeridian(t, fmt.Sprintf("local_stratum: 0\nntp_server: {listen: [\"127.0.0.1:%d\"]}\n", port2))
	r, err = ntp.QueryWithOptions("127.0.0.1", ntp.QueryOptions{Port: port2, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if r.Leap != ntp.LeapNotInSync || r.Validate() == nil {
		t.Fatalf("unsynchronized server: leap %v validate %v", r.Leap, r.Validate())
	}
}
