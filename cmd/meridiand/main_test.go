package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestBadConfigExits2(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(p, []byte("drift_bound_ppm: -3\n"), 0o644)
	if code := run([]string{"--config", p}); code != 2 {
		t.Fatalf("exit %d", code)
	}
	if code := run([]string{"--clock-offset", "soon"}); code != 2 {
		t.Fatalf("bad --clock-offset: exit %d", code)
	}
	if code := run([]string{"--no-such-flag"}); code != 2 {
		t.Fatalf("bad flag: exit %d", code)
	}
}

func TestVersionExits0(t *testing.T) {
	if code := run([]string{"--version"}); code != 0 {
		t.Fatalf("--version: exit %d", code)
	}
}
