package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meridiantime/meridian/internal/release"
)

// tool finds a program the deploy checks run; it skips locally when it is
// missing and fails under CI=true (.ci/run installs it).
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required under CI (install it in .ci/run): %v", name, err)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

// The alert rules pass Prometheus's own checker, and its rule unit tests
// (prometheus/alerts_test.yaml: unsynchronized fires after 5 minutes and
// not in holdover, an unreachable source after 10, a down target after 2)
// pass. Negative control: the same tests against rules whose unsynchronized
// alert waits 50 minutes fail.
func TestPromtoolRules(t *testing.T) {
	promtool := tool(t, "promtool")
	if out, err := exec.Command(promtool, "check", "rules", alertsPath).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	if out, err := exec.Command(promtool, "test", "rules", "prometheus/alerts_test.yaml").CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	dir := t.TempDir()
	rules, err := os.ReadFile(alertsPath)
	if err != nil {
		t.Fatal(err)
	}
	slow := strings.Replace(string(rules), "expr: meridian_status == 0\n        for: 5m", "expr: meridian_status == 0\n        for: 50m", 1)
	if slow == string(rules) {
		t.Fatal("negative control: the unsynchronized rule's text changed; update the control")
	}
	tests, _ := os.ReadFile("prometheus/alerts_test.yaml")
	_ = os.WriteFile(filepath.Join(dir, "alerts.yaml"), []byte(slow), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), tests, 0o644)
	if out, err := exec.Command(promtool, "test", "rules", filepath.Join(dir, "alerts_test.yaml")).CombinedOutput(); err == nil {
		t.Fatalf("negative control: a 50-minute unsynchronized alert passed the tests\n%s", out)
	}
}

// systemd's own verifier accepts the unit (ExecStart pointed at a built
// meridiand) without a warning. Negative control: a misspelt Type= is
// reported.
func TestSystemdAnalyzeVerify(t *testing.T) {
	sa := tool(t, "systemd-analyze")
	dir := t.TempDir()
	bin := filepath.Join(dir, "meridiand")
	if out, err := release.Build(bin, "github.com/meridiantime/meridian/cmd/meridiand").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	unit, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	verify := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(text, "/usr/local/bin/meridiand", bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(sa, "verify", p).CombinedOutput()
		if err != nil {
			return string(out) + err.Error()
		}
		return string(out)
	}
	if out := verify("meridiand.service", string(unit)); strings.TrimSpace(out) != "" {
		t.Fatalf("systemd-analyze verify: %s", out)
	}
	if out := verify("bad.service", strings.Replace(string(unit), "Type=notify", "Type=notifyy", 1)); !strings.Contains(out, "notifyy") {
		t.Fatalf("negative control: a bad Type= passed: %q", out)
	}
}
