package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meridiantime/meridian/bench/ptpload"
	"github.com/meridiantime/meridian/bench/report"
)

// TestPTPServerSmoke builds meridiand and meridian-bench and runs
// `meridian-bench ptp-server --smoke --out DIR` (MERIDIAN_BENCH_SMOKE=1;
// root for the namespaces and ptp4l, loopback and meridiand alone
// otherwise): exit 0, well-formed JSON with finite measured numbers > 0,
// meridiand serving ≥ 99% of 1000 clients, and a results.json that
// report.Load accepts, with meridiand's efficiency row.
func TestPTPServerSmoke(t *testing.T) {
	dir := smokeBinaries(t, "meridian-bench ptp-server --smoke, about 30 s")
	out := filepath.Join(dir, "out")
	cmd := exec.Command(filepath.Join(dir, "meridian-bench"), "ptp-server", "--smoke", "--out", out, "--meridiand", filepath.Join(dir, "meridiand"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("meridian-bench ptp-server --smoke: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	// Not a terminal: plain lines, no bar drawing.
	if strings.ContainsAny(stderr.String(), "\r\x1b") || !strings.Contains(stderr.String(), "meridian-bench: ptp-server: meridiand 1000 clients: 4/4") {
		t.Errorf("progress on a pipe should be plain lines:\n%q", stderr.String())
	}
	b, err := os.ReadFile(filepath.Join(out, "ptp-server.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep ptpServerReport
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("ptp-server.json: %v\n%s", err, b)
	}
	var md *ptpServerRun
	for i, r := range rep.Runs {
		for name, v := range map[string]float64{"client_seconds_per_cpu_second": r.ClientSecondsPerCPUSecond, "replies_per_cpu_second": r.RepliesPerCPUSecond,
			"cpu_s": r.CPUSeconds, "cpu_percent": r.CPUPercent, "elapsed_s": r.ElapsedS, "sync_served": r.SyncServed, "delay_resp_served": r.DelayRespServed,
			"rss_end_kb": float64(r.RSSEndKB)} {
			if !(v > 0) || math.IsInf(v, 0) {
				t.Errorf("runs[%d] (%s).%s = %v: want finite and > 0", i, r.Server, name, v)
			}
		}
		if r.Server == ptpload.ServerMeridiand {
			md = &rep.Runs[i]
		}
	}
	if md == nil || md.Clients != 1000 || md.Seconds != 3 {
		t.Fatalf("no meridiand run of 1000 clients for 3 s: %+v", rep.Runs)
	}
	if md.SyncServed < 0.99 || md.DelayRespServed < 0.99 {
		t.Errorf("meridiand served %.3f of the Syncs and %.3f of the Delay_Resps: want ≥ 0.99", md.SyncServed, md.DelayRespServed)
	}
	if os.Geteuid() == 0 && rep.Mode != "netns" {
		t.Errorf("as root the mode is %q, want netns", rep.Mode)
	}
	res, err := report.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if res.ServerEfficiency == nil || !strings.Contains(res.ServerEfficiency.Rows[0].Name, "meridiand, 1000 unicast clients") {
		t.Fatalf("results.json: server efficiency %+v", res.ServerEfficiency)
	}
}

// --out merges: rows of other subcommands and other sections stay, an
// earlier ptp-server run's rows are replaced, and an invalid results.json
// is an error that leaves the file as it was.
func TestPTPServerOutMerges(t *testing.T) {
	dir := t.TempDir()
	ntpRow := report.EfficiencyRow{Name: "NTP meridiand", RepliesPerCPUSecond: 100000, SocketLimitPerCPUSecond: 200000}
	if err := report.Save(dir, &report.Results{Title: "t", ServerEfficiency: &report.ServerEfficiency{Rows: []report.EfficiencyRow{ntpRow}},
		Coverage: &report.Coverage{Rows: []report.CoverageRow{{Name: "x", Scenario: "s", Reads: 10}}}}); err != nil {
		t.Fatal(err)
	}
	run := func(n int, perCPU float64) ptpServerRun {
		r := ptpload.Result{Server: ptpload.ServerMeridiand, Clients: n, Seconds: 1, Syncs: n, FollowUps: n, DelayResps: n, CPUSeconds: float64(3*n) / perCPU, ElapsedS: 1}
		r.Derive()
		return ptpServerRun{Result: r}
	}
	floor := run(1000, 120000)
	floor.Server = ptpload.ServerFloor
	rep := ptpServerReport{Mode: "netns", Runs: []ptpServerRun{run(1000, 60000), floor}}
	for range 2 { // the second run replaces the first's rows
		if err := rep.write(dir); err != nil {
			t.Fatal(err)
		}
	}
	res, err := report.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	rows := res.ServerEfficiency.Rows
	if len(rows) != 2 || rows[0] != ntpRow || !strings.HasPrefix(rows[1].Name, efficiencyPrefix+"meridiand, 1000") ||
		math.Abs(rows[1].RepliesPerCPUSecond-60000) > 1e-6 || math.Abs(rows[1].SocketLimitPerCPUSecond-120000) > 1e-6 || res.Coverage == nil {
		t.Fatalf("merged results: %+v, rows %+v", res, rows)
	}
	bad := []byte(`{"title": "t", "server_efficiency": {"rows": [{"name": "", "replies_per_cpu_second": 1, "socket_limit_per_cpu_second": 1}]}}`)
	if err := os.WriteFile(filepath.Join(dir, report.ResultsFile), bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rep.write(dir); err == nil || !strings.Contains(err.Error(), "not merging into an invalid file") {
		t.Fatalf("merging into an invalid results.json: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, report.ResultsFile)); !bytes.Equal(b, bad) {
		t.Fatalf("the invalid results.json was changed:\n%s", b)
	}
}

func TestPTPServerFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--clients", "0"}, "--clients 0"},
		{[]string{"--clients", "70000"}, "--clients 70000"},
		{[]string{"--seconds", "0"}, "--seconds 0"},
		{[]string{"--seconds", "121"}, "--seconds 121"},
		{[]string{"--meridiand", "/nonexistent/meridiand"}, `meridiand binary "/nonexistent/meridiand"`},
	} {
		cmd := newRoot(&bytes.Buffer{}, &bytes.Buffer{})
		cmd.SetArgs(append([]string{"ptp-server"}, c.args...))
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ptp-server %q: %v, want an error with %q", c.args, err, c.want)
		}
	}
}
