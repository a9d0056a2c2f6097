package interop

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/meridiantime/meridian/bench/ptpload"
)

func loadClients(def int) int {
	if v, err := strconv.Atoi(os.Getenv("PTP_LOAD_CLIENTS")); err == nil && v > 0 && v <= ptpload.MaxClients {
		return v
	}
	return def
}

// BenchmarkPTPGrandmasterLoad: meridiand's grandmaster (one worker,
// pinned to CPU 1) serves PTP_LOAD_CLIENTS (default 20000) unicast clients
// at 1 Sync/s (with Follow_Up) and 1 Delay_Req/s for 10 s over loopback,
// generated here (pinned to CPU 0) by ptpload.Gen (ptpload.Measure with
// Loopback). It reports the
// client-seconds one server CPU-second serves (clients/core, as ran, every
// reply counted) and the server's resident memory before and after. Then
// the same clients are served by ptpfloor (testdata/ptpfloor, ptpload.Floor:
// the same datagrams from recvmmsg/sendmmsg batches, no PTP logic, clocks
// or transmit stamps): the kernel's own cost on this path, the ceiling any
// grandmaster here could reach (floor-clients/core). On loopback the
// sender's CPU time includes delivering each datagram into the receiver's
// socket. Run:
//
//	go test -run '^$' -bench PTPGrandmasterLoad -benchtime 1x ./interop/
func BenchmarkPTPGrandmasterLoad(b *testing.B) {
	n := loadClients(20000)
	const seconds = 10
	dir := b.TempDir()
	bin := buildMeridiand(b)
	floor := filepath.Join(dir, "ptpfloor")
	if out, err := exec.Command("go", "build", "-o", floor, "./testdata/ptpfloor").CombinedOutput(); err != nil {
		b.Fatalf("go build ptpfloor: %v\n%s", err, out)
	}
	res := map[string]ptpload.Result{}
	for _, server := range []string{ptpload.ServerMeridiand, ptpload.ServerFloor} {
		r, err := ptpload.Measure(context.Background(), ptpload.Spec{Server: server, Clients: n, Seconds: seconds, Loopback: true,
			Meridiand: bin, FloorArgv: []string{floor}, ServerCPU: 1, GenCPU: 0, Timer: b})
		if err != nil {
			b.Fatalf("%s: %v", server, err)
		}
		b.Logf("%s: %v", server, r)
		if r.DelayRespGrants != n || r.DelayResps < n*seconds*95/100 || r.FollowUps < r.Syncs*95/100 || r.Syncs < n*(seconds-1) {
			b.Fatalf("%s did not keep up: %v", server, r)
		}
		res[server] = r
	}
	m := res["meridiand"]
	b.ReportMetric(m.ClientSecondsPerCPUSecond, "clients/core")
	b.ReportMetric(res["floor"].ClientSecondsPerCPUSecond, "floor-clients/core")
	b.ReportMetric(float64(m.RSSEndKB-m.RSSStartKB), "rss-growth-kB")
}

// BenchmarkPTPGrandmasterVsPtp4l puts the same unicast load on meridiand's
// grandmaster and on ptp4l 3.1.1 (masterOnly, unicast_listen, software
// stamps, free running, no CAP_SYS_TIME), each in turn alone in network
// namespace b on the standard ports 319/320 and pinned to CPU 1; the
// PTP_LOAD_CLIENTS (default 1000) clients live in namespace a (CPU 0), one
// address each in 10.210.0.0/16 (a local route makes them all ours), and
// the two namespaces are joined by a veth pair (ptpload.Measure, which
// meridian-bench ptp-server runs too). Both servers get the same requests
// (Sync and Delay_Resp grants, one Delay_Req per client per second) for
// 10 s; each reports the client-seconds it served per CPU-second and how
// much of the load it served. Run:
//
//	go test -run '^$' -bench PTPGrandmasterVsPtp4l -benchtime 1x ./interop/
func BenchmarkPTPGrandmasterVsPtp4l(b *testing.B) {
	needNetns(b)
	need(b, "ptp4l")
	need(b, "setpriv")
	n := loadClients(1000)
	bin := buildMeridiand(b)
	res := map[string]ptpload.Result{}
	for _, server := range []string{ptpload.ServerMeridiand, ptpload.ServerPtp4l} {
		r, err := ptpload.Measure(context.Background(), ptpload.Spec{Server: server, Clients: n, Seconds: 10,
			Meridiand: bin, ServerCPU: 1, GenCPU: 0, Timer: b})
		if err != nil {
			b.Fatalf("%s: %v", server, err)
		}
		b.Logf("%s: %v", server, r)
		res[server] = r
	}
	b.ReportMetric(res["meridiand"].ClientSecondsPerCPUSecond, "meridiand-clients/core")
	b.ReportMetric(res["ptp4l"].ClientSecondsPerCPUSecond, "ptp4l-clients/core")
	for _, s := range []string{"meridiand", "ptp4l"} {
		r := res[s]
		b.ReportMetric(float64(min(r.FollowUps, r.DelayResps))/float64(r.Clients*r.Seconds), s+"-served-fraction")
	}
}
