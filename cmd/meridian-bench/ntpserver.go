package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/meridiantime/meridian/bench"
	"github.com/meridiantime/meridian/bench/report"
)

func ntpServerMain(args []string) {
	fs := flag.NewFlagSet("ntp-server", flag.ExitOnError)
	dur := fs.Duration("duration", 10*time.Second, "load per server per round (≤ 2m)")
	slice := fs.Duration("slice", 250*time.Millisecond, "a round's load is given in slices this long, the servers taking turns (≥ 50ms; ≥ duration: one slice each)")
	rounds := fs.Int("rounds", 3, "rounds: each loads every server once, in a rotating order (1–20)")
	clients := fs.Int("clients", 2, "client sockets")
	inflight := fs.Int("inflight", 64, "requests in flight per client (≤ 64 batched)")
	md := fs.String("meridiand", "bin/meridiand", "meridiand binary")
	mdB := fs.String("meridiand-b", "", "a second meridiand binary (e.g. main's) as a fourth contestant, meridiand-b: before/after in one run")
	bare := fs.String("bare", "", "ntpfloor binary (default: go build ./interop/testdata/ntpfloor, run from the repository)")
	batched := fs.Bool("batched", true, "batched generator (sendmmsg/recvmmsg), so the generator is not the bottleneck")
	jsonOut := fs.Bool("json", false, "one JSON line per measurement and one for the summary instead of tables")
	servers := fs.String("servers", "bare,meridiand,chronyd", "contestants to run (a subset is for profiling one server; ratios need its peer); bare-rx adds the bare responder taking a kernel receive stamp of every datagram as meridiand does")
	smoke := fs.Bool("smoke", false, "regression guard: exit 1 when a median ratio is below its floor minus the noise margin (smoke.go)")
	out := fs.String("out", "", "results directory: writes ntp-server.json (measurements and summary) and merges server efficiency rows into results.json")
	_ = fs.Parse(args)
	if *dur <= 0 || *dur > 2*time.Minute || *rounds < 1 || *rounds > 20 || *slice < 50*time.Millisecond {
		fmt.Fprintln(os.Stderr, "meridian-bench: --duration in (0, 2m], --rounds in [1, 20], --slice ≥ 50ms")
		os.Exit(2)
	}
	load := bench.RunNTPLoad
	if *batched {
		load = bench.RunNTPLoadBatched
	}
	b := ntpBench{meridiand: *md, meridiandB: *mdB, bare: *bare, dur: *dur, slice: *slice, rounds: *rounds, clients: *clients, inflight: *inflight,
		load: load, servers: strings.Split(*servers, ","), json: *jsonOut, smoke: *smoke, ci: os.Getenv("CI") == "true", out: *out}
	if err := b.run(); err != nil {
		fmt.Fprintln(os.Stderr, "meridian-bench:", err)
		os.Exit(1)
	}
}

type ntpBench struct {
	meridiand, meridiandB, bare string
	dur, slice                  time.Duration
	rounds, clients, inflight   int
	load                        func(context.Context, bench.NTPLoad) (bench.NTPLoadResult, error)
	servers                     []string
	json, smoke, ci             bool
	out                         string // results directory, or ""
}

// contestant is one server process under load.
type contestant struct {
	name string
	cmd  *exec.Cmd
	addr string
}

// measurement is one contestant's load in one round: the sums over its
// slices.
type measurement struct {
	Kind          string  `json:"kind"` // "measurement"
	Round         int     `json:"round"`
	Server        string  `json:"server"`
	Slices        int     `json:"slices"`
	Sent          int64   `json:"sent"`
	Received      int64   `json:"received"`
	Bad           int64   `json:"bad"`
	Unsync        int64   `json:"unsynchronized"` // LI 3 or stratum 0: the server said it cannot serve time
	ElapsedS      float64 `json:"elapsed_s"`
	CPUS          float64 `json:"server_cpu_s"`
	RepliesPerS   float64 `json:"replies_per_s"`
	RepliesPerCPU float64 `json:"replies_per_cpu_s"`
	P50US         float64 `json:"latency_p50_us"` // the median of the slices' medians
	P99US         float64 `json:"latency_p99_us"` // the median of the slices' 99th percentiles
	// Others: CPU time other processes (and the hypervisor) took on the
	// generator's core 0 and the server's core 1 during the measurement.
	Others0S float64 `json:"others_cpu0_s"`
	Others1S float64 `json:"others_cpu1_s"`
}

