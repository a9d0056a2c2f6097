package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meridiantime/meridian/bench/ptpload"
	"github.com/meridiantime/meridian/bench/report"
)

// ptpServerOptions are ptp-server's flags.
type ptpServerOptions struct {
	clients   []int
	seconds   int
	withPtp4l bool
	withFloor bool
	smoke     bool
	json      bool
	out       string
	meridiand string
}

// ptpServerReport is what ptp-server measured (--json, DIR/ptp-server.json).
type ptpServerReport struct {
	Command string `json:"command"`
	// Mode is "netns" (each server alone in a network namespace, clients
	// in another, joined by veth) or "loopback" (without root).
	Mode    string         `json:"mode"`
	Seconds int            `json:"seconds"`
	Clients []int          `json:"clients"`
	Pinned  bool           `json:"pinned"` // server on CPU 1, generator on CPU 0
	Runs    []ptpServerRun `json:"runs"`
	// Skipped gives, by server, why it was not measured.
	Skipped map[string]string `json:"skipped,omitempty"`
}

// ptpServerRun is one server at one client count.
type ptpServerRun struct {
	ptpload.Result
	// VsFloor is client-seconds per CPU-second over the floor's at the same
	// client count (0: no floor measured).
	VsFloor float64 `json:"vs_floor,omitempty"`
}

const ptpServerLong = `ptp-server loads a PTP grandmaster with unicast clients, each granted Sync
(with Follow_Up) and Delay_Resp at 1/s and sending one Delay_Req a second,
for a fixed time per client count: meridiand's grandmaster (one worker,
software stamps), ptp4l 3.1.1 (masterOnly, unicast_listen, free_running 1,
under setpriv --bounding-set -sys_time), and the floor responder (the same
datagrams from recvmmsg/sendmmsg batches, no PTP logic: the kernel's own
cost, a ceiling for any grandmaster here). As root each server runs alone in
a network namespace, pinned to CPU 1, and the clients (one address each) in
another on CPU 0, joined by a veth pair; without root meridiand and the floor
run over loopback and ptp4l is skipped. Every server is killed by PID and
dies with this program (Pdeathsig); namespaces are deleted.

The table: served % of Syncs (with their Follow_Up) and of Delay_Resps over
clients × seconds, client-seconds served per server CPU-second, the server's
CPU in % of one CPU, its resident set at the end, and the ratio of its
client-seconds per CPU-second to the floor's.`

