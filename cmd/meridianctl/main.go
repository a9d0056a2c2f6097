// Command meridianctl reads Meridian's TrueTime from the daemon's shared
// memory segment. Run `meridianctl --help` for examples.
package main

import (
	"fmt"
	"os"
)

func main() {
	cmd := newRoot(os.Stdout, os.Stderr)
	if err := cmd.Execute(); err != nil {
		if e, ok := err.(exitError); ok {
			fmt.Fprintln(os.Stderr, "meridianctl:", e.msg)
			os.Exit(e.code)
		}
		fmt.Fprintln(os.Stderr, "meridianctl:", err)
		os.Exit(2)
	}
}
