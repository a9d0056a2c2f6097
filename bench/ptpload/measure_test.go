package ptpload

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// floorSpec measures Floor, run by this test binary (TestMain), with n
// clients for seconds, not pinned.
func floorSpec(t *testing.T, n, seconds int, loopback bool) Spec {
	t.Setenv("PTPLOAD_TEST_FLOOR", "1")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Spec{Server: ServerFloor, Clients: n, Seconds: seconds, Loopback: loopback, FloorArgv: []string{self}, ServerCPU: -1, GenCPU: -1}
}

// checkFloor: the floor answers every request TLV with a grant and every
// Delay_Req with exactly one Sync, Follow_Up and Delay_Resp, so a run
// must count n grants of each kind and at most n × seconds of each reply
// (over loopback or veth, with 8 MB socket buffers, all of them but a few
// at the edges of the load window).
func checkFloor(t *testing.T, r Result, n, seconds int) {
	t.Helper()
	t.Logf("%v", r)
	want := n * seconds
	if r.SyncGrants != n || r.DelayRespGrants != n || r.Refusals != 0 {
		t.Errorf("grants: %d Sync, %d Delay_Resp, %d refusals; want %d, %d, 0", r.SyncGrants, r.DelayRespGrants, r.Refusals, n, n)
	}
	for name, got := range map[string]int{"Sync": r.Syncs, "Follow_Up": r.FollowUps, "Delay_Resp": r.DelayResps} {
		if got > want || got < want*99/100 {
			t.Errorf("%s: %d received, want %d (at least 99%%, never more)", name, got, want)
		}
	}
	if r.ElapsedS < float64(seconds) || r.ElapsedS > float64(seconds)+1 {
		t.Errorf("load phase %.3f s, want %d s", r.ElapsedS, seconds)
	}
	if r.RSSStartKB <= 0 || r.RSSEndKB <= 0 || r.CPUSeconds < 0 || r.SyncServed < 0.99 || r.DelayRespServed < 0.99 {
		t.Errorf("implausible: %+v", r)
	}
}

// ourChildren lists the processes whose parent is this one.
func ourChildren(t *testing.T) []string {
	t.Helper()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var kids []string
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) {
			kids = append(kids, strings.TrimSpace(s[:strings.LastIndexByte(s, ')')+1]))
		}
	}
	return kids
}

// Over loopback (no root): 300 clients for 2 s against the floor
// responder, every reply counted once, and the responder gone afterwards.
func TestMeasureFloorLoopback(t *testing.T) {
	const n, seconds = 300, 2
	r, err := Measure(context.Background(), floorSpec(t, n, seconds, true))
	if err != nil {
		t.Fatal(err)
	}
	checkFloor(t, r, n, seconds)
	if kids := ourChildren(t); len(kids) > 0 {
		t.Fatalf("left running: %v", kids)
	}
}

// Negative control for the counting: the same generator against a port
// where nothing answers counts nothing.
func TestGenAgainstNobody(t *testing.T) {
	ev, gen, err := freePorts()
	if err != nil {
		t.Fatal(err)
	}
	lo := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	// The server's ports: two more free ones, nobody bound to them.
	sev, sgen, err := freePorts()
	if err != nil {
		t.Fatal(err)
	}
	g := &Gen{Clients: 50, Base: [2]byte{127, 1}, ServerEvent: netip.AddrPortFrom(lo, uint16(sev)), ServerGeneral: netip.AddrPortFrom(lo, uint16(sgen))}
	if err := g.Listen(ev, gen); err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	r, err := g.Run(context.Background(), os.Getpid(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if r.SyncGrants+r.DelayRespGrants+r.Syncs+r.FollowUps+r.DelayResps != 0 || r.SyncServed != 0 || r.DelayRespServed != 0 {
		t.Fatalf("counted replies from nobody: %v", r)
	}
}

// In network namespaces (root): the same, and both namespaces are
// deleted afterwards.
func TestMeasureFloorNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip (iproute2) not installed")
	}
	const n, seconds = 300, 2
	r, err := Measure(context.Background(), floorSpec(t, n, seconds, false))
	if err != nil {
		t.Fatal(err)
	}
	checkFloor(t, r, n, seconds)
	if kids := ourChildren(t); len(kids) > 0 {
		t.Fatalf("left running: %v", kids)
	}
	left, _ := filepath.Glob(fmt.Sprintf("/var/run/netns/mw%d-*", os.Getpid()))
	if len(left) > 0 {
		t.Fatalf("namespaces left: %v", left)
	}
}
