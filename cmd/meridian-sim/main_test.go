package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meridiantime/meridian/sim"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// The commands the README shows: run prints the table and succeeds on a
// clean matrix; --ablate is a negative control that succeeds only when it
// breaks something; fuzz prints the campaign's figures, and with an
// ablation prints a shrunk scenario that parses.
func TestREADMECommands(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"01-ideal.yaml", "06-asymmetry-1ms.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "sim", "scenarios", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := run(t, "run", "--duration-scale", "0.2", dir)
	if err != nil || !strings.Contains(out, "asymmetry-1ms") || !strings.Contains(out, " 0 containment or monotonicity violations") {
		t.Fatalf("run: %v\n%s", err, out)
	}
	out, err = run(t, "run", "--duration-scale", "0.2", "--ablate", "path-delay", dir)
	if err != nil || strings.Contains(out, " 0 containment or monotonicity violations") {
		t.Fatalf("run --ablate path-delay must break containment and exit 0: %v\n%s", err, out)
	}
	out, err = run(t, "fuzz", "--worlds", "3", "--seed", "7", "--quiet")
	if err != nil || !strings.Contains(out, "worlds 3 ") || !strings.Contains(out, "no broken world") {
		t.Fatalf("fuzz: %v\n%s", err, out)
	}
	shrunk := filepath.Join(dir, "shrunk.yaml")
	out, err = run(t, "fuzz", "--worlds", "50", "--seed", "3", "--quiet", "--ablate", "path-delay", "--out", shrunk)
	if err != nil || !strings.Contains(out, "shrunk in") {
		t.Fatalf("fuzz --ablate: %v\n%s", err, out)
	}
	b, err := os.ReadFile(shrunk)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sim.ParseScenario(b); err != nil {
		t.Fatalf("the shrunk scenario does not parse: %v\n%s", err, b)
	}
	if _, err := run(t, "fuzz", "--worlds", "0"); err == nil {
		t.Fatal("--worlds 0 accepted")
	}
	var ee exitError
	if _, err := run(t, "run", "--ablate", "nonsense", dir); err == nil || errors.As(err, &ee) {
		t.Fatalf("a bad --ablate must be a usage error, got %v", err)
	}
}
