// Package fsown decides whom a file-system location belongs to: exclusive
// ownership locks held for a process's life, private fallback directories
// (owner only, mode 0700, never through a symlink), and the trust walk that
// readers apply before believing a file another process wrote.
//
// The threat is a local user who pre-creates a directory a victim will use
// (/tmp/meridian-$UID), plants a symlink there, or runs a second writer on a
// live segment. Everything here refuses with a message that says what to fix.
package fsown

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// TestDisableLocks turns Lock into a no-op. Tests only: it is the negative
// control that shows what a second writer does without the lock.
var TestDisableLocks atomic.Bool

// ErrLocked is returned by Lock when another process holds the lock.
var ErrLocked = errors.New("in use by another process")

// Lock takes an exclusive, non-blocking flock on f, held until f is closed
// (or the process exits, however it exits). what names the resource in the
// error.
func Lock(f *os.File, what string) error {
	if TestDisableLocks.Load() {
		return nil
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EWOULDBLOCK):
			return fmt.Errorf("%s: %w: another meridiand owns it (stop it, or give this one its own shm.path and state_dir)", what, ErrLocked)
		default:
			return fmt.Errorf("%s: lock: %w", what, err)
		}
	}
}

// LockFile creates (if needed) and locks path, a lock file that must be a
// regular file owned by this user and not a symlink. On success the caller
// holds the lock until it closes the returned file; the file's content is
// replaced by this process's pid, for the operator.
func LockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock file %s: %w%s", path, err, symlinkHint(err))
	}
	if err := checkOwnFile(f, path); err != nil {
		f.Close()
		return nil, err
	}
	if err := Lock(f, "lock file "+path); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

func symlinkHint(err error) string {
	if errors.Is(err, unix.ELOOP) {
		return " (it is a symlink: meridiand does not follow symlinks there; remove it)"
	}
	return ""
}

// checkOwnFile refuses a file this process is about to write unless it is a
// regular file owned by this user, with one link, that nobody else can write.
func checkOwnFile(f *os.File, path string) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("%s: stat: %w", path, err)
	}
	euid := uint32(os.Geteuid())
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return fmt.Errorf("%s: not a regular file: remove it", path)
	case st.Uid != euid:
		return fmt.Errorf("%s: owned by uid %d, not by this user (uid %d): remove it or chown it to uid %d", path, st.Uid, euid, euid)
	case st.Mode&0o022 != 0:
		return fmt.Errorf("%s: mode %04o lets others write it: chmod go-w %s", path, st.Mode&0o7777, path)
	case st.Nlink != 1:
		return fmt.Errorf("%s: has %d hard links: remove it", path, st.Nlink)
	}
	return nil
}

// CheckOwnFile is checkOwnFile for callers in other packages (the shm
// writer): f must be a regular file this user owns, one link, not writable
// by group or others.
func CheckOwnFile(f *os.File, path string) error { return checkOwnFile(f, path) }

// EnsurePrivateDir makes dir usable as a private fallback directory: it is
// created with mode 0700 when absent; an existing one must be a directory
// (not a symlink) owned by this user with mode 0700. Its parent must exist.
func EnsurePrivateDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return CheckPrivateDir(dir)
}

// CheckPrivateDir is EnsurePrivateDir without creating: dir must be a
// directory (not a symlink) owned by this user with mode 0700.
func CheckPrivateDir(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			if fi, lerr := os.Lstat(dir); lerr == nil && fi.Mode()&os.ModeSymlink != 0 {
				return fmt.Errorf("%s is a symlink: meridiand does not follow symlinks for its private directories: remove it (rm %s)", dir, dir)
			}
			return fmt.Errorf("%s is not a directory: remove it", dir)
		}
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %s: %w", dir, err)
	}
	euid := uint32(os.Geteuid())
	if st.Uid != euid {
		return fmt.Errorf("%s is owned by uid %d, not by this user (uid %d): another user may control it; remove it (or use a directory you own) and restart", dir, st.Uid, euid)
	}
	if st.Mode&0o777 != 0o700 {
		return fmt.Errorf("%s has mode %04o: a private directory must have mode 0700: chmod 700 %s", dir, st.Mode&0o7777, dir)
	}
	return nil
}

