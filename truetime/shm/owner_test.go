package shm

import (
	"github.com/meridiantime/meridian/truetime"

	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meridiantime/meridian/clock"
	"github.com/meridiantime/meridian/clock/hostclock"
	"github.com/meridiantime/meridian/internal/fsown"
)

// needRoot skips a test that must chown files, and fails it under CI.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test chowns files and must run as root under CI")
		}
		t.Skip("needs root to chown files to another uid")
	}
}

// liveEstimate publishes a synchronized snapshot whose clock reads the host
// clock plus offset.
func publishLive(w *Writer, offset time.Duration) {
	raw := hostclock.MonoRawNS()
	m := clock.Linear{BaseNS: time.Now().UnixNano() + int64(offset), BaseRawNS: raw}
	w.Publish(m, truetime.Estimate{Status: truetime.Synchronized, LocalNS: m.At(raw), Eps0NS: 100_000, DriftBoundPPB: 15_000,
		MaxErrorNS: int64(time.Second), LastSampleNS: m.At(raw)})
}

// A second writer on a live segment is refused before it changes a byte,
// and says who holds it. Negative control: with the lock disabled the
// second writer blanks the live segment and the two co-write it — readers
// see time flip by 10 s (the reported failure).
func TestShmSecondWriterRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tt.shm")
	w1, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w1.Close()
	publishLive(w1, 0)
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	before, _ := os.ReadFile(path)
	_, err = Create(path)
	after, _ := os.ReadFile(path)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second writer: %v", err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("the refused writer changed the live segment")
	}
	if _, err := r.Now(); err != nil {
		t.Fatalf("reader after the refusal: %v", err)
	}

	// Negative control: no lock.
	fsown.TestDisableLocks.Store(true)
	defer fsown.TestDisableLocks.Store(false)
	w2, err := Create(path)
	if err != nil {
		t.Fatalf("negative control: without the lock the second writer should start: %v", err)
	}
	defer w2.Close()
	blanked, _ := os.ReadFile(path)
	if bytes.Equal(before, blanked) {
		t.Fatal("negative control: the second writer left the segment unchanged")
	}
	if _, err := r.Now(); err == nil {
		t.Fatal("negative control: the live segment should read blank after the second writer's start")
	}
	var mids []int64
	for i := 0; i < 4; i++ {
		if i%2 == 0 {
			publishLive(w1, 0)
		} else {
			publishLive(w2, 10*time.Second)
		}
		iv, err := r.Now()
		if err != nil {
			t.Fatal(err)
		}
		mids = append(mids, iv.MidNS())
	}
	if d := time.Duration(mids[1] - mids[0]); d < 9*time.Second {
		t.Fatalf("negative control: co-writers should make time flip by ~10 s, got %v", d)
	}
}

// The helper process for TestShmKilledWriter: a writer that publishes every
// 20 ms until killed (or 60 s pass).
func TestHelperShmWriterProcess(t *testing.T) {
	path := os.Getenv("MERIDIAN_TEST_SHM_WRITER")
	if path == "" {
		t.Skip("helper process for TestShmKilledWriter")
	}
	w, err := CreateWith(path, Options{VoidAfter: 300 * time.Millisecond})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	publishLive(w, 0)
	fmt.Println("ready")
	for end := time.Now().Add(60 * time.Second); time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond)
		publishLive(w, 0)
	}
	os.Exit(0)
}

