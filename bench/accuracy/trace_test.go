package accuracy

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/meridiantime/meridian/sim"
)

// TraceFromLog recovers the one-way delays an exchange took from the
// sample line's stamps: lines built from known delays, a client clock c
// off the host's and a server injected off it, come back as those delays;
// WriteTrace's output parses as the simulator's trace.
func TestTraceFromLog(t *testing.T) {
	const injected = 5_000_000
	var log strings.Builder
	want := [][2]float64{{1000, 1000}, {2050.5, 480}, {1234, 0.7}}
	for i, w := range want {
		c := int64(-40_000 + 30_000*i) // the client's clock − the host's
		t1h := int64(1_700_000_000_000_000_000 + i*1e9)
		t1 := t1h + c
		t2 := t1h + int64(w[0]*1e3) + injected
		t3 := t2 + 150_000
		t4 := t3 - injected + int64(w[1]*1e3) + c
		fmt.Fprintf(&log, "time=x level=DEBUG msg=sample source=ntp:a t1_ns=%d offset_ns=0 delay_ns=0 request_leg_ns=0 response_leg_ns=0 server_ns=0 t2_ns=%d t3_ns=%d t4_ns=%d clock_minus_realtime_ns=%d\n",
			t1, t2, t3, t4, c)
		fmt.Fprintln(&log, "time=x level=INFO msg=status status=synchronized")
	}
	rows, err := TraceFromLog(strings.NewReader(log.String()), injected)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(rows), len(want))
	}
	for i := range want {
		for j := range 2 {
			if math.Abs(rows[i][j]-want[i][j]) > 0.001 {
				t.Fatalf("row %d: %v, want %v", i, rows[i], want[i])
			}
		}
	}
	var b bytes.Buffer
	if err := WriteTrace(&b, "a header\nof two lines", rows); err != nil {
		t.Fatal(err)
	}
	back, err := sim.ParseTrace(b.Bytes())
	if err != nil {
		t.Fatalf("the simulator refuses the trace: %v\n%s", err, b.String())
	}
	for i := range want {
		if math.Abs(back[i][0]-want[i][0]) > 0.05 || math.Abs(back[i][1]-want[i][1]) > 0.05 {
			t.Fatalf("row %d read back as %v, want %v", i, back[i], want[i])
		}
	}
	// A sample line from a daemon that does not log the stamps is refused.
	old := "time=x level=DEBUG msg=sample source=ntp:a t1_ns=1 offset_ns=0 delay_ns=0\n"
	if _, err := TraceFromLog(strings.NewReader(old), 0); err == nil || !strings.Contains(err.Error(), "clock_minus_realtime_ns") {
		t.Fatalf("a line without the host-clock fields: %v", err)
	}
}
