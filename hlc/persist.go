package hlc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/meridiantime/meridian/internal/atomicfile"
)

// FilePersister keeps the bound in dir/hlc.upper: written to a temporary
// file, fsynced, renamed over the old one, and the directory fsynced, so a
// crash leaves either the old or the new bound, never a torn one.
type FilePersister struct{ Dir string }

func (p FilePersister) path() string { return filepath.Join(p.Dir, "hlc.upper") }

// Load reads the bound. A missing file is a fresh start; a corrupt one is an
// error (ignoring it could let timestamps go backwards).
func (p FilePersister) Load() (int64, bool, error) {
	b, err := os.ReadFile(p.path())
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || v < 0 || v > maxWallUS {
		return 0, false, fmt.Errorf("hlc: %s is corrupt (%q): refusing to guess an upper bound; restore it or remove it only if no timestamps from this node's past must be exceeded", p.path(), strings.TrimSpace(string(b)))
	}
	return v, true, nil
}

// Store writes the bound durably.
func (p FilePersister) Store(upperUS int64) error {
	if err := os.MkdirAll(p.Dir, 0o755); err != nil {
		return err
	}
	return atomicfile.Write(p.path(), []byte(fmt.Sprintf("%d\n", upperUS)))
}
