// Package rundir knows where meridiand keeps its runtime files (the shm
// segment, the gRPC socket): the system directory first, then private
// per-user fallbacks. The daemon picks the first it can use; clients find
// a daemon's files without creating anything and without trusting a
// directory another local user could have planted.
package rundir

import (
	"os"
	"path/filepath"
	"strconv"

	"github.com/meridiantime/meridian/internal/fsown"
)

// SystemRuntimeDir is the system daemon's runtime directory (tests point
// it elsewhere).
var SystemRuntimeDir = "/run/meridian"

// Candidate is a runtime directory; a Private one (under /tmp or
// $XDG_RUNTIME_DIR) is used only when it is this user's own, mode 0700,
// and not a symlink.
type Candidate struct {
	Path    string
	Private bool
}

// Runtime lists the candidate runtime directories, most privileged first.
func Runtime() []Candidate {
	c := []Candidate{{SystemRuntimeDir, false}}
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" {
		c = append(c, Candidate{filepath.Join(x, "meridian"), true})
	}
	return append(c, Candidate{filepath.Join(os.TempDir(), "meridian-"+strconv.Itoa(os.Getuid())), true})
}

// Locate is where a client finds a daemon's runtime file (name
// "truetime.shm" or "grpc.sock"): the first candidate directory holding it
// that this user can trust (a private fallback must be this user's own with
// mode 0700; see fsown), so an unprivileged client finds a system daemon's
// files under /run/meridian and never one another local user planted under
// /tmp; when none holds it, the path in the first trusted candidate (the
// system directory when none is trusted). It creates nothing.
func Locate(name string) string {
	fallback := ""
	for _, d := range Runtime() {
		if d.Private && fsown.CheckPrivateDir(d.Path) != nil {
			continue
		}
		if _, err := fsown.CheckTrustedDir(d.Path); err != nil {
			continue
		}
		p := filepath.Join(d.Path, name)
		if _, err := os.Lstat(p); err == nil {
			return p
		}
		if fallback == "" {
			fallback = p
		}
	}
	if fallback == "" {
		fallback = filepath.Join(SystemRuntimeDir, name)
	}
	return fallback
}
