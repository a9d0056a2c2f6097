package archtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// cgoPackages lists the packages under dir (a module root or any tree of
// packages) that have cgo files, as `go list` sees them with cgo enabled.
func cgoPackages(t *testing.T, dir string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", "{{if .CgoFiles}}{{.ImportPath}}{{end}}", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list in %s: %v\n%s", dir, err, out)
	}
	return strings.Fields(string(out))
}

// No package of the module uses cgo: the client and the daemon build
// static (CGO_ENABLED=0) and the host's clocks are read through the vDSO
// from assembly (clock/hostclock).
func TestNoCgoInModule(t *testing.T) {
	if got := cgoPackages(t, root); len(got) != 0 {
		t.Fatalf("packages using cgo: %v", got)
	}
}

// Negative control: the same check finds a package that imports "C".
func TestNoCgoCheckFindsCgo(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/withcgo\n\ngo 1.26\n")
	write("c.go", "package withcgo\n\n// int one(void) { return 1; }\nimport \"C\"\n\nfunc One() int { return int(C.one()) }\n")
	if got := cgoPackages(t, dir); len(got) != 1 || got[0] != "example.com/withcgo" {
		t.Fatalf("the check missed a cgo package: %v", got)
	}
}
