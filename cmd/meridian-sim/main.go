// Command meridian-sim runs the deterministic simulator against the real
// NTP engines and server handler, discipline loop, TrueTime clock and
// shared memory.
//
//	meridian-sim run [--duration-scale N] [--servo linreg|pi] [--ablate path-delay|drift|floor] DIR
//	meridian-sim fuzz [--worlds N] [--seed S] [--ablate ...] [--out FILE]
//
// run prints a table of the scenario files in DIR and exits 1 when any
// scenario breaks the promise or misses an expectation. fuzz runs seeded
// random worlds inside the stated assumptions, stops at the first broken
// one, shrinks it to a minimal scenario file and prints it (exit 1). With
// --ablate a bound term is removed: a negative control, whose failures are
// the expected outcome (exit 0 when something failed, 1 when nothing did).
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/meridiantime/meridian/internal/version"
	"github.com/meridiantime/meridian/sim"
)

// exitError carries an exit status through cobra.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit %d", int(e)) }

func ablation(name string, opt *sim.Options) error {
	switch name {
	case "":
	case "path-delay":
		opt.Ablation.OmitPathDelay = true
	case "drift":
		opt.Ablation.OmitDrift = true
	case "floor":
		opt.Ablation.OmitFloor = true
	default:
		return fmt.Errorf("--ablate: want path-delay, drift or floor, got %q", name)
	}
	return nil
}

func newRoot() *cobra.Command {
	root := &cobra.Command{Use: "meridian-sim", Short: "Meridian's deterministic simulator", SilenceUsage: true, SilenceErrors: true,
		Version: version.String("meridian-sim")}
	root.SetVersionTemplate("{{.Version}}\n")
	var scale float64
	var servo, ablate string
	run := &cobra.Command{
		Use:   "run DIR",
		Short: "run every *.yaml scenario in DIR and print a table",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opt := sim.Options{DurationScale: scale, Servo: servo}
			if err := ablation(ablate, &opt); err != nil {
				return err
			}
			scs, err := sim.LoadDir(args[0])
			if err != nil {
				return err
			}
			rs, err := sim.RunAll(scs, opt)
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), sim.FormatTable(rs))
			if sim.Failed(rs) != (ablate != "") {
				return exitError(1)
			}
			return nil
		},
	}
	run.Flags().Float64Var(&scale, "duration-scale", 1, "multiply every scenario's duration")
	run.Flags().StringVar(&servo, "servo", "", "override the servo (linreg or pi)")
	run.Flags().StringVar(&ablate, "ablate", "", "negative control: remove a bound term (path-delay, drift or floor)")

	var worlds int
	var seed uint64
	var fAblate, out string
	var quiet bool
	fuzz := &cobra.Command{
		Use:   "fuzz",
		Short: "run seeded random worlds; shrink and print the first broken one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if worlds < 1 {
				return fmt.Errorf("--worlds: must be ≥ 1, got %d", worlds)
			}
			var opt sim.Options
			if err := ablation(fAblate, &opt); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			progress := func(i int, r sim.Result) {
				if !quiet && (i+1)%100 == 0 {
					fmt.Fprintf(cmd.ErrOrStderr(), "%d worlds\n", i+1)
				}
			}
			rep, err := sim.Fuzz(worlds, seed, opt, progress)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "worlds %d (truth=true %d of which %d left the majority assumption mid-run, ref %d, none %d), checked reads %d, elapsed %s\n",
				rep.Worlds, rep.ByMode[sim.TruthTrue], rep.Left, rep.ByMode[sim.TruthReference], rep.ByMode[sim.TruthNone], rep.Reads, rep.Elapsed.Round(1e6))
			if rep.Shrunk == nil {
				fmt.Fprintln(w, "no broken world")
				if fAblate != "" {
					return exitError(1)
				}
				return nil
			}
			fmt.Fprintf(w, "broken world %s: %d violations, %d backwards, %d shm mismatches; shrunk in %d runs to:\n",
				rep.Failing.Name, rep.FailResult.Violations, rep.FailResult.Backwards, rep.FailResult.ShmMismatches, rep.ShrinkRuns)
			y, err := sim.MarshalScenario(*rep.Shrunk)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "---\n%s", y)
			if out != "" {
				if err := os.WriteFile(out, y, 0o644); err != nil {
					return err
				}
			}
			if fAblate != "" {
				return nil
			}
			return exitError(1)
		},
	}
	fuzz.Flags().IntVar(&worlds, "worlds", 300, "number of random worlds")
	fuzz.Flags().Uint64Var(&seed, "seed", 1, "campaign seed (world i of seed s is always the same)")
	fuzz.Flags().StringVar(&fAblate, "ablate", "", "negative control: remove a bound term (path-delay, drift or floor)")
	fuzz.Flags().StringVar(&out, "out", "", "also write the shrunk scenario to this file")
	fuzz.Flags().BoolVar(&quiet, "quiet", false, "no progress lines")
	root.AddCommand(run, fuzz)
	return root
}

func main() {
	if err := newRoot().Execute(); err != nil {
		if e, ok := err.(exitError); ok {
			os.Exit(int(e))
		}
		fmt.Fprintln(os.Stderr, "meridian-sim:", err)
		os.Exit(2)
	}
}