// worldWritable reports a directory anyone can create entries in (/tmp).
func worldWritable(mode uint32) bool { return mode&0o002 != 0 }

// CheckTrustedDir walks dir and its ancestors up to / and refuses a location
// that a user other than root and this user could have placed or changed:
//
//   - dir itself must not be a symlink, nor writable by group or others;
//   - every ancestor is resolved (system symlinks such as /var/run are fine
//     once resolved) and must not be writable by group or others unless it
//     is root's sticky directory (/tmp);
//   - a directory owned by another user is trusted only when root handed it
//     over: its parent is owned by root and writable by nobody else (the
//     daemon's /run/meridian under /run), never inside a world-writable
//     directory.
//
// On success it returns the owner of dir, whom a reader may also trust to
// own a file inside it.
func CheckTrustedDir(dir string) (owner uint32, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return 0, err
	}
	var leaf unix.Stat_t
	if err := unix.Lstat(abs, &leaf); err != nil {
		return 0, fmt.Errorf("%s: %w", abs, err)
	}
	if leaf.Mode&unix.S_IFMT == unix.S_IFLNK {
		return 0, fmt.Errorf("%s is a symlink: refusing to trust a segment behind it (another user may have planted it): use the real path or remove the link", abs)
	}
	if leaf.Mode&unix.S_IFMT != unix.S_IFDIR {
		return 0, fmt.Errorf("%s is not a directory", abs)
	}
	if leaf.Mode&0o022 != 0 {
		return 0, fmt.Errorf("%s has mode %04o: others can replace files in it: chmod go-w %s", abs, leaf.Mode&0o7777, abs)
	}
	type node struct {
		path string
		st   unix.Stat_t
	}
	chain := []node{{abs, leaf}}
	if abs != "/" {
		p, err := filepath.EvalSymlinks(filepath.Dir(abs))
		if err != nil {
			return 0, err
		}
		for {
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return 0, fmt.Errorf("%s: %w", p, err)
			}
			chain = append(chain, node{p, st})
			if p == "/" {
				break
			}
			p = filepath.Dir(p)
		}
	}
	euid := uint32(os.Geteuid())
	for i, n := range chain {
		st := n.st
		if i > 0 && worldWritable(st.Mode) && (st.Mode&unix.S_ISVTX == 0 || st.Uid != 0) {
			return 0, fmt.Errorf("%s has mode %04o (owner uid %d): anyone can replace %s: use a directory only you or root can write", n.path, st.Mode&0o7777, st.Uid, abs)
		}
		if i > 0 && !worldWritable(st.Mode) && st.Mode&0o020 != 0 {
			return 0, fmt.Errorf("%s has mode %04o: its group can replace %s: chmod g-w %s", n.path, st.Mode&0o7777, abs, n.path)
		}
		if st.Uid == 0 || st.Uid == euid {
			continue
		}
		// Another user's directory: trusted only when root handed it over.
		if i+1 < len(chain) {
			p := chain[i+1]
			if p.st.Uid == 0 && p.st.Mode&0o022 == 0 {
				continue
			}
			return 0, fmt.Errorf("%s is owned by uid %d, neither root nor this user (uid %d), inside %s which root does not control alone: another user controls it; remove it or use a directory you or root own", n.path, st.Uid, euid, p.path)
		}
		return 0, fmt.Errorf("%s is owned by uid %d, neither root nor this user (uid %d)", n.path, st.Uid, euid)
	}
	return leaf.Uid, nil
}

// CheckTrustedFile applies the reader's rule to an open file found in a
// directory that passed CheckTrustedDir with owner dirOwner: it must be a
// regular file owned by root, this user or dirOwner, and not writable by
// group or others.
func CheckTrustedFile(f *os.File, path string, dirOwner uint32) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("%s: stat: %w", path, err)
	}
	euid := uint32(os.Geteuid())
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if st.Uid != 0 && st.Uid != euid && st.Uid != dirOwner {
		return fmt.Errorf("%s is owned by uid %d, neither root, this user (uid %d) nor the directory's owner (uid %d): refusing it", path, st.Uid, euid, dirOwner)
	}
	if st.Mode&0o022 != 0 {
		return fmt.Errorf("%s has mode %04o: others can write it: refusing it (chmod go-w %s)", path, st.Mode&0o7777, path)
	}
	return nil
}
