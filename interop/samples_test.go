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
	"github.com/meridiantime/meridian/ntp/engine"
)

// Every sample our NTP client takes from chronyd — while its own clock's
// frequency is changed under it every 100 ms, as the servo does — bounds
// the true offset within ±δ/2 (plus the server's root dispersion). Ground
// truth: chronyd serves CLOCK_REALTIME and our clock's offset from it is
// read directly. This is the measurement assumption the whole bound rests
// on; it caught receive stamps that could be early.
func TestSamplesWithinDelayBound(t *testing.T) {
	port := freeUDPPort(t)
	chronyd(t, fmt.Sprintf("local stratum 1\nallow 127.0.0.1\nport %d\nbindaddress 127.0.0.1", port))
	clk, _ := virtual.New(virtual.Options{OffsetNS: -3e6})
	src := ntp.NewSource("x", fmt.Sprintf("127.0.0.1:%d", port), engine.ClientConfig{Poll: 130 * time.Millisecond}, clk, func() uint64 { return 0 }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	out := make(chan ntp.SourceSample, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
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
			if n < 50 || bad > 0 {
				t.Fatalf("%d samples, %d outside ±δ/2 of the true offset", n, bad)
			}
			t.Logf("%d samples, all within ±δ/2 of the true offset", n)
			return
		case s := <-out:
			n++
			// The true offset, bracketed: a delay between the reads (a loaded
			// CI machine) widens the bracket instead of faking an error.
			rt1 := time.Now().UnixNano()
			l := clk.NowNS()
			rt2 := time.Now().UnixNano()
			trueLo, trueHi := float64(l-rt2), float64(l-rt1)
			x := -s.Sample.OffsetNS()
			d := float64(s.Sample.DelayNS())
			slack := d/2 + float64(s.Sample.RootDispersionNS) + 1000 // 1 µs: freq changes between t4 and these reads
			e := 0.0
			if x+slack < trueLo {
				e = x + slack - trueLo
			} else if x-slack > trueHi {
				e = x - slack - trueHi
			}
			if e != 0 {
				bad++
				sm := s.Sample
				t.Logf("sample %d: outside by %.0f ns, δ %.0f, t2-t1 %d, t4-t3 %d, t3-t2 %d", n, e, d, sm.T2NS-sm.T1NS, sm.T4NS-sm.T3NS, sm.T3NS-sm.T2NS)
			}
		}
	}
}
