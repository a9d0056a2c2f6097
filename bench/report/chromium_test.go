package report

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// chromiumPath finds headless Chromium (Debian package chromium): missing,
// the test skips locally and fails under CI=true.
func chromiumPath(t *testing.T) string {
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not installed (Debian package chromium): CI must install it")
	}
	t.Skip("chromium not installed (Debian package chromium)")
	return ""
}

// runChromium runs headless Chromium on the file page with extra flags,
// bounded by a minute: on timeout its whole process group (it starts
// renderer and utility processes) is killed by the process id we started.
func runChromium(t *testing.T, bin, page string, extra ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir(),
	}, extra...)
	args = append(args, "file://"+page)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	// Chromium's helpers share its process group; none may outlive it.
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", extra, err, lastLines(stderr.String(), 20))
	}
	return stdout.Bytes()
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// notBlank checks a screenshot: some pixels must be far from white and the
// luminance must vary. Thresholds: a rendered report covers about 10–20 %
// of a 1280×4000 window with text, axes and curves; an empty page 0 %.
func notBlank(img image.Image) error {
	b := img.Bounds()
	var n, dark float64
	var sum, sumSq float64
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			lum := (0.299*float64(r) + 0.587*float64(g) + 0.114*float64(bl)) / 65535
			n++
			sum += lum
			sumSq += lum * lum
			if lum < 0.9 {
				dark++
			}
		}
	}
	if n == 0 {
		return fmt.Errorf("empty image")
	}
	mean := sum / n
	variance := sumSq/n - mean*mean
	frac := dark / n
	if frac < 0.01 || variance < 1e-3 {
		return fmt.Errorf("blank: %.3f %% of pixels non-white, luminance variance %.2g (need ≥ 1 %% and ≥ 1e-3)", 100*frac, variance)
	}
	return nil
}

// screenshot takes one of page; REPORT_SCREENSHOT=FILE keeps the report's.
func screenshot(t *testing.T, bin, page string, keep bool) image.Image {
	t.Helper()
	shot := filepath.Join(t.TempDir(), "shot.png")
	runChromium(t, bin, page, "--screenshot="+shot, "--window-size=1280,4000")
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if to := os.Getenv("REPORT_SCREENSHOT"); keep && to != "" {
		b, _ := os.ReadFile(shot)
		_ = os.WriteFile(to, b, 0o644)
	}
	return img
}

// The report rendered from synthetic results, opened from a file in
// headless Chromium: the screenshot is not blank and the DOM Chromium built
// has every section with its heading and plots. Negative control: a page
// with an empty body fails the same not-blank check.
func TestReportInChromium(t *testing.T) {
	bin := chromiumPath(t)
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	if err := WriteFile(page, synthetic(t)); err != nil {
		t.Fatal(err)
	}
	if err := notBlank(screenshot(t, bin, page, true)); err != nil {
		t.Errorf("report: %v", err)
	} else {
		t.Log("report screenshot passes the not-blank check")
	}
	dom := string(runChromium(t, bin, page, "--dump-dom"))
	for _, s := range Sections {
		if !strings.Contains(dom, `<section id="`+s.ID+`">`) {
			t.Errorf("DOM lacks section %s", s.ID)
		}
		if !strings.Contains(dom, "<h2>"+htmlEscape(s.Heading)+"</h2>") {
			t.Errorf("DOM lacks heading %q", s.Heading)
		}
	}
	if n := strings.Count(dom, "<svg "); n != 9 {
		t.Errorf("%d plots in the DOM, want 9", n)
	}

	empty := filepath.Join(dir, "empty.html")
	if err := os.WriteFile(empty, []byte("<!DOCTYPE html><html><head><title>x</title></head><body></body></html>"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := notBlank(screenshot(t, bin, empty, false)); err == nil {
		t.Error("negative control: an empty page passed the not-blank check")
	} else {
		t.Logf("empty page caught: %v", err)
	}
}
