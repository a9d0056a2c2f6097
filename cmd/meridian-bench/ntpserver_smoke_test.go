package main

import (
	"strings"
	"testing"
	"time"
)

// rounds builds the measurements of n rounds with the given replies per
// CPU-second for bare, meridiand and chronyd, each with cpu of server time.
func rounds(n int, bare, md, chr float64, cpu time.Duration) []measurement {
	var all []measurement
	for r := 1; r <= n; r++ {
		for name, v := range map[string]float64{"bare": bare, "meridiand": md, "chronyd": chr} {
			all = append(all, measurement{Round: r, Server: name, Sent: 1000, Received: 1000, CPUS: cpu.Seconds(), RepliesPerCPU: v})
		}
	}
	return all
}

// The smoke passes at the measured ratios and fails below floor − margin,
// on any bad reply, on a silent meridiand and when too few rounds could be
// judged.
func TestSmokeVerdict(t *testing.T) {
	ok := floorVsBare - marginVsBare/2
	okChr := floorVsChronyd - marginVsChronyd/2
	cases := []struct {
		name    string
		all     []measurement
		chronyd bool
		fail    string // "" → pass
	}{
		{"at the floors", rounds(5, 300e3, 300e3*floorVsBare, 300e3*floorVsBare/floorVsChronyd, time.Second), true, ""},
		{"within the margins", rounds(5, 300e3, 300e3*ok, 300e3*ok/okChr, time.Second), true, ""},
		{"below bare's", rounds(5, 300e3, 300e3*(floorVsBare-marginVsBare-0.01), 100e3, time.Second), true, "meridiand/bare"},
		{"below chronyd's", rounds(5, 300e3, 300e3, 300e3/(floorVsChronyd-marginVsChronyd-0.01), time.Second), true, "meridiand/chronyd"},
		{"chronyd's unchecked without it", rounds(5, 300e3, 300e3, 300e3, time.Second), false, ""},
		{"too busy to judge", rounds(5, 300e3, 300e3, 100e3, minJudgedCPU/2), true, "inconclusive"},
	}
	for _, c := range cases {
		s := summarize(c.all, 5, 2*time.Second)
		v := checkSmoke(s, c.chronyd)
		if c.fail == "" && !v.Pass || c.fail != "" && (v.Pass || !strings.Contains(v.Reason, c.fail)) {
			t.Errorf("%s: pass %v, reason %q (want failure %q)", c.name, v.Pass, v.Reason, c.fail)
		}
	}
	all := rounds(5, 300e3, 300e3, 100e3, time.Second)
	all[4].Bad = 1
	if v := checkSmoke(summarize(all, 5, 2*time.Second), true); v.Pass || !strings.Contains(v.Reason, "bad replies") {
		t.Errorf("a bad reply passed: %+v", v)
	}
	all = rounds(5, 300e3, 300e3, 100e3, time.Second)
	all[4].Unsync = 1
	if v := checkSmoke(summarize(all, 5, 2*time.Second), true); v.Pass || !strings.Contains(v.Reason, "unsynchronized") {
		t.Errorf("an unsynchronized reply passed: %+v", v)
	}
	all = rounds(5, 300e3, 300e3, 100e3, time.Second)
	for i := range all {
		if all[i].Server == "meridiand" && all[i].Round == 2 {
			all[i].Received, all[i].RepliesPerCPU = 0, 0
		}
	}
	if v := checkSmoke(summarize(all, 5, 2*time.Second), true); v.Pass || !strings.Contains(v.Reason, "answered nothing") {
		t.Errorf("a silent meridiand passed: %+v", v)
	}
}
