package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meridiantime/meridian/internal/release"
)

const dockerfilePath = "Dockerfile"

// dockerInstruction is one instruction of a Dockerfile, continuations
// joined.
type dockerInstruction struct{ Cmd, Args string }

func parseDockerfile(t *testing.T, path string) []dockerInstruction {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []dockerInstruction
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, dockerInstruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// staticELF reports why the binary at path would not run in an empty
// image: an ELF interpreter (the dynamic loader) or needed shared
// libraries. Empty means static.
func staticELF(t *testing.T, path string) []string {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var why []string
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			why = append(why, "has an ELF interpreter (PT_INTERP)")
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range libs {
		why = append(why, "needs "+l)
	}
	return why
}

// The image the Dockerfile describes holds two static binaries FROM
// scratch, run as the DaemonSet's user. The test builds the binaries with
// the Dockerfile's own build command (the image itself needs a Docker
// engine, which CI does not have), checks they are static, and runs them in
// an empty root directory — nothing but the two binaries and the
// directories the DaemonSet mounts — as user 65532: meridiand starts, serves
// a local reference, and meridianctl in the same empty root reads its
// interval from the shared segment.
func TestDockerfileBuildsStaticImage(t *testing.T) {
	ins := parseDockerfile(t, dockerfilePath)
	var froms []string
	var build string
	var user, entry string
	var copies []string
	for _, in := range ins {
		switch in.Cmd {
		case "FROM":
			froms = append(froms, in.Args)
		case "RUN":
			if strings.Contains(in.Args, "go build") {
				build = in.Args
			}
		case "USER":
			user = in.Args
		case "ENTRYPOINT":
			entry = in.Args
		case "COPY":
			if strings.HasPrefix(in.Args, "--from=build ") {
				copies = append(copies, in.Args)
			}
		}
	}
	if len(froms) != 2 || froms[1] != "scratch" {
		t.Fatalf("stages %q: want a build stage and a final FROM scratch", froms)
	}
	if !strings.Contains(build, "CGO_ENABLED=0") || !strings.Contains(build, "-o /out/") || !strings.Contains(build, "-tags "+release.Tags+" ") {
		t.Fatalf("build command %q: want CGO_ENABLED=0, -tags %s (a release build, package release) and -o /out/", build, release.Tags)
	}
	if user != "65532:65532" || entry != `["/usr/bin/meridiand"]` || len(copies) != 1 ||
		copies[0] != "--from=build /out/meridiand /out/meridianctl /usr/bin/" {
		t.Fatalf("USER %q ENTRYPOINT %s COPY %q", user, entry, copies)
	}
	ds, err := os.ReadFile(daemonSetPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(ds, []byte("image: ghcr.io/meridiantime/meridiand:latest")) || !bytes.Contains(ds, []byte("runAsUser: 65532")) {
		t.Fatal("the DaemonSet no longer runs ghcr.io/meridiantime/meridiand:latest as user 65532, which the Dockerfile builds")
	}

	// The Dockerfile's build command, run from the repository root with
	// /out/ redirected to a temporary directory.
	out := t.TempDir()
	cmd := exec.Command("sh", "-c", strings.ReplaceAll(build, "/out/", out+"/"))
	cmd.Dir = ".."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", build, err, b)
	}
	for _, bin := range []string{"meridiand", "meridianctl"} {
		p := filepath.Join(out, bin)
		if why := staticELF(t, p); len(why) != 0 {
			t.Fatalf("%s is not static: %v", bin, why)
		}
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %.1f MB, static", bin, float64(st.Size())/1e6)
	}

	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the empty-root run needs root (chroot) under CI")
		}
		t.Skip("the empty-root run needs root (chroot)")
	}
	root := t.TempDir()
	for _, d := range []string{"usr/bin", "etc/meridian", "run/meridian", "var/lib/meridian"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// What the DaemonSet's init container does to the mounted directories.
	for d, mode := range map[string]os.FileMode{"run/meridian": 0o755, "var/lib/meridian": 0o750} {
		p := filepath.Join(root, d)
		if err := os.Chown(p, 65532, 65532); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	// The whole chroot path must be traversable by user 65532.
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, bin := range []string{"meridiand", "meridianctl"} {
		b, err := os.ReadFile(filepath.Join(out, bin))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "usr/bin", bin), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := "local_stratum: 1\nntp_server: {listen: []}\nmetrics: {listen: \"127.0.0.1:0\"}\n" +
		"grpc: {listen: [\"unix:///run/meridian/grpc.sock\"]}\nshm: {path: /run/meridian/truetime.shm}\nstate_dir: /var/lib/meridian\n"
	if err := os.WriteFile(filepath.Join(root, "etc/meridian/meridiand.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	chroot := func(ctx context.Context, args ...string) *exec.Cmd {
		c := exec.CommandContext(ctx, args[0], args[1:]...)
		c.Env = []string{} // an empty image has no environment but what the runtime sets
		c.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Credential: &syscall.Credential{Uid: 65532, Gid: 65532}}
		c.Dir = "/"
		return c
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if b, err := chroot(ctx, "/usr/bin/meridiand", "--version").CombinedOutput(); err != nil || !strings.Contains(string(b), "meridiand") {
		t.Fatalf("meridiand --version in the empty root: %v\n%s", err, b)
	}
	var logs bytes.Buffer
	d := chroot(ctx, "/usr/bin/meridiand", "--config", "/etc/meridian/meridiand.yaml")
	d.Stdout, d.Stderr = &logs, &logs
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = d.Process.Signal(syscall.SIGTERM)
		_ = d.Wait()
	}()
	// meridianctl now exits 0 only with an interval the daemon promises.
	shm := "/run/meridian/truetime.shm"
	for deadline := time.Now().Add(20 * time.Second); ; {
		now, err := chroot(ctx, "/usr/bin/meridianctl", "--shm", shm, "now").CombinedOutput()
		if err == nil {
			t.Logf("meridianctl --shm %s now in the empty root: %s", shm, now)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("meridianctl now in the empty root: %v\n%s\ndaemon log:\n%s", err, now, logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	status, err := chroot(ctx, "/usr/bin/meridianctl", "--shm", shm, "status").CombinedOutput()
	if err != nil || !strings.Contains(string(status), "LOCL") {
		t.Fatalf("meridianctl status in the empty root: %v\n%s", err, status)
	}
	t.Logf("meridianctl --shm %s status in the empty root:\n%s", shm, status)
}

// Negative control: the static check rejects a binary that links libc
// through cgo.
func TestStaticCheckCatchesDynamicBinary(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no C compiler for the cgo control")
	}
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/dyn\n\ngo 1.26\n"), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\n// #include <stdio.h>\n// static void hi(void) { puts(\"hi\"); }\nimport \"C\"\n\nfunc main() { C.hi() }\n"), 0o644)
	cmd := exec.Command("go", "build", "-o", "dyn", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cgo build: %v\n%s", err, b)
	}
	if why := staticELF(t, filepath.Join(dir, "dyn")); len(why) == 0 {
		t.Fatal("a cgo binary linked against libc passed as static")
	} else {
		t.Logf("rejected: %v", why)
	}
}
