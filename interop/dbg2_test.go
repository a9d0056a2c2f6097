package interop

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/meridiantime/meridian/clock/virtual"
	"github.com/meridiantime/meridian/ntp"
)

func TestDbgSamples(t *testing.T) {
	port := freeUDPPort(t)
	chronyd(t, fmt.Sprintf("local stratum 1\nallow 127.0.0.1\nport %d\nbindaddress 127.0.0.1", port))
	clk, _ := virtual.New(virtual.Options{OffsetNS: -3e6})
	src := ntp.NewSource("x", fmt.Sprintf("127.0.0.1:%d", port), ntp.ClientConfig{Poll: 130 * time.Millisecond}, clk, func() uint64 { return 0 }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	out := make(chan ntp.SourceSample, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	go src.Run(ctx, out)
	go func() {
		for i := 0; ctx.Err() == nil; i++ {
			clk.AdjFreqPPB(float64((i*7919)%20000 - 10000))
			time.Sleep(100 * time.Millisecond)
		}
	}()
	bad, n := 0, 0
	for {
		select {
		case <-ctx.Done():
			t.Logf("%d samples, %d outside δ/2", n, bad)
			return
		case s := <-out:
			n++
			xTrue := float64(clk.NowNS() - time.Now().UnixNano())
			x := -s.Sample.OffsetNS()
			d := float64(s.Sample.DelayNS())
			e := x - xTrue
			if e > d/2+1000 || e < -d/2-1000 {
				bad++
				sm := s.Sample
				t.Logf("sample %d: err %.0f ns, δ %.0f, t2-t1 %d, t4-t3 %d, t3-t2 %d", n, e, d, sm.T2NS-sm.T1NS, sm.T4NS-sm.T3NS, sm.T3NS-sm.T2NS)
			}
		}
	}
}
