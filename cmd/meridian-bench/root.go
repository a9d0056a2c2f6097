package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meridiantime/meridian/bench/report"
	"github.com/meridiantime/meridian/internal/version"
)

// exitError carries an exit code: 1 when a measurement failed, 2 for
// usage (cobra's own errors: unknown subcommand, bad flag, are exit 2 too).
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

func failed(format string, a ...any) error { return exitError{1, fmt.Sprintf(format, a...)} }

// globalFlags are the root's persistent flags and the streams.
type globalFlags struct {
	json           bool   // stdout: one JSON document per subcommand run
	out            string // results directory ("": none)
	stdout, stderr io.Writer
}

// newRoot builds the command tree. Adding a subcommand: a file with
// func newXxxCmd(g *globalFlags) *cobra.Command and one line here.
func newRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &globalFlags{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "meridian-bench",
		Short: "measure Meridian against its baselines and peers in the same run (ratios, not absolute times)",
		Long: `meridian-bench measures Meridian against its baselines and peers in the same run and
reports ratios (absolute numbers are noisy on shared machines). Every load is bounded
in count and time, on loopback or the process's own memory; every peer it starts
dies with it.

With --out DIR each subcommand merges its section into DIR/results.json and writes its
raw results to DIR/<subcommand>.json; 'meridian-bench report --out DIR' renders
DIR/report.html. With --json stdout is one JSON document (the raw results).
Progress goes to stderr: bars on a terminal, plain lines otherwise.`,
		SilenceUsage: true, SilenceErrors: true,
		Version: version.String("meridian-bench"),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().BoolVar(&g.json, "json", false, "machine output: one JSON document to stdout")
	root.PersistentFlags().StringVar(&g.out, "out", "", "results directory: merge into DIR/results.json, raw results in DIR/<subcommand>.json")

	root.AddCommand(newTrueTimeCmd(g))
	root.AddCommand(newCommitWaitCmd(g))
	root.AddCommand(newSimCmd(g))
	root.AddCommand(newReportCmd(g))
	root.AddCommand(newNTPServerCmd(g))
	root.AddCommand(newGRPCCmd(g))
	root.AddCommand(newVersionCmd(g))
	root.AddCommand(newAccuracyCmd(g))
	root.AddCommand(newStabilityCmd(g))
	root.AddCommand(newPTPServerCmd(g))
	return root
}

// newVersionCmd keeps `meridian-bench version` (as well as --version).
func newVersionCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{Use: "version", Short: "print the version", Args: cobra.NoArgs, Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintln(g.stdout, version.String("meridian-bench"))
			return err
		}}
}

// finish ends a subcommand run: raw goes to stdout as JSON (--json) and to
// DIR/<name>.json (--out), and merge puts the subcommand's sections into
// DIR/results.json, keeping every other section there.
func (g *globalFlags) finish(name string, raw any, merge func(*report.Results)) error {
	b, err := json.MarshalIndent(raw, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if g.json {
		if _, err := g.stdout.Write(b); err != nil {
			return err
		}
	}
	if g.out == "" {
		return nil
	}
	if err := os.MkdirAll(g.out, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(g.out, name+".json"), b, 0o644); err != nil {
		return err
	}
	res, err := loadOrNew(g.out)
	if err != nil {
		return err
	}
	merge(res)
	return report.Save(g.out, res)
}

// loadOrNew loads DIR/results.json, or starts one when there is none; a
// file that exists but does not validate is an error (never overwritten).
func loadOrNew(dir string) (*report.Results, error) {
	res, err := report.Load(dir)
	if err == nil {
		return res, nil
	}
	if _, serr := os.Stat(filepath.Join(dir, report.ResultsFile)); errors.Is(serr, os.ErrNotExist) {
		return &report.Results{Title: "meridian-bench results"}, nil
	}
	return nil, fmt.Errorf("not merging into an invalid file: %w", err)
}

// filled clears a section's not-measured reason once it is filled.
func filled(r *report.Results, ids ...string) {
	for _, id := range ids {
		delete(r.NotMeasured, id)
	}
}

// checkFinite rejects NaN/Inf in what a subcommand is about to report.
func checkFinite(what string, vs ...float64) error {
	for _, v := range vs {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return failed("%s: measured %v", what, v)
		}
	}
	return nil
}

// fmtNS formats ns with a unit.
func fmtNS(ns float64) string {
	a := math.Abs(ns)
	switch {
	case a < 1e3:
		return fmt.Sprintf("%.1f ns", ns)
	case a < 1e6:
		return fmt.Sprintf("%.1f µs", ns/1e3)
	case a < 1e9:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	}
	return fmt.Sprintf("%.2f s", ns/1e9)
}

// printTable writes a report table as aligned text (the human output).
func printTable(w io.Writer, t report.Table) {
	fmt.Fprintf(w, "%s\n", t.Heading)
	if t.NotMeasured != "" {
		fmt.Fprintf(w, "  not measured: %s\n\n", t.NotMeasured)
		return
	}
	width := make([]int, len(t.Columns))
	for i, c := range t.Columns {
		width[i] = len([]rune(c))
	}
	for _, r := range t.Rows {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	line := func(cells []string) {
		var b strings.Builder
		for i, c := range cells {
			pad := width[i] - len([]rune(c))
			if i == 0 {
				b.WriteString(c + strings.Repeat(" ", pad))
			} else {
				b.WriteString("  " + strings.Repeat(" ", pad) + c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line(t.Columns)
	for _, r := range t.Rows {
		line(r)
	}
	if t.Note != "" {
		fmt.Fprintf(w, "(%s)\n", t.Note)
	}
	fmt.Fprintln(w)
}
