// Command meridian-sim runs the deterministic simulator's scenario matrix
// against the real discipline and truetime code and prints a table.
//
//	meridian-sim run [--duration-scale N] [--servo linreg|pi] [--ablate path-delay|drift|floor] DIR
//
// It exits 1 when any scenario has a containment violation or misses an
// expectation (with --ablate, violations are the expected outcome).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/meridiantime/meridian/sim"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "run" {
		fmt.Fprintln(os.Stderr, "usage: meridian-sim run [--duration-scale N] [--servo linreg|pi] [--ablate path-delay|drift|floor] SCENARIO_DIR")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	scale := fs.Float64("duration-scale", 1, "multiply every scenario's duration")
	servo := fs.String("servo", "", "override the servo (linreg or pi)")
	ablate := fs.String("ablate", "", "negative control: remove a bound term (path-delay, drift or floor)")
	_ = fs.Parse(os.Args[2:])
	if fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "meridian-sim run: want exactly one scenario directory")
		os.Exit(2)
	}
	opt := sim.Options{DurationScale: *scale, Servo: *servo}
	switch *ablate {
	case "":
	case "path-delay":
		opt.Ablation.OmitPathDelay = true
	case "drift":
		opt.Ablation.OmitDrift = true
	case "floor":
		opt.Ablation.OmitFloor = true
	default:
		fmt.Fprintf(os.Stderr, "meridian-sim: --ablate: want path-delay, drift or floor, got %q\n", *ablate)
		os.Exit(2)
	}
	scs, err := sim.LoadDir(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "meridian-sim:", err)
		os.Exit(2)
	}
	rs, err := sim.RunAll(scs, opt)
	if err != nil {
		fmt.Fprintln(os.Stderr, "meridian-sim:", err)
		os.Exit(2)
	}
	fmt.Print(sim.FormatTable(rs))
	if sim.Failed(rs) && *ablate == "" {
		os.Exit(1)
	}
}
