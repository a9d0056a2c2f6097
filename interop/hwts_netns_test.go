package interop

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/meridiantime/meridian/clock/virtual"
	"github.com/meridiantime/meridian/hwts"
	"github.com/meridiantime/meridian/impair"
	"github.com/meridiantime/meridian/ntp"
	"github.com/meridiantime/meridian/ntp/engine"
)

// Through a veth pair between two namespaces, the NTP client's exchange
// uses kernel software TX and RX stamps (reported by hwts), and measures the
// server's injected +2.5 ms.
func TestNTPSoftwareStampsOverVeth(t *testing.T) {
	p := netnsPair(t)
	nsB, addrB := p.NS[impair.B], p.Addr[impair.B].String()
	bin := buildMeridiand(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "m.yaml")
	_ = os.WriteFile(cfg, []byte(fmt.Sprintf("local_stratum: 1\nclock_offset: +2.5ms\nntp_server: {listen: [\"%s:123\"]}\nmetrics: {listen: \"\"}\ngrpc: {listen: []}\nshm: {path: %s}\nstate_dir: %s\n",
		addrB, filepath.Join(dir, "tt.shm"), filepath.Join(dir, "state"))), 0o644)
	d := exec.Command("ip", "netns", "exec", nsB, bin, "--config", cfg)
	d.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // ip execs meridiand: this PID is the daemon
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = d.Process.Kill(); _ = d.Wait() }()

	clk, err := virtual.New(virtual.Options{})
	if err != nil {
		t.Fatal(err)
	}
	src := ntp.NewSource("veth", addrB+":123", engine.ClientConfig{Poll: 200 * time.Millisecond}, clk,
		func() uint64 { return 0 }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	src.Timestamping = hwts.Software
	src.Dial = func(ra *net.UDPAddr) (c *net.UDPConn, err error) {
		ierr := p.InNS(impair.A, func() error { c, err = net.DialUDP("udp", nil, ra); return err })
		return c, ierr
	}
	out := make(chan ntp.SourceSample, 16)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- src.Run(ctx, out) }()
	var offs []float64
	for len(offs) < 10 {
		select {
		case s := <-out:
			// Ground truth: both clocks derive from this host's clocks; the
			// server runs +2.5 ms ahead of CLOCK_REALTIME, ours at 0.
			offs = append(offs, s.Sample.OffsetNS())
			if d := float64(s.Sample.DelayNS()); math.Abs(s.Sample.OffsetNS()-2.5e6) > d/2+5000 {
				t.Fatalf("offset %.0f ns outside 2.5 ms ± δ/2 (δ %.0f ns)", s.Sample.OffsetNS(), d)
			}
		case <-ctx.Done():
			t.Fatalf("only %d samples; source ended: %v", len(offs), <-errc)
		}
	}
	if tx, rx := hwts.Source(src.Stats.LastTxSource.Load()), hwts.Source(src.Stats.LastRxSource.Load()); tx != hwts.SourceSoftware || rx != hwts.SourceSoftware {
		t.Fatalf("stamps: tx %v rx %v, want software both", tx, rx)
	}
	t.Logf("offsets over veth with kernel software stamps (ns): %.0f; missing TX stamps: %d", offs, src.Stats.TxStampsMissing.Load())
	cancel()
	<-errc
}
