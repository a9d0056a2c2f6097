// Package archtest checks the repository's architecture rules
// (docs/architecture.md, "Pure cores, thin shells"; each package's doc.go
// says which side of them it is on):
//
//   - pure cores — the clock discipline, TrueTime's bound, the HLC and the
//     protocol engines, listed in Cores — import no os, net, syscall,
//     golang.org/x/sys, unsafe or cgo and never read or wait on the host's
//     time (time.Now, Sleep, After, AfterFunc, NewTimer, NewTicker, Tick,
//     Since, Until): they get time as input, so the simulator and the
//     daemon drive the same code;
//   - cores never import sockets, timestamping, gRPC, the simulator or the
//     daemon, and the gRPC service and client never reach into the daemon
//     or the protocols (checked on `go list -deps`).
//
// The purity check (Check) parses each core's non-test Go files with
// go/parser: a per-file check, so a package that is not yet split can list
// the files that are not part of its core, each with the reason, or the
// files that are.
package archtest

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Core is a package that must be pure.
type Core struct {
	Dir string // relative to the module root, e.g. "discipline"
	// Except names files of Dir (base names) that are not part of the core
	// yet, each with the reason. Check reports an exception that is no
	// longer needed, so splitting a package forces its entry to shrink.
	Except map[string]string
	// Only, when set, limits the check to these files of Dir: for a
	// package that holds a core and its shell (ntp: the engine and the
	// socket code). Each must exist.
	Only []string
}

// Cores is the table of pure packages. Add a protocol engine here when it
// is split from its socket shell, as ntp/engine is.
var Cores = []Core{
	{Dir: "discipline"},
	{Dir: "hlc"},
	{Dir: "truetime"},   // the bound, statuses, disruption judgement; the segment is truetime/shm
	{Dir: "clock"},      // interfaces and the linear model; host clocks are clock/hostclock
	{Dir: "ntp/engine"}, // the NTP protocol engine; package ntp is its socket shell and the server
	{Dir: "ptp/engine"}, // the PTP client and grandmaster engines; package ptp is their socket shell
}

// Check runs CheckDir for one core, under root (the module's directory).
func (c Core) Check(root string) (viol []Violation, stale []string, err error) {
	dir := filepath.Join(root, c.Dir)
	if c.Only == nil {
		return CheckDir(dir, c.Except)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	only := map[string]bool{}
	for _, f := range c.Only {
		only[f] = true
	}
	except := map[string]string{}
	for _, e := range ents {
		if !only[e.Name()] {
			except[e.Name()] = "not in Only"
		}
	}
	viol, _, err = CheckDir(dir, except)
	var missing []string
	for _, f := range c.Only {
		if _, serr := os.Stat(filepath.Join(dir, f)); serr != nil {
			missing = append(missing, f)
		}
	}
	if err == nil && len(missing) > 0 {
		err = fmt.Errorf("%s: Only lists missing files %v", c.Dir, missing)
	}
	return viol, nil, err // with Only, the shell's files are expected to be impure or not: no staleness
}

// ForbiddenImports may not be imported by a core, nor anything under them
// ("os" covers "os/exec"). "C" is cgo.
var ForbiddenImports = []string{"os", "net", "syscall", "golang.org/x/sys", "unsafe", "C"}

// ForbiddenTime are the package time functions a core may not refer to
// (called or taken as a value): they read or wait on the host's time.
var ForbiddenTime = []string{"Now", "Sleep", "After", "AfterFunc", "NewTimer", "NewTicker", "Tick", "Since", "Until"}

// Violation is one forbidden import or reference.
type Violation struct {
	File string // relative to the checked directory
	Line int
	What string
}

func (v Violation) String() string { return fmt.Sprintf("%s:%d: %s", v.File, v.Line, v.What) }

func forbiddenImport(path string) bool {
	for _, f := range ForbiddenImports {
		if path == f || strings.HasPrefix(path, f+"/") {
			return true
		}
	}
	return false
}

// CheckFile reports the violations in one parsed file.
func CheckFile(fset *token.FileSet, f *ast.File, name string) []Violation {
	var out []Violation
	at := func(p token.Pos) int { return fset.Position(p).Line }
	timeNames := map[string]bool{}
	for _, im := range f.Imports {
		path, err := strconv.Unquote(im.Path.Value)
		if err != nil {
			continue
		}
		if forbiddenImport(path) {
			what := "imports " + path
			if path == "C" {
				what = "uses cgo (import \"C\")"
			}
			out = append(out, Violation{name, at(im.Pos()), what})
		}
		if path == "time" {
			switch {
			case im.Name == nil:
				timeNames["time"] = true
			case im.Name.Name == ".":
				out = append(out, Violation{name, at(im.Pos()), "dot-imports time (its clock functions would be unqualified)"})
			case im.Name.Name != "_":
				timeNames[im.Name.Name] = true
			}
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		id, ok := sel.X.(*ast.Ident)
		// id.Obj != nil: a local name shadowing the package.
		if !ok || id.Obj != nil || !timeNames[id.Name] {
			return true
		}
		for _, fn := range ForbiddenTime {
			if sel.Sel.Name == fn {
				out = append(out, Violation{name, at(sel.Pos()), "refers to time." + fn})
			}
		}
		return true
	})
	return out
}

// CheckDir parses the non-test Go files of dir (not its subdirectories)
// and returns the violations of the files not in except, and the names of
// excepted files that have none (stale exceptions).
func CheckDir(dir string, except map[string]string) (viol []Violation, stale []string, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	fset := token.NewFileSet()
	seen := map[string]bool{}
	n := 0
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, 0)
		if err != nil {
			return nil, nil, err
		}
		n++
		v := CheckFile(fset, f, name)
		if _, ok := except[name]; ok {
			seen[name] = len(v) > 0
			continue
		}
		viol = append(viol, v...)
	}
	if n == 0 {
		return nil, nil, fmt.Errorf("%s: no Go files", dir)
	}
	for name := range except {
		if !seen[name] {
			stale = append(stale, name)
		}
	}
	sort.Strings(stale)
	return viol, stale, nil
}
