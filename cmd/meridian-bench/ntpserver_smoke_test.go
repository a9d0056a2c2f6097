package main

import (
	"context"
	"math"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meridiantime/meridian/bench"
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

// A round gives every contestant its whole duration in slices, taking
// turns: every pass over the contestants loads each once, in an order that
// changes from pass to pass (so no contestant always follows the same
// one), and the round sums what each slice measured.
func TestRoundInterleavesSlices(t *testing.T) {
	var order []string
	b := &ntpBench{dur: 4 * time.Second, slice: 250 * time.Millisecond, clients: 1, inflight: 1,
		load: func(_ context.Context, l bench.NTPLoad) (bench.NTPLoadResult, error) {
			order = append(order, l.Addr)
			if l.Duration != 250*time.Millisecond {
				t.Errorf("slice of %v, want 250ms", l.Duration)
			}
			return bench.NTPLoadResult{Sent: 10, Received: 7, Elapsed: l.Duration, LatencyP50: time.Duration(len(order)) * time.Microsecond}, nil
		}}
	var cs []*contestant
	for _, name := range []string{"a", "b", "c"} {
		cmd := exec.Command("sleep", "60") // a process whose CPU the round reads
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		cs = append(cs, &contestant{name: name, cmd: cmd, addr: name})
	}
	ms, err := b.round(cs, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(order) != 48 {
		t.Fatalf("%d slices, want 16 passes of 3", len(order))
	}
	preds := map[string]map[string]bool{}
	for p := 0; p < len(order); p += 3 {
		pass := order[p : p+3]
		if !slices.Contains(pass, "a") || !slices.Contains(pass, "b") || !slices.Contains(pass, "c") {
			t.Fatalf("pass %v does not load each contestant once", pass)
		}
	}
	for i := 1; i < len(order); i++ {
		if preds[order[i]] == nil {
			preds[order[i]] = map[string]bool{}
		}
		preds[order[i]][order[i-1]] = true
	}
	for _, c := range []string{"a", "b", "c"} {
		if len(preds[c]) < 3 {
			t.Errorf("%s followed only %v in %v: the order does not vary", c, preds[c], order)
		}
	}
	for i, m := range ms {
		if m.Server != cs[i].name || m.Round != 1 || m.Slices != 16 || m.Sent != 160 || m.Received != 112 || m.ElapsedS != 4 {
			t.Errorf("%+v: want 16 slices summed (160 sent, 112 received, 4 s)", m)
		}
		if m.RepliesPerS != 28 {
			t.Errorf("%s: %v replies/s, want 28", m.Server, m.RepliesPerS)
		}
	}
}

// Each server's ratio to the bare responder is taken within each round
// and then the median over rounds: a machine that is twice as fast in one
// round moves both servers, not the ratio (the ratio of the two medians,
// 140/150, differs).
func TestSummaryPairsWithinRounds(t *testing.T) {
	all := []measurement{
		{Round: 1, Server: "bare", CPUS: 1, ElapsedS: 1, RepliesPerCPU: 100},
		{Round: 1, Server: "meridiand", CPUS: 1, ElapsedS: 1, RepliesPerCPU: 90},
		{Round: 2, Server: "bare", CPUS: 1, ElapsedS: 1, RepliesPerCPU: 200},
		{Round: 2, Server: "meridiand", CPUS: 1, ElapsedS: 1, RepliesPerCPU: 190},
	}
	s := summarize(all, 2, time.Second)
	if got := s.PairedVsBare["meridiand"]; math.Abs(got-0.925) > 1e-9 {
		t.Errorf("paired meridiand/bare %v, want 0.925 (0.90 and 0.95)", got)
	}
	if s.PairedVsBare["bare"] != 1 {
		t.Errorf("bare/bare %v", s.PairedVsBare["bare"])
	}
	if r := s.PerCPU["meridiand"] / s.PerCPU["bare"]; math.Abs(r-140.0/150) > 1e-9 {
		t.Errorf("ratio of medians %v, want 140/150", r)
	}
}
