package archtest

import (
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const root = "../.."

// Every core in the table is pure, and every exception is still needed.
func TestCoresArePure(t *testing.T) {
	for _, c := range Cores {
		viol, stale, err := c.Check(root)
		if err != nil {
			t.Fatalf("%s: %v", c.Dir, err)
		}
		for _, v := range viol {
			t.Errorf("%s/%v", c.Dir, v)
		}
		for _, s := range stale {
			t.Errorf("%s: exception for %s is no longer needed: remove it from Cores", c.Dir, s)
		}
	}
}

// Negative control: the check finds every kind of violation in a package
// built to have them, and nothing more (a shadowing local, time.Duration
// and time.Unix are allowed).
func TestPurityFindsViolations(t *testing.T) {
	viol, _, err := CheckDir("testdata/impure", nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range viol {
		got = append(got, v.String())
	}
	want := []string{
		`impure.go:6: uses cgo (import "C")`,
		"impure.go:9: imports net/netip",
		"impure.go:10: imports os",
		"impure.go:11: imports syscall",
		"impure.go:13: imports unsafe",
		"impure.go:15: imports golang.org/x/sys/unix",
		"impure.go:27: refers to time.Now",
		"impure.go:28: refers to time.Sleep",
		"impure.go:29: refers to time.Since",
		"impure.go:30: refers to time.After",
		"impure.go:31: refers to time.NewTimer",
		"shadow.go:17: refers to time.Until",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("violations:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Negative controls on real packages: the daemon (sockets, files, the host
// clock) and truetime without its exception (shm.go, which the split into
// a bound package and a shm package moves out) are found impure; clock.go
// sleeps only on injected clock.Timers and passes.
func TestPurityFindsRealViolations(t *testing.T) {
	viol, _, err := CheckDir(filepath.Join(root, "daemon"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var imports, reads bool
	for _, v := range viol {
		imports = imports || v.What == "imports os" || v.What == "imports net"
		reads = reads || strings.HasPrefix(v.What, "refers to time.")
	}
	if !imports || !reads {
		t.Fatalf("daemon: os/net imports %v, time reads %v in %v", imports, reads, viol)
	}
	viol, _, err = CheckDir(filepath.Join(root, "truetime/shm"), nil)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]bool{}
	for _, v := range viol {
		files[v.File] = true
	}
	if !files["shm.go"] {
		t.Fatalf("truetime/shm (mmap, unsafe, x/sys): violations only in %v", files)
	}
	// With Only, the listed files are checked and no other: the ntp engine
	// passes, its socket shell (source.go) does not.
	if v, _, err := (Core{Dir: "ntp", Only: []string{"source.go"}}).Check(root); err != nil || len(v) == 0 {
		t.Fatalf("ntp/source.go checked alone: %v %v", v, err)
	}
	if _, _, err := (Core{Dir: "ntp", Only: []string{"gone.go"}}).Check(root); err == nil {
		t.Fatal("a missing Only file is not reported")
	}
	// An exception for a file that is already pure is reported as stale.
	_, stale, err := CheckDir(filepath.Join(root, "hlc"), map[string]string{"hlc.go": "test"})
	if err != nil || !reflect.DeepEqual(stale, []string{"hlc.go"}) {
		t.Fatalf("stale exception not reported: %v %v", stale, err)
	}
}

// The cores are pure through their imports too: nothing they import,
// directly or not, is cgo, a socket, x/sys or one of our impure packages.
// (The standard library's fmt and errors bring os and syscall with them;
// that is why the per-file check above forbids those by name.)
func TestCoresArePureTransitively(t *testing.T) {
	impure := []string{"runtime/cgo", "net", "golang.org/x/sys/unix", mod + "clock/hostclock", mod + "truetime/shm",
		mod + "internal/fsown", mod + "hwts", mod + "daemon", mod + "sim"}
	// The wire-format library a core parses packets with may bring
	// standard packages along (facebook/time's ntp/protocol imports net for
	// address helpers; the engine opens no socket through it). What comes
	// only through it is allowed; anything else is not.
	viaLibrary := map[string][]string{
		"ntp/engine": {"github.com/facebook/time/ntp/protocol"},
		"ptp/engine": {"github.com/facebook/time/ptp/protocol"},
	}
	for _, c := range Cores {
		if c.Only != nil {
			continue // a core that shares its package with its shell: per-file only
		}
		allowed := map[string]bool{}
		for _, lib := range viaLibrary[c.Dir] {
			out, err := exec.Command("go", "list", "-deps", lib).Output()
			if err != nil {
				t.Fatalf("go list %s: %v", lib, err)
			}
			for _, d := range strings.Fields(string(out)) {
				allowed[d] = true
			}
		}
		for _, d := range deps(t, c.Dir) {
			for _, f := range impure {
				if d == f && !allowed[d] {
					t.Errorf("%s imports %s (transitively)", c.Dir, d)
				}
			}
		}
	}
	// Negative control: the shm package is impure through its imports.
	found := false
	for _, d := range deps(t, "truetime/shm") {
		found = found || d == "golang.org/x/sys/unix"
	}
	if !found {
		t.Fatal("go list -deps of truetime/shm does not list x/sys/unix: the check is blind")
	}
}
