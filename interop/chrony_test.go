package interop

import (
	"fmt"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/meridiantime/meridian/truetime"
)

// (a) chronyd as a client of meridiand, whose virtual clock runs +2.5 ms
// ahead of the host clock: chrony must measure that offset within 50 µs and
// see a synchronized, selectable server.
func TestChronyMeasuresMeridianServer(t *testing.T) {
	port := freeUDPPort(t)
	startMeridian(t, fmt.Sprintf("local_stratum: 1\nclock_offset: +2.5ms\nntp_server: {listen: [\"127.0.0.1:%d\"]}\n", port))
	sock := chronyd(t, fmt.Sprintf("server 127.0.0.1 port %d iburst minpoll -4 maxpoll -4", port))
	// chronyd -x keeps its corrections virtual: the measured offset moves
	// into tracking's "system time" (CSV field 5, index 4): how far the
	// (uncorrected) host clock is from the time chrony got from us. It is
	// positive when the host is behind the server.
	var offsets []float64
	deadline := time.Now().Add(40 * time.Second)
	for time.Now().Before(deadline) && len(offsets) < 10 {
		time.Sleep(time.Second)
		if r := chronyc(t, sock, "sources"); len(r) != 1 || r[0][5] == "0" {
			continue
		}
		tr := chronyc(t, sock, "tracking")[0]
		if tr[2] != "2" { // chrony is one stratum below our stratum 1
			continue
		}
		off, err := strconv.ParseFloat(tr[4], 64)
		if err != nil {
			t.Fatal(err)
		}
		offsets = append(offsets, off)
	}
	if len(offsets) < 5 {
		t.Fatalf("chrony tracked us for only %d s", len(offsets))
	}
	last := offsets[len(offsets)-1]
	if math.Abs(last-0.0025) > 50e-6 {
		t.Fatalf("chrony measured %v s, want 0.0025 ± 50 µs (all: %v)", last, offsets)
	}
	st := chronyc(t, sock, "sources")[0][1]
	if st != "*" && st != "+" {
		t.Fatalf("chrony does not select meridiand (state %q)", st)
	}
	nd := chronyc(t, sock, "ntpdata")
	if len(nd) == 0 || !containsField(nd[0], "Normal") {
		t.Fatalf("ntpdata leap status is not Normal: %v", nd)
	}
	t.Logf("chrony's system-time offsets, one a second (want 0.0025): %v", offsets)
}

// (a, continued) A meridiand that cannot promise time (no sources, no local
// stratum) answers with LI=3 / stratum 16, and chrony sees it as
// unsynchronised.
func TestChronySeesUnsynchronizedMeridian(t *testing.T) {
	port := freeUDPPort(t)
	startMeridian(t, fmt.Sprintf("local_stratum: 0\nntp_server: {listen: [\"127.0.0.1:%d\"]}\n", port))
	sock := chronyd(t, fmt.Sprintf("server 127.0.0.1 port %d iburst minpoll -4 maxpoll -4", port))
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(time.Second)
		nd := chronyc(t, sock, "ntpdata")
		if len(nd) > 0 && containsField(nd[0], "Not synchronised") {
			if st := chronyc(t, sock, "sources")[0][1]; st == "*" || st == "+" {
				t.Fatalf("chrony selected an unsynchronized server (state %q)", st)
			}
			return
		}
	}
	t.Fatalf("chrony never reported the server as not synchronised: %v", chronyc(t, sock, "ntpdata"))
}

func containsField(r []string, v string) bool {
	for _, f := range r {
		if f == v {
			return true
		}
	}
	return false
}

// (b) meridiand, started 3 ms behind, uses chronyd (`local stratum 1`,
// serving the host clock) as its source: once synchronized its TrueTime
// interval contains the host clock on every read for 30 s.
func TestMeridianFollowsChrony(t *testing.T) {
	port := freeUDPPort(t)
	chronyd(t, fmt.Sprintf("local stratum 1\nallow 127.0.0.1\nport %d\nbindaddress 127.0.0.1", port))
	d := startMeridian(t, fmt.Sprintf(
		"local_stratum: 0\nclock_offset: -3ms\nsources: [{type: ntp, address: \"127.0.0.1:%d\", poll: 1s, iburst: true}]\n", port))
	tt := d.Clock()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := tt.Now(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("meridiand never synchronized to chronyd")
		}
		time.Sleep(20 * time.Millisecond)
	}
	end := time.Now().Add(30 * time.Second)
	reads := 0
	var worst float64
	for time.Now().Before(end) {
		before := time.Now().UnixNano()
		iv, err := tt.Now()
		after := time.Now().UnixNano()
		if err != nil {
			t.Fatalf("lost synchronization after %d reads: %v", reads, err)
		}
		if iv.LatestNS < before || iv.EarliestNS > after {
			t.Fatalf("read %d: interval [%d, %d] (ε %v) misses the host clock [%d, %d]",
				reads, iv.EarliestNS, iv.LatestNS, time.Duration(iv.EpsNS()), before, after)
		}
		worst = math.Max(worst, math.Abs(float64(iv.MidNS()-before)))
		reads++
		time.Sleep(2 * time.Millisecond)
	}
	e := tt.Estimate()
	if e.Status != truetime.Synchronized || e.Stratum != 2 {
		t.Fatalf("estimate %+v", e)
	}
	t.Logf("%d reads in 30 s contained the host clock; worst |mid − host| %v; final ε %v",
		reads, time.Duration(worst), time.Duration(truetime.Bound(tt.LocalNS(), e).EpsNS()))
}
