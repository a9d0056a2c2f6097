package interop

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/meridiantime/meridian/impair"
	"github.com/meridiantime/meridian/internal/release"
)

// needNetns skips without root or ip(8) (fails under CI=true).
func needNetns(t testing.TB) {
	t.Helper()
	need(t, "ip")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("network namespace tests need root under CI")
		}
		t.Skip("network namespaces need root")
	}
}

// needWire is needNetns for the impairment wire, which also needs
// /dev/net/tun (skips without it, fails under CI=true).
func needWire(t testing.TB) {
	t.Helper()
	needNetns(t)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("the impairment wire needs /dev/net/tun under CI")
		}
		t.Skip("no /dev/net/tun")
	}
}

// netnsPair creates two network namespaces joined by a veth pair
// (impair.NewVethPair: unique names, a subnet of its own), deleted when
// the test ends.
func netnsPair(t testing.TB) *impair.Pair {
	t.Helper()
	needNetns(t)
	p, err := impair.NewVethPair()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

// buildMeridiand compiles the daemon as it is released (package release).
func buildMeridiand(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "meridiand")
	out, err := release.Build(bin, "github.com/meridiantime/meridian/cmd/meridiand").CombinedOutput()
	if err != nil {
		t.Fatalf("go build meridiand: %v\n%s", err, out)
	}
	return bin
}

// (c) ntpdig only speaks to port 123: meridiand serves it from namespace b,
// ntpdig queries from namespace a and must see the injected +2.5 ms and
// meridiand's stratum.
func TestNtpdigInNetns(t *testing.T) {
	ntpdig := need(t, "ntpdig")
	p := netnsPair(t)
	nsA, nsB, addrB := p.NS[impair.A], p.NS[impair.B], p.Addr[impair.B].String()
	bin := buildMeridiand(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "m.yaml")
	_ = os.WriteFile(cfg, []byte(fmt.Sprintf(`local_stratum: 3
clock_offset: +2.5ms
ntp_server: {listen: ["%s:123"]}
metrics: {listen: ""}
grpc: {listen: []}
shm: {path: %s}
state_dir: %s
`, addrB, filepath.Join(dir, "tt.shm"), filepath.Join(dir, "state"))), 0o644)
	d := exec.Command("ip", "netns", "exec", nsB, bin, "--config", cfg)
	d.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // ip execs meridiand: this PID is the daemon
	logf, _ := os.Create(filepath.Join(dir, "meridiand.log"))
	d.Stdout, d.Stderr = logf, logf
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = d.Process.Kill()
		_ = d.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("meridiand log:\n%s", b)
		}
	}()
	type result struct {
		Offset  float64 `json:"offset"`
		Stratum int     `json:"stratum"`
		Leap    string  `json:"leap"`
	}
	// ntpdig reports no delay and uses user-space stamps: take the median
	// of several queries.
	var offs []float64
	var res result
	var out []byte
	for i := 0; i < 40 && len(offs) < 7; i++ {
		time.Sleep(200 * time.Millisecond)
		var err error
		out, err = exec.Command("ip", "netns", "exec", nsA, ntpdig, "-j", "-t", "2", addrB).CombinedOutput()
		if err != nil || json.Unmarshal(out, &res) != nil || res.Stratum == 0 {
			continue
		}
		if res.Stratum != 3 {
			t.Fatalf("ntpdig stratum %d, want 3: %s", res.Stratum, out)
		}
		if res.Leap != "no-leap" {
			t.Fatalf("ntpdig leap %q, want no-leap: %s", res.Leap, out)
		}
		offs = append(offs, res.Offset)
	}
	if len(offs) < 5 {
		t.Fatalf("ntpdig answered %d times: %s", len(offs), out)
	}
	sort.Float64s(offs)
	if med := offs[len(offs)/2]; math.Abs(med-0.0025) > 200e-6 { // ntpdig (Python) stamps in user space; chrony checks the µs level
		t.Fatalf("ntpdig median offset %v s, want +0.0025 ± 200 µs (all %v)", med, offs)
	}
	t.Logf("ntpdig offsets %v", offs)
}
