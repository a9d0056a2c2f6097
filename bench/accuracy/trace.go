package accuracy

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Delay traces: the one-way delays our NTP client's exchanges really took,
// recorded from its debug sample log (Options.Traces), for the simulator to
// replay against true time (a source's `trace` in a scenario file).
//
// Each sample line carries t1 … t4 and clock_minus_realtime_ns, the
// client's clock less CLOCK_REALTIME when it was logged. The server's clock
// is the host's plus the injected offset, so on the host's clock
//
//	request = t2 − injected − (t1 − c),  reply = (t4 − c) − (t3 − injected)
//
// — both legs as the kernel stamped them, the server's hold left out (the
// simulated server answers at once). The client's clock moves by its
// slew between t1 and the log line, at most max_freq (500 ppm) times a few
// ms: under a µs.

// TraceFromLog reads a meridiand log and returns, per sample line in order,
// its request and reply delays in µs; sample lines without the host-clock
// fields are refused.
func TraceFromLog(r io.Reader, injectedNS int64) ([][2]float64, error) {
	var rows [][2]float64
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if !strings.Contains(line, " msg=sample ") {
			continue
		}
		v := map[string]int64{"t1_ns": 0, "t2_ns": 0, "t3_ns": 0, "t4_ns": 0, "clock_minus_realtime_ns": 0}
		found := 0
		for _, kv := range strings.Fields(line) {
			k, s, _ := strings.Cut(kv, "=")
			if _, ok := v[k]; !ok {
				continue
			}
			x, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("accuracy: trace: log line %d: %s: %v", n, k, err)
			}
			v[k] = x
			found++
		}
		if found != len(v) {
			return nil, fmt.Errorf("accuracy: trace: log line %d: a sample without t1_ns … t4_ns and clock_minus_realtime_ns (a meridiand too old for traces?)", n)
		}
		c := v["clock_minus_realtime_ns"]
		req := v["t2_ns"] - injectedNS - (v["t1_ns"] - c)
		rep := (v["t4_ns"] - c) - (v["t3_ns"] - injectedNS)
		rows = append(rows, [2]float64{float64(req) / 1e3, float64(rep) / 1e3})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("accuracy: trace: %w", err)
	}
	return rows, nil
}

// WriteTrace writes rows in the simulator's trace format (see sim.ParseTrace),
// a header comment first. A leg below 0 (a clock read across a slew, or a
// sample the discipline will reject) is written as 0.
func WriteTrace(w io.Writer, header string, rows [][2]float64) error {
	bw := bufio.NewWriter(w)
	for _, l := range strings.Split(strings.TrimRight(header, "\n"), "\n") {
		fmt.Fprintf(bw, "# %s\n", l)
	}
	fmt.Fprintln(bw, "# request_us reply_us: one-way delays on the host's clock (kernel stamps)")
	for _, r := range rows {
		fmt.Fprintf(bw, "%.1f %.1f\n", max(r[0], 0), max(r[1], 0))
	}
	return bw.Flush()
}

// WriteTraces writes, for our NTP client on this path, the delays its
// exchanges took to dir/<path>-meridian-ntp.trace (Options.Traces must be
// set: the client logs its samples at debug level). It returns the files.
// (Our PTP client's samples pair a Delay_Req with the Sync before it, so
// their t1 … t4 are not one request and its reply: no trace.)
func (r *Run) WriteTraces(dir string) ([]string, error) {
	if !r.opts.Traces {
		return nil, fmt.Errorf("accuracy: traces: the run was started without Options.Traces")
	}
	var files []string
	for _, c := range r.cs {
		if c.name != MeridianNTP {
			continue
		}
		f, err := os.Open(c.proc.logPath)
		if err != nil {
			return files, fmt.Errorf("accuracy: traces: %w", err)
		}
		rows, err := TraceFromLog(f, r.opts.InjectedOffsetNS)
		f.Close()
		if err != nil {
			return files, err
		}
		name := filepath.Join(dir, fmt.Sprintf("%s-%s.trace", r.path.Name, c.name))
		out, err := os.Create(name)
		if err != nil {
			return files, fmt.Errorf("accuracy: traces: %w", err)
		}
		header := fmt.Sprintf("meridian-bench accuracy: path %s (%s), contestant %s, server %s, %d exchanges answered",
			r.path.Name, Describe(r.path.Impair), c.name, r.opts.Server, len(rows))
		err = WriteTrace(out, header, rows)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return files, fmt.Errorf("accuracy: traces: %s: %w", name, err)
		}
		files = append(files, name)
	}
	return files, nil
}
