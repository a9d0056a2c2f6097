package ntp

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/meridiantime/meridian/clock/virtual"
	"github.com/meridiantime/meridian/hwts"
	"github.com/meridiantime/meridian/hwts/hwtstest"
	"github.com/meridiantime/meridian/ntp/engine"
	"github.com/meridiantime/meridian/truetime"
)

// hostTS serves the host clock + off as synchronized.
type hostTS struct{ off int64 }

func (h hostTS) LocalNS() int64 { return time.Now().UnixNano() + h.off }
func (h hostTS) Estimate() truetime.Estimate {
	n := h.LocalNS()
	return truetime.Estimate{Status: truetime.Synchronized, LocalNS: n, Eps0NS: 1000, MaxErrorNS: 1e9,
		Stratum: 1, RefID: 0x474e5353, LastSampleNS: n}
}
func (h hostTS) Now() (truetime.Interval, error) {
	return truetime.Bound(h.LocalNS(), h.Estimate()), nil
}

// measureHW polls a loopback server serving the host clock +2.5 ms from a
// source on a simulated NIC whose PHC is 31 ms behind the host and 70 ppm
// fast, reading its stamps through conv; it returns the sample offsets
// and their δs.
func measureHW(t *testing.T, n int, conv func(nic *hwtstest.NIC, clk *virtual.Clock) func(int) (hwts.HardwareClock, error)) (offs, delays []float64, src *Source) {
	t.Helper()
	s := NewServer(hostTS{2_500_000}, RateLimit{}, quietLog())
	if err := s.Listen("127.0.0.1:0", 1); err != nil {
		t.Fatal(err)
	}
	serve(t, s)
	clk, err := virtual.New(virtual.Options{})
	if err != nil {
		t.Fatal(err)
	}
	nic := hwtstest.New(2, -31e6, 70_000, 9)
	src = NewSource("hw", s.Addr(), engine.ClientConfig{Poll: 100 * time.Millisecond}, clk, func() uint64 { return 0 }, quietLog())
	src.Interface, src.Timestamping = "lo", hwts.Hardware
	src.TimestampSys, src.PHC = nic, conv(nic, clk)
	out := make(chan SourceSample, 16)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- src.Run(ctx, out) }()
	for len(offs) < n {
		select {
		case smp := <-out:
			offs = append(offs, smp.Sample.OffsetNS())
			delays = append(delays, float64(smp.Sample.DelayNS()))
		case <-ctx.Done():
			t.Fatalf("%d samples in 20 s: %v", len(offs), <-errc)
		}
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return offs, delays, src
}

// The NTP source uses a NIC's hardware stamps, converted through the PHC's
// measured relation to the host (phc.Map): every offset is the server's
// +2.5 ms within δ/2 (+5 µs for the host clock's own slew between the
// virtual clock's start and the sample), and both t1 and t4 are reported
// as hardware stamps. Negative control: the stamps read as if the PHC were
// the clock are off by the PHC's 31 ms.
func TestSourceUsesHardwareStamps(t *testing.T) {
	offs, delays, src := measureHW(t, 8, func(nic *hwtstest.NIC, clk *virtual.Clock) func(int) (hwts.HardwareClock, error) {
		return nic.Opener(func(raw int64) int64 { return clk.Model().At(raw) })
	})
	for i, o := range offs {
		if math.Abs(o-2.5e6) > delays[i]/2+5000 {
			t.Fatalf("offset %.0f ns outside 2.5 ms ± δ/2 (δ %.0f ns)", o, delays[i])
		}
	}
	if tx, rx := hwts.Source(src.Stats.LastTxSource.Load()), hwts.Source(src.Stats.LastRxSource.Load()); tx != hwts.SourceHardware || rx != hwts.SourceHardware {
		t.Fatalf("stamps: tx %v rx %v, want hardware", tx, rx)
	}
	t.Logf("offsets with hardware stamps (ns): %.0f", offs)

	bad, _, _ := measureHW(t, 3, func(nic *hwtstest.NIC, _ *virtual.Clock) func(int) (hwts.HardwareClock, error) {
		return nic.Opener(nic.PHC.At)
	})
	for _, o := range bad {
		if math.Abs(o-2.5e6) < 1e6 {
			t.Fatalf("negative control: unconverted PHC stamps measured %.0f ns", o)
		}
	}
}