// A real writer process killed by PID (SIGKILL: no Close): its lock goes
// with it, and readers of its segment read unsynchronized once void_after
// (300 ms here) passes, instead of "synchronized" then holdover for hours.
func TestShmKilledWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tt.shm")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperShmWriterProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "MERIDIAN_TEST_SHM_WRITER="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		t.Fatalf("helper: %q", line)
	}
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Now(); err != nil {
		t.Fatalf("live writer process: %v", err)
	}
	if _, err := Create(path); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(cmd.Process.Pid)) {
		t.Fatalf("second writer next to a live process: %v", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed = true
	t0 := time.Now()
	for {
		_, err := r.Now()
		if errors.Is(err, truetime.ErrUnsynchronized) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Since(t0) > 5*time.Second {
			t.Fatal("the killed writer's segment still reads synchronized 5 s later (void_after 300 ms)")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("unsynchronized %v after the kill (void_after 300 ms from the last publish)", time.Since(t0).Round(time.Millisecond))
	w, err := Create(path)
	if err != nil {
		t.Fatalf("the dead writer's lock should be gone: %v", err)
	}
	w.Close()
}

// Readers refuse a segment another user could have planted: a directory
// owned by another uid inside a world-writable directory (the attacker's
// /tmp/meridian-$UID), a symlink, a file owned by another user, a file
// others can write. Positive control: another user's directory that root
// handed over (the daemon user's /run/meridian) is accepted.
func TestShmReaderRefusesUntrusted(t *testing.T) {
	needRoot(t)
	const other = 4242
	base := t.TempDir()
	mkSeg := func(dir string, owner int) string {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "truetime.shm")
		w, err := Create(p)
		if err != nil {
			t.Fatal(err)
		}
		publishLive(w, time.Hour)
		w.Close()
		if err := os.Chown(p, owner, owner); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dir, owner, owner); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tmp := filepath.Join(base, "tmp")
	_ = os.Mkdir(tmp, 0o755)
	_ = os.Chmod(tmp, os.ModeSticky|0o777) // like /tmp
	run := filepath.Join(base, "run")
	_ = os.Mkdir(run, 0o755) // like /run: root-owned, nobody else writes

	attacker := mkSeg(filepath.Join(tmp, "meridian-0"), other)
	handed := mkSeg(filepath.Join(run, "meridian"), other)
	mine := mkSeg(filepath.Join(base, "mine"), 0)
	link := filepath.Join(base, "mine", "link.shm")
	_ = os.Symlink(mine, link)
	otherFile := filepath.Join(base, "mine", "other.shm")
	b, _ := os.ReadFile(mine)
	_ = os.WriteFile(otherFile, b, 0o644)
	_ = os.Chown(otherFile, other, other)
	groupW := filepath.Join(base, "mine", "groupw.shm")
	_ = os.WriteFile(groupW, b, 0o644)
	_ = os.Chmod(groupW, 0o664)
	dirLink := filepath.Join(base, "dirlink")
	_ = os.Symlink(filepath.Join(base, "mine"), dirLink)

	for _, tc := range []struct {
		name, path, want string
	}{
		{"another user's dir in a world-writable dir", attacker, "owned by uid 4242"},
		{"symlinked segment", link, "symlink"},
		{"symlinked directory", filepath.Join(dirLink, "truetime.shm"), "symlink"},
		{"file owned by another user", otherFile, "owned by uid 4242"},
		{"group-writable file", groupW, "others can write"},
	} {
		r, err := Open(tc.path)
		if err == nil {
			r.Close()
			t.Errorf("%s: opened", tc.name)
			continue
		}
		if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrUntrusted mentioning %q", tc.name, err, tc.want)
		}
	}
	for _, p := range []string{handed, mine} {
		r, err := Open(p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		r.Close()
	}
}

// The writer never follows a symlink at the segment path and never writes
// a file another user owns; the target stays untouched.
func TestShmWriterRefusesForeignFiles(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "victim")
	_ = os.WriteFile(target, []byte("precious"), 0o644)
	link := filepath.Join(dir, "tt.shm")
	_ = os.Symlink(target, link)
	if w, err := Create(link); err == nil || !strings.Contains(err.Error(), "symlink") {
		if w != nil {
			w.Close()
		}
		t.Fatalf("symlink: %v", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "precious" {
		t.Fatalf("the symlink's target was changed: %q", b)
	}
	linked := filepath.Join(dir, "linked.shm")
	if err := os.Link(target, linked); err != nil {
		t.Fatal(err)
	}
	if w, err := Create(linked); err == nil || !strings.Contains(err.Error(), "hard links") {
		if w != nil {
			w.Close()
		}
		t.Fatalf("hard link: %v", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "precious" {
		t.Fatalf("the hard link's target was changed: %q", b)
	}
	if os.Geteuid() != 0 {
		return
	}
	foreign := filepath.Join(dir, "foreign.shm")
	_ = os.WriteFile(foreign, []byte("theirs"), 0o644)
	_ = os.Chown(foreign, 4242, 4242)
	if w, err := Create(foreign); err == nil || !strings.Contains(err.Error(), "owned by uid 4242") {
		if w != nil {
			w.Close()
		}
		t.Fatalf("foreign file: %v", err)
	}
	if b, _ := os.ReadFile(foreign); string(b) != "theirs" {
		t.Fatalf("the foreign file was changed: %q", b)
	}
}