// summary is the run's ratios: meridiand's replies per server-CPU-second
// over each peer's, per round and their medians.
type summary struct {
	Kind         string             `json:"kind"` // "summary"
	Rounds       int                `json:"rounds"`
	DurationS    float64            `json:"duration_s"`
	VsBare       []float64          `json:"meridiand_vs_bare"`
	VsChronyd    []float64          `json:"meridiand_vs_chronyd,omitempty"`
	VsB          []float64          `json:"meridiand_vs_b,omitempty"`
	VsBareRx     []float64          `json:"meridiand_vs_bare_rx,omitempty"`
	MedianVsBare float64            `json:"median_meridiand_vs_bare"`
	MedianVsChr  float64            `json:"median_meridiand_vs_chronyd,omitempty"`
	Bad          map[string]int64   `json:"bad"`
	Unsync       map[string]int64   `json:"unsynchronized"`
	Unjudged     int                `json:"rounds_unjudged"`          // a server got < minJudgedCPU, or others > maxOthersShare of a core: no ratio from that round
	Silent       int                `json:"rounds_meridiand_silent"`  // rounds in which meridiand answered nothing
	PerCPU       map[string]float64 `json:"median_replies_per_cpu_s"` // over the judged rounds
	// PairedVsBare is each server's replies per CPU-second over the bare
	// responder's in the same round, median over the judged rounds.
	PairedVsBare map[string]float64 `json:"median_vs_bare_in_round"`
	Smoke        *smokeVerdict      `json:"smoke,omitempty"`
}

