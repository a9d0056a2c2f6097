package fsown

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// One holder at a time; the lock goes with the file. Negative control:
// with locks disabled a second holder gets in.
func TestLockFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	a, err := LockFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := LockFile(p); !errors.Is(err, ErrLocked) {
		if b != nil {
			b.Close()
		}
		t.Fatalf("second holder: %v", err)
	}
	TestDisableLocks.Store(true)
	b, err := LockFile(p)
	TestDisableLocks.Store(false)
	if err != nil {
		t.Fatalf("negative control: with locks disabled the second holder should get in: %v", err)
	}
	b.Close()
	a.Close()
	c, err := LockFile(p)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	c.Close()
	link := filepath.Join(t.TempDir(), "link")
	_ = os.Symlink(p, link)
	if f, err := LockFile(link); err == nil || !strings.Contains(err.Error(), "symlink") {
		if f != nil {
			f.Close()
		}
		t.Fatalf("symlinked lock file: %v", err)
	}
}

func TestCheckTrustedDir(t *testing.T) {
	base := t.TempDir()
	ok := filepath.Join(base, "ok", "leaf")
	_ = os.MkdirAll(ok, 0o755)
	if _, err := CheckTrustedDir(ok); err != nil {
		t.Fatalf("plain directory: %v", err)
	}
	gw := filepath.Join(base, "gw")
	_ = os.MkdirAll(filepath.Join(gw, "leaf"), 0o755)
	_ = os.Chmod(gw, 0o775)
	if _, err := CheckTrustedDir(filepath.Join(gw, "leaf")); err == nil || !strings.Contains(err.Error(), "group can replace") {
		t.Fatalf("group-writable ancestor: %v", err)
	}
	ww := filepath.Join(base, "ww")
	_ = os.MkdirAll(filepath.Join(ww, "leaf"), 0o755)
	_ = os.Chmod(ww, 0o777) // world-writable without the sticky bit
	if _, err := CheckTrustedDir(filepath.Join(ww, "leaf")); err == nil || !strings.Contains(err.Error(), "anyone can replace") {
		t.Fatalf("world-writable ancestor: %v", err)
	}
	_ = os.Chmod(filepath.Join(ok), 0o775)
	if _, err := CheckTrustedDir(ok); err == nil || !strings.Contains(err.Error(), "chmod go-w") {
		t.Fatalf("group-writable leaf: %v", err)
	}
}
