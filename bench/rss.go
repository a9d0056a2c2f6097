package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"
)

// ProcMem is a process's memory and thread count as the kernel reports
// them in /proc/<pid>/status (sizes in bytes).
type ProcMem struct {
	RSS     int64 // VmRSS: resident set now
	HWM     int64 // VmHWM: peak resident set (since start or ResetPeakRSS)
	RssAnon int64 // of RSS: anonymous (heap, stacks)
	RssFile int64 // of RSS: file-backed (the binary's and libraries' pages)
	Threads int   // Threads: kernel threads (Go's Ms)
}

func (m ProcMem) String() string {
	return fmt.Sprintf("VmRSS %.1f MB (anon %.1f, file %.1f), VmHWM %.1f MB, %d threads",
		MB(m.RSS), MB(m.RssAnon), MB(m.RssFile), MB(m.HWM), m.Threads)
}

// MB is bytes in megabytes (10⁶ bytes, as ps and top do not: they show
// KiB; the bounds in docs/memory.md are in MB = 10⁶ bytes).
func MB(b int64) float64 { return float64(b) / 1e6 }

// ReadProcMem reads /proc/<pid>/status.
func ReadProcMem(pid int) (ProcMem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcMem{}, err
	}
	m, err := ParseProcStatus(b)
	if err != nil {
		return ProcMem{}, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	return m, nil
}

// ParseProcStatus parses the text of /proc/<pid>/status. VmRSS, VmHWM and
// Threads are required (a kernel thread or a zombie has no Vm* lines: an
// error); RssAnon and RssFile are read when present. Sizes must be in kB.
func ParseProcStatus(b []byte) (ProcMem, error) {
	var m ProcMem
	var seen [5]bool
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		key, val, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		idx := -1
		var dst *int64
		switch string(key) {
		case "VmRSS":
			idx, dst = 0, &m.RSS
		case "VmHWM":
			idx, dst = 1, &m.HWM
		case "RssAnon":
			idx, dst = 2, &m.RssAnon
		case "RssFile":
			idx, dst = 3, &m.RssFile
		case "Threads":
			n, err := strconv.Atoi(string(bytes.TrimSpace(val)))
			if err != nil || n < 1 {
				return ProcMem{}, fmt.Errorf("bench: Threads: want a positive count, got %q", bytes.TrimSpace(val))
			}
			m.Threads, seen[4] = n, true
			continue
		default:
			continue
		}
		f := bytes.Fields(val)
		if len(f) != 2 || string(f[1]) != "kB" {
			return ProcMem{}, fmt.Errorf("bench: %s: want \"<n> kB\", got %q", key, bytes.TrimSpace(val))
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil || kb < 0 || kb > math.MaxInt64/1024 {
			return ProcMem{}, fmt.Errorf("bench: %s: bad size %q", key, f[0])
		}
		*dst, seen[idx] = kb*1024, true
	}
	for i, name := range []string{"VmRSS", "VmHWM", "", "", "Threads"} {
		if name != "" && !seen[i] {
			return ProcMem{}, fmt.Errorf("bench: no %s line (a kernel thread or a zombie?)", name)
		}
	}
	return m, nil
}

// ResetPeakRSS sets the process's VmHWM back to its current VmRSS
// (writing 5 to /proc/<pid>/clear_refs), so that the next reading's VmHWM
// is the peak of what ran in between. Only the process's owner (or root)
// may.
func ResetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// MemSampler reads a process's /proc status at a fixed interval until
// stopped: the resident set over a phase of a run, not one reading.
type MemSampler struct {
	mu      sync.Mutex
	samples []ProcMem
	err     error
	stop    context.CancelFunc
	done    chan struct{}
}