func freePort() int {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 12123
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// diesWithUs makes the kernel kill a peer when meridian-bench dies, even by
// a signal that skips the deferred cleanup (SIGPIPE from `| head`, SIGKILL).
func diesWithUs(cmd *exec.Cmd) *exec.Cmd {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// onCPU1 runs argv pinned to CPU 1 from its first instruction (so a Go
// server sizes GOMAXPROCS for the one core it has, as under a deployment's
// CPU affinity).
func onCPU1(argv ...string) *exec.Cmd {
	return diesWithUs(exec.Command("taskset", append([]string{"-c", "1"}, argv...)...))
}

// start starts c and waits until it answers a checked request.
func (c *contestant) start() error {
	if err := c.cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", c.name, err)
	}
	ctx := context.Background()
	for range 50 {
		time.Sleep(100 * time.Millisecond)
		r, err := bench.RunNTPLoad(ctx, bench.NTPLoad{Addr: c.addr, Clients: 1, InFlight: 1, Duration: 200 * time.Millisecond, MaxRequests: 1})
		if err == nil && r.Received == 1 {
			return nil
		}
	}
	return fmt.Errorf("%s never answered on %s", c.name, c.addr)
}

func (c *contestant) stop() {
	if c.cmd.Process != nil {
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
	}
}

// measure loads c for d and returns what it served and the CPU it took.
// The server's CPU is its threads' run time to the nanosecond
// (bench.ThreadsCPU): a slice of a quarter second would be measured to ±4 %
// in 10 ms ticks.
func (b *ntpBench) measure(c *contestant, round int, d time.Duration) (measurement, error) {
	pid := c.cmd.Process.Pid
	cpu0, err := bench.ThreadsCPU(pid)
	if err != nil {
		return measurement{}, err
	}
	gen0, _ := bench.ProcessCPU(os.Getpid())
	core00, _ := bench.CoreBusy(0)
	core10, _ := bench.CoreBusy(1)
	res, err := b.load(context.Background(), bench.NTPLoad{Addr: c.addr, Clients: b.clients, InFlight: b.inflight, Duration: d})
	if err != nil {
		return measurement{}, fmt.Errorf("%s: %w", c.name, err)
	}
	cpu1, err := bench.ThreadsCPU(pid)
	if err != nil {
		return measurement{}, fmt.Errorf("%s died under load: %w", c.name, err)
	}
	gen1, _ := bench.ProcessCPU(os.Getpid())
	core01, _ := bench.CoreBusy(0)
	core11, _ := bench.CoreBusy(1)
	m := measurement{Kind: "measurement", Round: round, Server: c.name, Slices: 1, Sent: res.Sent, Received: res.Received, Bad: res.Bad, Unsync: res.Unsynchronized,
		ElapsedS: res.Elapsed.Seconds(), CPUS: (cpu1 - cpu0).Seconds(), RepliesPerS: res.RepliesPerSecond,
		P50US: float64(res.LatencyP50) / 1e3, P99US: float64(res.LatP99) / 1e3,
		Others0S: max(0, (core01 - core00 - (gen1 - gen0)).Seconds()), Others1S: max(0, (core11 - core10 - (cpu1 - cpu0)).Seconds())}
	if m.CPUS > 0 {
		m.RepliesPerCPU = float64(res.Received) / m.CPUS
	}
	return m, nil
}

// round loads each contestant for b.dur, in slices of about b.slice: the
// contestants take turns, slice by slice, so that each meets the machine as
// it is within a fraction of a second of the others (on a shared VM a
// core's speed drifts by tens of percent over seconds). Each pass over
// them is in a new random order (seeded by the round): in a fixed cyclic
// order every contestant would always follow the same one, and what a
// slice leaves behind (chronyd's late replies, a cold cache) would always
// fall on the same contestant.
func (b *ntpBench) round(cs []*contestant, round int) ([]measurement, error) {
	n := max(1, int((b.dur+b.slice-1)/b.slice))
	per := b.dur / time.Duration(n)
	rng := rand.New(rand.NewPCG(uint64(round), 0x6e7470))
	sum := make([]measurement, len(cs))
	p50, p99 := make([][]float64, len(cs)), make([][]float64, len(cs))
	for range n {
		for _, i := range rng.Perm(len(cs)) {
			m, err := b.measure(cs[i], round, per)
			if err != nil {
				return nil, err
			}
			a := &sum[i]
			a.Kind, a.Round, a.Server = m.Kind, m.Round, m.Server
			a.Slices++
			a.Sent += m.Sent
			a.Received += m.Received
			a.Bad += m.Bad
			a.Unsync += m.Unsync
			a.ElapsedS += m.ElapsedS
			a.CPUS += m.CPUS
			a.Others0S += m.Others0S
			a.Others1S += m.Others1S
			p50[i], p99[i] = append(p50[i], m.P50US), append(p99[i], m.P99US)
		}
	}
	for i := range sum {
		a := &sum[i]
		if a.ElapsedS > 0 {
			a.RepliesPerS = float64(a.Received) / a.ElapsedS
		}
		if a.CPUS > 0 {
			a.RepliesPerCPU = float64(a.Received) / a.CPUS
		}
		a.P50US, a.P99US = median(p50[i]), median(p99[i])
	}
	return sum, nil
}

func (b *ntpBench) run() error {
	// The generator (this process) on CPU 0, the servers on CPU 1.
	_ = exec.Command("taskset", "-a", "-p", "-c", "0", fmt.Sprint(os.Getpid())).Run()
	dir, err := os.MkdirTemp("", "meridian-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	bare := b.bare
	if bare == "" {
		bare = filepath.Join(dir, "ntpfloor")
		if out, err := exec.Command("go", "build", "-o", bare, "./interop/testdata/ntpfloor").CombinedOutput(); err != nil {
			return fmt.Errorf("building the bare responder (run from the repository root, or pass --bare): %v\n%s", err, out)
		}
	}
	mport, bport := freePort(), freePort()
	cfg := filepath.Join(dir, "m.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("local_stratum: 1\nntp_server: {listen: [\"127.0.0.1:%d\"]}\nmetrics: {listen: \"\"}\ngrpc: {listen: []}\nshm: {path: %s}\nstate_dir: %s\nlog_level: warn\n",
		mport, filepath.Join(dir, "tt.shm"), filepath.Join(dir, "state"))), 0o644); err != nil {
		return err
	}
	cs := []*contestant{
		{name: "bare", cmd: onCPU1(bare, fmt.Sprintf("127.0.0.1:%d", bport)), addr: fmt.Sprintf("127.0.0.1:%d", bport)},
		{name: "meridiand", cmd: onCPU1(b.meridiand, "--config", cfg), addr: fmt.Sprintf("127.0.0.1:%d", mport)},
	}
	if slices.Contains(b.servers, "bare-rx") {
		port := freePort()
		cs = append(cs, &contestant{name: "bare-rx", cmd: onCPU1(bare, "--rx-stamps", fmt.Sprintf("127.0.0.1:%d", port)), addr: fmt.Sprintf("127.0.0.1:%d", port)})
	}
	if b.meridiandB != "" {
		port, cfgB := freePort(), filepath.Join(dir, "b.yaml")
		if err := os.WriteFile(cfgB, []byte(fmt.Sprintf("local_stratum: 1\nntp_server: {listen: [\"127.0.0.1:%d\"]}\nmetrics: {listen: \"\"}\ngrpc: {listen: []}\nshm: {path: %s}\nstate_dir: %s\nlog_level: warn\n",
			port, filepath.Join(dir, "b.shm"), filepath.Join(dir, "state-b"))), 0o644); err != nil {
			return err
		}
		cs = append(cs, &contestant{name: "meridiand-b", cmd: onCPU1(b.meridiandB, "--config", cfgB), addr: fmt.Sprintf("127.0.0.1:%d", port)})
		b.servers = append(b.servers, "meridiand-b")
	}
	if chronyd, err := exec.LookPath("chronyd"); err == nil {
		cport := freePort()
		cdir := filepath.Join(dir, "chrony")
		_ = os.MkdirAll(cdir, 0o700)
		ccfg := filepath.Join(cdir, "chrony.conf")
		if err := os.WriteFile(ccfg, []byte(fmt.Sprintf("local stratum 1\nallow 127.0.0.1\nport %d\nbindaddress 127.0.0.1\ncmdport 0\nbindcmdaddress %s\npidfile %s\ndriftfile %s\n",
			cport, filepath.Join(cdir, "sock"), filepath.Join(cdir, "pid"), filepath.Join(cdir, "drift"))), 0o644); err != nil {
			return err
		}
		// -x: never touch the clock; without CAP_SYS_TIME as a second guard.
		cs = append(cs, &contestant{name: "chronyd",
			cmd:  onCPU1("setpriv", "--bounding-set", "-sys_time", "--", chronyd, "-x", "-d", "-u", "root", "-f", ccfg),
			addr: fmt.Sprintf("127.0.0.1:%d", cport)})
	} else if b.ci {
		return errors.New("chronyd not installed: under CI=true the comparison with chronyd is required")
	} else {
		fmt.Fprintln(os.Stderr, "meridian-bench: chronyd not installed: its ratio is skipped (install chrony; CI=true makes this an error)")
	}
	cs = slices.DeleteFunc(cs, func(c *contestant) bool { return !slices.Contains(b.servers, c.name) })
	if len(cs) == 0 {
		return fmt.Errorf("--servers %v: none of bare, bare-rx, meridiand, chronyd", b.servers)
	}
	for _, c := range cs {
		defer c.stop()
		if err := c.start(); err != nil {
			return err
		}
	}

	var all []measurement
	for r := range b.rounds {
		ms, err := b.round(cs, r+1)
		if err != nil {
			return err
		}
		for _, m := range ms {
			all = append(all, m)
			if b.json {
				if err := json.NewEncoder(os.Stdout).Encode(m); err != nil {
					return err
				}
			}
		}
	}
	s := summarize(all, b.rounds, b.dur)
	if b.smoke {
		v := checkSmoke(s, slices.ContainsFunc(cs, func(c *contestant) bool { return c.name == "chronyd" }))
		s.Smoke = &v
	}
	if b.json {
		if err := json.NewEncoder(os.Stdout).Encode(s); err != nil {
			return err
		}
	} else {
		printTables(all, s)
	}
	if b.out != "" {
		if err := writeNTPServerResults(b.out, all, s); err != nil {
			return err
		}
	}
	if s.Smoke != nil && !s.Smoke.Pass {
		return fmt.Errorf("bench-smoke failed: %s", s.Smoke.Reason)
	}
	return nil
}

// minJudgedCPU is the least server CPU time a measurement needs for its
// round to count in the ratios (±5 % from the 10 ms accounting tick).
const minJudgedCPU = 200 * time.Millisecond

// maxOthersShare is the largest share of a core other processes may take
// during a measurement whose round is judged: on a shared machine the
// ratios drift with the contention (see smoke.go).
const maxOthersShare = 0.5

func median(x []float64) float64 {
	if len(x) == 0 {
		return 0
	}
	y := slices.Clone(x)
	slices.Sort(y)
	if len(y)%2 == 1 {
		return y[len(y)/2]
	}
	return (y[len(y)/2-1] + y[len(y)/2]) / 2
}

func summarize(all []measurement, rounds int, dur time.Duration) summary {
	s := summary{Kind: "summary", Rounds: rounds, DurationS: dur.Seconds(), Bad: map[string]int64{}, Unsync: map[string]int64{}, PerCPU: map[string]float64{}, PairedVsBare: map[string]float64{}}
	per, pairs := map[string][]float64{}, map[string][]float64{}
	for r := 1; r <= rounds; r++ {
		byName := map[string]float64{}
		judged := true
		for _, m := range all {
			if m.Round == r {
				byName[m.Server] = m.RepliesPerCPU
				// CPU time comes in 10 ms ticks: a server that got less
				// than minJudgedCPU (a generator starved by other load)
				// is measured too coarsely to judge the round.
				judged = judged && m.CPUS >= minJudgedCPU.Seconds()
				// Nor is a round in which other processes took more
				// than maxOthersShare of either core.
				judged = judged && max(m.Others0S, m.Others1S) <= maxOthersShare*m.ElapsedS
				if m.Server == "meridiand" && m.Sent > 0 && m.Received == 0 {
					s.Silent++
				}
			}
		}
		if !judged {
			s.Unjudged++
			continue
		}
		for name, v := range byName {
			per[name] = append(per[name], v)
		}
		if byName["bare"] > 0 {
			s.VsBare = append(s.VsBare, byName["meridiand"]/byName["bare"])
			for name, v := range byName {
				pairs[name] = append(pairs[name], v/byName["bare"])
			}
		}
		if byName["bare-rx"] > 0 {
			s.VsBareRx = append(s.VsBareRx, byName["meridiand"]/byName["bare-rx"])
		}
		if byName["meridiand-b"] > 0 {
			s.VsB = append(s.VsB, byName["meridiand"]/byName["meridiand-b"])
		}
		if byName["chronyd"] > 0 {
			s.VsChronyd = append(s.VsChronyd, byName["meridiand"]/byName["chronyd"])
		}
	}
	for _, m := range all {
		s.Bad[m.Server] += m.Bad
		s.Unsync[m.Server] += m.Unsync
	}
	for k, v := range per {
		s.PerCPU[k] = median(v)
	}
	for k, v := range pairs {
		s.PairedVsBare[k] = median(v)
	}
	s.MedianVsBare, s.MedianVsChr = median(s.VsBare), median(s.VsChronyd)
	return s
}

func printTables(all []measurement, s summary) {
	fmt.Printf("%-6s %-11s %10s %6s %7s %11s %9s %14s %9s %9s %13s\n", "round", "server", "received", "bad", "unsync", "replies/s", "cpu-s", "replies/cpu-s", "p50", "p99", "others cpu0/1")
	for _, m := range all {
		fmt.Printf("%-6d %-11s %10d %6d %7d %11.0f %9.2f %14.0f %7.0fµs %7.0fµs %6.2f/%.2fs\n", m.Round, m.Server, m.Received, m.Bad, m.Unsync, m.RepliesPerS, m.CPUS, m.RepliesPerCPU, m.P50US, m.P99US, m.Others0S, m.Others1S)
	}
	if s.Unjudged > 0 {
		fmt.Printf("%d of %d rounds not judged (a server below %v of CPU, or others above %.0f%% of a core)\n", s.Unjudged, s.Rounds, minJudgedCPU, 100*maxOthersShare)
	}
	ff := func(x []float64) string {
		out := ""
		for _, v := range x {
			out += fmt.Sprintf(" %.2f", v)
		}
		return out
	}
	fmt.Printf("meridiand/bare    replies per server-CPU-second: median %.2f× (rounds:%s)\n", s.MedianVsBare, ff(s.VsBare))
	if len(s.VsChronyd) > 0 {
		fmt.Printf("meridiand/chronyd replies per server-CPU-second: median %.2f× (rounds:%s)\n", s.MedianVsChr, ff(s.VsChronyd))
	}
	if len(s.VsBareRx) > 0 {
		fmt.Printf("meridiand/bare-rx replies per server-CPU-second: median %.2f× (rounds:%s)\n", median(s.VsBareRx), ff(s.VsBareRx))
	}
	if len(s.VsB) > 0 {
		fmt.Printf("meridiand/meridiand-b replies per server-CPU-second: median %.2f× (rounds:%s)\n", median(s.VsB), ff(s.VsB))
	}
	if s.Smoke != nil {
		fmt.Printf("smoke: pass=%v %s\n", s.Smoke.Pass, s.Smoke.Reason)
	}
}

// ntpEfficiencyPrefix starts the names of ntp-server's rows in results.json.
const ntpEfficiencyPrefix = "NTP server: "

// writeNTPServerResults writes DIR/ntp-server.json and merges one server
// efficiency row per server (its median replies per server-CPU-second
// against the bare responder's, the socket API's limit) into
// DIR/results.json, replacing the rows of an earlier ntp-server run.
func writeNTPServerResults(dir string, all []measurement, s summary) error {
	g := &globalFlags{out: dir, stdout: io.Discard}
	raw := struct {
		Measurements []measurement `json:"measurements"`
		Summary      summary       `json:"summary"`
	}{all, s}
	return g.finish("ntp-server", raw, func(res *report.Results) {
		limit, ok := s.PerCPU["bare"]
		var rows []report.EfficiencyRow
		if res.ServerEfficiency != nil {
			rows = slices.DeleteFunc(res.ServerEfficiency.Rows, func(r report.EfficiencyRow) bool { return strings.HasPrefix(r.Name, ntpEfficiencyPrefix) })
		}
		if ok && limit > 0 {
			for _, name := range []string{"meridiand", "chronyd", "meridiand-b", "bare-rx", "bare"} {
				if v, have := s.PerCPU[name]; have && v > 0 {
					rows = append(rows, report.EfficiencyRow{Name: ntpEfficiencyPrefix + name + " (median replies per server-CPU-second; limit: the bare recvmmsg/sendmmsg responder)",
						RepliesPerCPUSecond: v, SocketLimitPerCPUSecond: limit, PairedRatio: s.PairedVsBare[name]})
				}
			}
		}
		switch {
		case len(rows) > 0:
			res.ServerEfficiency = &report.ServerEfficiency{Rows: rows}
			delete(res.NotMeasured, report.SectionServerEfficiency)
		case res.ServerEfficiency == nil:
			if res.NotMeasured == nil {
				res.NotMeasured = map[string]string{}
			}
			res.NotMeasured[report.SectionServerEfficiency] = "ntp-server: no round could be judged (other processes took the cores), or no bare responder ran"
		}
	})
}
