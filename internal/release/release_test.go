package release

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// deps lists the packages the daemon's build links, with extra go flags.
func deps(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", append(append([]string{"list", "-deps"}, args...), "github.com/meridiantime/meridian/cmd/meridiand")...)
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	return string(out)
}

// The release build links neither gRPC's tracing nor the template
// packages it brings; the negative control is the same list without the
// tags, which has them.
func TestReleaseBuildLeavesOutTracing(t *testing.T) {
	unwanted := []string{"golang.org/x/net/trace", "html/template", "text/template"}
	rel := deps(t, "-tags", Tags)
	plain := deps(t)
	for _, p := range unwanted {
		if strings.Contains(rel, "\n"+p+"\n") {
			t.Errorf("the release build links %s", p)
		}
		if !strings.Contains(plain, "\n"+p+"\n") {
			t.Errorf("negative control: a build without -tags %s does not link %s either (the test proves nothing)", Tags, p)
		}
	}
}

// Build makes a static binary: no ELF interpreter (PT_INTERP), so no libc.
func TestBuildIsStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds meridiand")
	}
	bin := filepath.Join(t.TempDir(), "meridiand")
	if out, err := Build(bin, "github.com/meridiantime/meridian/cmd/meridiand").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the release binary has an ELF interpreter: it is dynamically linked")
		}
	}
}

// Every Makefile line that builds meridiand into bin/ (what the benchmarks
// run and measure) builds it the release way.
func TestMakefileBuildsReleaseBinaries(t *testing.T) {
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(mk), "\n") {
		if !strings.Contains(l, " build ") || !(strings.Contains(l, "-o bin/meridiand") || strings.Contains(l, "./cmd/...")) {
			continue
		}
		n++
		if !strings.Contains(l, "CGO_ENABLED=0") || !strings.Contains(l, "-tags "+Tags+" ") {
			t.Errorf("Makefile: %q: not a release build (CGO_ENABLED=0, -tags %s)", strings.TrimSpace(l), Tags)
		}
	}
	if n < 3 {
		t.Fatalf("found %d builds of meridiand in the Makefile, want ≥ 3 (binaries, bench-results, bench-smoke)", n)
	}
}
