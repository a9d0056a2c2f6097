// Package hlcfile keeps a hybrid logical clock's persisted upper bound
// (hlc.Persister) in a file. It is the HLC's only contact with the file
// system, kept out of package hlc so that the clock itself stays a pure core
// (internal/archtest checks that hlc imports no os).
//
// # Format
//
// The file holds one line, "ns:<decimal nanoseconds since the Unix epoch>".
// Files written before the nanosecond HLC hold a bare decimal count of
// microseconds: Load reads them as the last nanosecond of that microsecond
// (µs·1000 + 999, an upper bound on every old timestamp), and the next Store
// writes the new form. An older binary reading the new form refuses it as
// corrupt rather than guess, so a downgrade cannot silently go backwards.
package hlcfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/meridiantime/meridian/internal/atomicfile"
)

// Name is the file's name inside Persister.Dir.
const Name = "hlc.upper"

// oldMaxUS is the largest bound the microsecond format could hold (2^51−1 µs).
const oldMaxUS = 1<<51 - 1

// Persister keeps the bound in Dir/hlc.upper: written to a temporary file,
// fsynced, renamed over the old one, and the directory fsynced, so a crash
// leaves either the old or the new bound, never a torn one.
type Persister struct{ Dir string }

// Path is the bound's file.
func (p Persister) Path() string { return filepath.Join(p.Dir, Name) }

// Load reads the bound in nanoseconds, converting the old microsecond
// format. A missing file is a fresh start; a corrupt one is an error
// (ignoring it could let timestamps go backwards).
func (p Persister) Load() (int64, bool, error) {
	b, err := os.ReadFile(p.Path())
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	v, err := Parse(string(b))
	if err != nil {
		return 0, false, fmt.Errorf("hlc: %s is corrupt (%w): refusing to guess an upper bound; restore it or remove it only if no timestamps from this node's past must be exceeded", p.Path(), err)
	}
	return v, true, nil
}

// Parse reads the file's content: "ns:N" or the old bare microseconds.
func Parse(content string) (int64, error) {
	s := strings.TrimSpace(content)
	if rest, ok := strings.CutPrefix(s, "ns:"); ok {
		v, err := strconv.ParseInt(rest, 10, 64)
		if err != nil || v < 0 || strconv.FormatInt(v, 10) != rest {
			return 0, fmt.Errorf("%q: want ns:<nanoseconds since the epoch>", s)
		}
		return v, nil
	}
	us, err := strconv.ParseInt(s, 10, 64)
	if err != nil || us < 0 || us > oldMaxUS {
		return 0, fmt.Errorf("%q: neither ns:<nanoseconds> nor the old microsecond form (0..%d)", s, int64(oldMaxUS))
	}
	return us*1000 + 999, nil
}

// Format is the file's content for a bound.
func Format(upperNS int64) string { return "ns:" + strconv.FormatInt(upperNS, 10) + "\n" }

// Store writes the bound durably.
func (p Persister) Store(upperNS int64) error {
	if upperNS < 0 {
		return fmt.Errorf("hlc: bound %d out of range", upperNS)
	}
	if err := os.MkdirAll(p.Dir, 0o755); err != nil {
		return err
	}
	return atomicfile.Write(p.Path(), []byte(Format(upperNS)))
}