// newPTPServerCmd is `meridian-bench ptp-server`; --json and --out are the
// root's.
func newPTPServerCmd(g *globalFlags) *cobra.Command {
	o := ptpServerOptions{}
	cmd := &cobra.Command{
		Use:           "ptp-server",
		Short:         "unicast PTP clients at 1 Hz against meridiand's grandmaster, ptp4l and the kernel floor: CPU and memory",
		Long:          ptpServerLong,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.json, o.out = g.json, g.out
			if o.smoke {
				o.clients, o.seconds = []int{1000}, 3
			}
			if err := o.validate(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runPTPServer(ctx, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.IntSliceVar(&o.clients, "clients", []int{1000, 5000, 20000}, "client counts, one run each (1…65000)")
	f.IntVar(&o.seconds, "seconds", 10, "load per run in seconds (1…120)")
	f.BoolVar(&o.withPtp4l, "with-ptp4l", true, "also measure ptp4l (needs root, ptp4l and setpriv)")
	f.BoolVar(&o.withFloor, "with-floor", true, "also measure the floor responder (ratios and results.json need it)")
	f.BoolVar(&o.smoke, "smoke", false, "1000 clients for 3 s, everything else as normal")
	f.StringVar(&o.meridiand, "meridiand", "bin/meridiand", "meridiand binary")
	cmd.AddCommand(&cobra.Command{
		Use:                floorResponderCmd,
		Short:              "the floor responder (run by ptp-server): " + ptpload.FloorUsage,
		Hidden:             true,
		DisableFlagParsing: true,
		SilenceUsage:       true,
		RunE:               func(_ *cobra.Command, args []string) error { return ptpload.Floor(args) },
	})
	return cmd
}

const floorResponderCmd = "floor-responder"

func (o *ptpServerOptions) validate() error {
	if len(o.clients) == 0 {
		return errors.New("ptp-server: --clients: at least one client count")
	}
	for _, n := range o.clients {
		if n < 1 || n > ptpload.MaxClients {
			return fmt.Errorf("ptp-server: --clients %d: want 1…%d", n, ptpload.MaxClients)
		}
	}
	if o.seconds < 1 || o.seconds > 120 {
		return fmt.Errorf("ptp-server: --seconds %d: want 1…120", o.seconds)
	}
	return nil
}

func runPTPServer(ctx context.Context, o ptpServerOptions, stdout, stderr io.Writer) error {
	md, err := filepath.Abs(o.meridiand)
	if err == nil {
		_, err = os.Stat(md)
	}
	if err != nil {
		return fmt.Errorf("ptp-server: meridiand binary %q: %v (build it: go build -o bin/meridiand ./cmd/meridiand, or pass --meridiand)", o.meridiand, err)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("ptp-server: finding this program to run the floor responder: %w", err)
	}
	rep := ptpServerReport{Command: "meridian-bench ptp-server " + strings.Join(os.Args[2:], " "), Mode: "netns",
		Seconds: o.seconds, Clients: o.clients, Pinned: true, Skipped: map[string]string{}}
	if _, err := os.Stat("/sys/devices/system/cpu/cpu1"); err != nil {
		rep.Pinned = false
		fmt.Fprintln(stderr, "ptp-server: one CPU only: server and generator share it (not pinned)")
	}
	servers := []string{ptpload.ServerMeridiand}
	if os.Geteuid() != 0 {
		rep.Mode = "loopback"
		fmt.Fprintln(stderr, "ptp-server: not root: no network namespaces, so meridiand and the floor run over loopback and ptp4l is skipped")
	}
	if o.withPtp4l {
		if reason := ptp4lMissing(); reason != "" {
			rep.Skipped[ptpload.ServerPtp4l] = reason
			fmt.Fprintln(stderr, "ptp-server: ptp4l skipped:", reason)
		} else {
			servers = append(servers, ptpload.ServerPtp4l)
		}
	} else {
		rep.Skipped[ptpload.ServerPtp4l] = "--with-ptp4l=false"
	}
	if o.withFloor {
		servers = append(servers, ptpload.ServerFloor)
	} else {
		rep.Skipped[ptpload.ServerFloor] = "--with-floor=false"
	}

	prog := newProgress(stderr)
	defer prog.wait()
	for _, n := range o.clients {
		for _, server := range servers {
			label := fmt.Sprintf("%-9s %6d clients", server, n)
			bar := newRunBar(prog, label, o.seconds)
			serverCPU, genCPU := 1, 0
			if !rep.Pinned {
				serverCPU, genCPU = -1, -1
			}
			r, err := ptpload.Measure(ctx, ptpload.Spec{Server: server, Clients: n, Seconds: o.seconds, Loopback: rep.Mode == "loopback",
				Meridiand: md, FloorArgv: []string{self, "ptp-server", floorResponderCmd}, ServerCPU: serverCPU, GenCPU: genCPU,
				Progress: bar.update})
			bar.done(r, err)
			if err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("ptp-server: interrupted: %w", ctx.Err())
				}
				if server == ptpload.ServerPtp4l {
					// A peer that fails does not stop the rest.
					rep.Skipped[server] = err.Error()
					continue
				}
				return fmt.Errorf("ptp-server: %s, %d clients: %w", server, n, err)
			}
			rep.Runs = append(rep.Runs, ptpServerRun{Result: r})
		}
	}
	prog.wait()
	rep.addFloorRatios()
	if len(rep.Skipped) == 0 {
		rep.Skipped = nil
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else if err := rep.table(stdout); err != nil {
		return err
	}
	if o.out != "" {
		return rep.write(o.out)
	}
	return nil
}

// ptp4lMissing says why ptp4l cannot be measured here, or "".
func ptp4lMissing() string {
	if os.Geteuid() != 0 {
		return "needs root: ptp4l only speaks on ports 319/320, so it runs in a network namespace of its own"
	}
	for _, p := range []struct{ prog, pkg string }{{"ptp4l", "linuxptp"}, {"setpriv", "util-linux"}, {"ip", "iproute2"}} {
		if _, err := exec.LookPath(p.prog); err != nil {
			return fmt.Sprintf("%s not installed (Debian package %s)", p.prog, p.pkg)
		}
	}
	return ""
}

func (rep *ptpServerReport) floor(n int) (ptpload.Result, bool) {
	for _, r := range rep.Runs {
		if r.Server == ptpload.ServerFloor && r.Clients == n && r.ClientSecondsPerCPUSecond > 0 {
			return r.Result, true
		}
	}
	return ptpload.Result{}, false
}

func (rep *ptpServerReport) addFloorRatios() {
	for i, r := range rep.Runs {
		if f, ok := rep.floor(r.Clients); ok {
			rep.Runs[i].VsFloor = r.ClientSecondsPerCPUSecond / f.ClientSecondsPerCPUSecond
		}
	}
}

func (rep *ptpServerReport) table(w io.Writer) error {
	pin := "server on CPU 1, generator on CPU 0"
	if !rep.Pinned {
		pin = "not pinned"
	}
	fmt.Fprintf(w, "PTP grandmaster under unicast load: %d s per run, %s, %s\n", rep.Seconds, map[string]string{"netns": "each server alone in a network namespace (veth)", "loopback": "loopback"}[rep.Mode], pin)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "clients\tserver\tSync %\tDelay_Resp %\tclient-s/CPU-s\tCPU %\tRSS MB\tvs floor\t")
	for _, r := range rep.Runs {
		vs := "-"
		if r.VsFloor > 0 {
			vs = fmt.Sprintf("%.2f×", r.VsFloor)
		}
		fmt.Fprintf(tw, "%d\t%s\t%.1f\t%.1f\t%.0f\t%.1f\t%.1f\t%s\t\n", r.Clients, r.Server, 100*r.SyncServed, 100*r.DelayRespServed,
			r.ClientSecondsPerCPUSecond, r.CPUPercent, float64(r.RSSEndKB)/1024, vs)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range slices.Sorted(maps.Keys(rep.Skipped)) {
		fmt.Fprintf(w, "%s not measured: %s\n", s, rep.Skipped[s])
	}
	_, err := fmt.Fprintln(w, "(client-s/CPU-s: client-seconds served — a Sync with its Follow_Up and a Delay_Resp — per server CPU-second)")
	return err
}

// efficiencyPrefix starts the names of ptp-server's rows in results.json.
const efficiencyPrefix = "PTP grandmaster: "

// efficiencyRows are the server efficiency rows: replies (Sync, Follow_Up,
// Delay_Resp) per server CPU-second against the floor's at the same client
// count.
func (rep *ptpServerReport) efficiencyRows() []report.EfficiencyRow {
	var rows []report.EfficiencyRow
	for _, r := range rep.Runs {
		f, ok := rep.floor(r.Clients)
		if !ok || r.Server == ptpload.ServerFloor || math.IsInf(r.RepliesPerCPUSecond, 0) {
			continue
		}
		rows = append(rows, report.EfficiencyRow{
			Name:                    fmt.Sprintf("%s%s, %d unicast clients (%s)", efficiencyPrefix, r.Server, r.Clients, rep.Mode),
			RepliesPerCPUSecond:     r.RepliesPerCPUSecond,
			SocketLimitPerCPUSecond: f.RepliesPerCPUSecond,
		})
	}
	return rows
}

// write writes DIR/ptp-server.json and merges the efficiency rows into
// DIR/results.json (replacing rows of an earlier ptp-server run, keeping
// everything else), through the subcommands' one finish.
func (rep *ptpServerReport) write(dir string) error {
	g := &globalFlags{out: dir, stdout: io.Discard}
	if err := g.finish("ptp-server", rep, rep.merge); err != nil {
		return fmt.Errorf("ptp-server: --out: %w", err)
	}
	return nil
}

// merge puts this run's server efficiency rows into res.
func (rep *ptpServerReport) merge(res *report.Results) {
	if res.Run == "" {
		host, _ := os.Hostname()
		res.Run = fmt.Sprintf("%s on %s, %s", rep.Command, host, time.Now().UTC().Format(time.RFC3339))
	}
	var rows []report.EfficiencyRow
	if res.ServerEfficiency != nil {
		for _, r := range res.ServerEfficiency.Rows {
			if !strings.HasPrefix(r.Name, efficiencyPrefix) {
				rows = append(rows, r)
			}
		}
	}
	rows = append(rows, rep.efficiencyRows()...)
	switch {
	case len(rows) > 0:
		res.ServerEfficiency = &report.ServerEfficiency{Rows: rows}
		delete(res.NotMeasured, report.SectionServerEfficiency)
	default:
		res.ServerEfficiency = nil
		if res.NotMeasured == nil {
			res.NotMeasured = map[string]string{}
		}
		res.NotMeasured[report.SectionServerEfficiency] = "ptp-server: no floor responder run to compare with (--with-floor=false)"
	}
	if len(res.NotMeasured) == 0 {
		res.NotMeasured = nil
	}
}

// runBar is one run's phase in the shared progress (progress.go):
// negotiation, then the load's seconds.
type runBar struct {
	set         func(done int)
	seconds     int
	negotiation int // units for negotiation
}

func newRunBar(pr progress, label string, seconds int) *runBar {
	b := &runBar{seconds: seconds, negotiation: max(1, seconds/4)}
	b.set = pr.task("ptp-server: "+strings.Join(strings.Fields(label), " "), b.negotiation+seconds)
	return b
}

// update is ptpload's Progress.
func (b *runBar) update(phase string, done, total int) {
	switch phase {
	case "negotiate":
		b.set(b.negotiation * done / max(1, total))
	case "load":
		b.set(b.negotiation + done)
	}
}

// done completes the bar of a run that succeeded; a failed run's bar is
// left incomplete (progress.wait aborts it).
func (b *runBar) done(_ ptpload.Result, err error) {
	if err == nil {
		b.set(b.negotiation + b.seconds)
	}
}
