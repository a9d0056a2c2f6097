// Package version says which build of Meridian is running, from what the Go
// toolchain recorded in the binary (module version, VCS revision).
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Info is what a binary knows about its build.
type Info struct {
	Version   string // module version, or "devel"
	Revision  string // VCS revision (12 hex digits), "" if unknown
	Modified  bool   // built from a work tree with uncommitted changes
	GoVersion string
}

// Get reads the build information embedded in the binary.
func Get() Info {
	i := Info{Version: "devel", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return i
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		i.Version = v
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Revision = s.Value
			if len(i.Revision) > 12 {
				i.Revision = i.Revision[:12]
			}
		case "vcs.modified":
			i.Modified = s.Value == "true"
		}
	}
	return i
}

// String is the --version line for the named program.
func String(program string) string {
	i := Get()
	rev := i.Revision
	if rev == "" {
		rev = "unknown revision"
	} else if i.Modified {
		rev += "+modified"
	}
	return fmt.Sprintf("%s %s (%s, %s)", program, i.Version, rev, i.GoVersion)
}