// SampleMem starts sampling pid every interval (at least 10 ms).
func SampleMem(pid int, interval time.Duration) *MemSampler {
	interval = max(interval, 10*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	s := &MemSampler{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			m, err := ReadProcMem(pid)
			s.mu.Lock()
			if err != nil {
				s.err = err
			} else {
				s.samples = append(s.samples, m)
			}
			s.mu.Unlock()
			if err != nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// MemSummary summarises a sampled phase.
type MemSummary struct {
	Samples    int
	SteadyRSS  int64 // median VmRSS over the second half of the samples
	MaxRSS     int64 // largest VmRSS sampled
	HWM        int64 // VmHWM at the last sample (the kernel's peak, between samples too)
	MaxThreads int
}

func (s MemSummary) String() string {
	return fmt.Sprintf("steady VmRSS %.1f MB, max sampled %.1f MB, VmHWM %.1f MB, ≤ %d threads (%d samples)",
		MB(s.SteadyRSS), MB(s.MaxRSS), MB(s.HWM), s.MaxThreads, s.Samples)
}

// Stop ends the sampling and summarises it; an error if a reading failed
// (the process died) or there was none.
func (s *MemSampler) Stop() (MemSummary, error) {
	s.stop()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return MemSummary{}, s.err
	}
	return SummariseMem(s.samples)
}

// SummariseMem summarises samples taken in order.
func SummariseMem(samples []ProcMem) (MemSummary, error) {
	if len(samples) == 0 {
		return MemSummary{}, errors.New("bench: no memory samples")
	}
	var r MemSummary
	r.Samples = len(samples)
	tail := make([]int64, 0, len(samples)-len(samples)/2)
	for i, m := range samples {
		r.MaxRSS = max(r.MaxRSS, m.RSS)
		r.MaxThreads = max(r.MaxThreads, m.Threads)
		if i >= len(samples)/2 {
			tail = append(tail, m.RSS)
		}
	}
	slices.Sort(tail)
	r.SteadyRSS = tail[len(tail)/2]
	r.HWM = samples[len(samples)-1].HWM
	return r, nil
}

// ScrapeMetric fetches a Prometheus text endpoint (e.g.
// http://127.0.0.1:9390/metrics) and returns the value of the unlabelled
// sample name, e.g. go_goroutines.
func ScrapeMetric(ctx context.Context, url, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("bench: GET %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, err
	}
	v, err := MetricValue(b, name)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", url, err)
	}
	return v, nil
}

// MetricValue finds the unlabelled sample name in Prometheus text
// exposition format and returns its value. Comment lines, other metrics and
// labelled samples of the same name are skipped; a second unlabelled
// sample of the name, or none, is an error.
func MetricValue(text []byte, name string) (float64, error) {
	if name == "" {
		return 0, errors.New("bench: empty metric name")
	}
	found := false
	var v float64
	for len(text) > 0 {
		line := text
		if i := bytes.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			text = nil
		}
		rest, ok := bytes.CutPrefix(line, []byte(name))
		if !ok || len(rest) == 0 || (rest[0] != ' ' && rest[0] != '\t') {
			continue // another metric, a longer name, a labelled sample or a comment
		}
		f := bytes.Fields(rest)
		if len(f) < 1 || len(f) > 2 { // value [timestamp]
			return 0, fmt.Errorf("bench: metric %s: malformed sample %q", name, line)
		}
		x, err := strconv.ParseFloat(string(f[0]), 64)
		if err != nil {
			return 0, fmt.Errorf("bench: metric %s: bad value %q", name, f[0])
		}
		if found {
			return 0, fmt.Errorf("bench: metric %s: two unlabelled samples", name)
		}
		found, v = true, x
	}
	if !found {
		return 0, fmt.Errorf("bench: metric %s not exposed", name)
	}
	return v, nil
}

// CheckRSS is the bound assertion of the memory tests: nil when rss is at
// most bound bytes, else an error naming what exceeded it and by how much.
func CheckRSS(what string, rss, bound int64) error {
	if rss <= bound {
		return nil
	}
	return fmt.Errorf("%s: %.1f MB exceeds the bound of %.1f MB by %.1f MB", what, MB(rss), MB(bound), MB(rss-bound))
}
