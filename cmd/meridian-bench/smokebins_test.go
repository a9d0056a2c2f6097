package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/meridiantime/meridian/internal/release"
)

// smokeBinaries skips unless MERIDIAN_BENCH_SMOKE=1 (make bench-smoke;
// why names what the test needs and how long it takes), then builds
// meridian-bench and meridiand into a temporary directory and returns it.
func smokeBinaries(t *testing.T, why string) string {
	t.Helper()
	if os.Getenv("MERIDIAN_BENCH_SMOKE") != "1" {
		t.Skipf("set MERIDIAN_BENCH_SMOKE=1 to run it (make bench-smoke): %s", why)
	}
	bin := t.TempDir()
	for _, p := range []string{"meridian-bench", "meridiand"} {
		if out, err := release.Build(filepath.Join(bin, p), "github.com/meridiantime/meridian/cmd/"+p).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", p, err, out)
		}
	}
	return bin
}
