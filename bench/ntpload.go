// Package bench has Meridian's load generators and measurement helpers,
// used by tests and by meridian-bench. Every load is bounded in count and
// time and stops by itself.
package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// NTPLoad configures a load against an NTP server.
type NTPLoad struct {
	Addr        string        // host:port
	Clients     int           // sockets (distinct source ports), each one goroutine
	InFlight    int           // requests outstanding per client
	Duration    time.Duration // stop after this long ...
	MaxRequests int64         // ... or after this many requests (0: no cap)
}

// NTPLoadResult is what a load measured.
type NTPLoadResult struct {
	Sent, Received     int64 // Received: good replies only
	Bad                int64 // replies that failed the checks (see ntpcheck.go), unsynchronized ones apart
	Unsynchronized     int64 // replies with LI 3 or stratum 0: the server said it cannot serve time
	Elapsed            time.Duration
	RepliesPerSecond   float64
	LatencyP50, LatP99 time.Duration
}

func (r NTPLoadResult) String() string {
	return fmt.Sprintf("sent %d, received %d (%d bad) in %v: %.0f replies/s, latency p50 %v p99 %v",
		r.Sent, r.Received, r.Bad, r.Elapsed.Round(time.Millisecond), r.RepliesPerSecond, r.LatencyP50, r.LatP99)
}

// check validates a load: bounded in time, aimed only at loopback or
// private test addresses (network namespaces), at most maxInFlight requests
// outstanding per client.
func (cfg NTPLoad) check(maxInFlight int) (*net.UDPAddr, error) {
	if cfg.Clients <= 0 || cfg.InFlight <= 0 || cfg.InFlight > maxInFlight || cfg.Duration <= 0 {
		return nil, fmt.Errorf("bench: clients > 0, 0 < in-flight ≤ %d and duration > 0 required", maxInFlight)
	}
	if cfg.Duration > 10*time.Minute {
		return nil, errors.New("bench: a load runs at most 10 minutes")
	}
	raddr, err := net.ResolveUDPAddr("udp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	if !raddr.IP.IsLoopback() && !raddr.IP.IsPrivate() {
		return nil, fmt.Errorf("bench: refusing to load %s: only loopback or private test addresses", cfg.Addr)
	}
	return raddr, nil
}

// RunNTPLoad sends NTPv4 client requests, one datagram per system call, and
// counts the replies that pass the checks of ntpcheck.go. The origin timestamp of each reply carries the send time,
// for latency.
func RunNTPLoad(ctx context.Context, cfg NTPLoad) (NTPLoadResult, error) {
	raddr, err := cfg.check(1 << 20)
	if err != nil {
		return NTPLoadResult{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var sent, recv, bad, unsync atomic.Int64
	lats := make([][]time.Duration, cfg.Clients)
	var wg sync.WaitGroup
	start := time.Now()
	rc := replyCheck{start: start}
	errc := make(chan error, cfg.Clients)
	for i := 0; i < cfg.Clients; i++ {
		conn, err := net.DialUDP("udp", nil, raddr)
		if err != nil {
			cancel()
			wg.Wait()
			return NTPLoadResult{}, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
			defer stop()
			req := make([]byte, 48)
			buf := make([]byte, 128)
			send := func() bool {
				if cfg.MaxRequests > 0 && sent.Add(1) > cfg.MaxRequests {
					return false
				} else if cfg.MaxRequests == 0 {
					sent.Add(1)
				}
				req[0] = 4<<3 | 3
				binary.BigEndian.PutUint64(req[40:], uint64(time.Since(start)))
				_, err := conn.Write(req)
				return err == nil
			}
			for j := 0; j < cfg.InFlight; j++ {
				if !send() {
					return
				}
			}
			for ctx.Err() == nil {
				_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				n, err := conn.Read(buf)
				if err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
						// a lost request: replace it
						if !send() {
							return
						}
						continue
					}
					if ctx.Err() == nil {
						errc <- err
					}
					return
				}
				if lat, ok := rc.check(buf[:n], time.Since(start), time.Now().UnixNano()); ok {
					recv.Add(1)
					lats[i] = append(lats[i], lat)
				} else if unsynchronized(buf[:n]) {
					unsync.Add(1)
				} else {
					bad.Add(1)
				}
				if !send() {
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	select {
	case err := <-errc:
		return NTPLoadResult{}, err
	default:
	}
	all := mergeLatencies(lats)
	r := NTPLoadResult{Sent: min(sent.Load(), max(cfg.MaxRequests, sent.Load())), Received: recv.Load(), Bad: bad.Load(), Unsynchronized: unsync.Load(), Elapsed: el}
	if cfg.MaxRequests > 0 {
		r.Sent = min(sent.Load(), cfg.MaxRequests)
	}
	r.RepliesPerSecond = float64(r.Received) / el.Seconds()
	r.LatencyP50, r.LatP99 = all.q(500), all.q(990)
	return r, nil
}

// ProcessCPU returns a process's user+system CPU time from /proc.
func ProcessCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0, fmt.Errorf("bench: short /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / hz, nil
}

// ThreadsCPU returns the CPU time a process's live threads have run, to
// the nanosecond: the sum of /proc/PID/task/*/schedstat (the scheduler's
// run time, of which /proc/PID/stat's utime and stime are the same total in
// 10 ms ticks). A thread that exits takes its time with it, so it is for
// measuring a process whose threads outlive the measurement (a server
// under load); it falls back to ProcessCPU where schedstat is missing.
func ThreadsCPU(pid int) (time.Duration, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, err
	}
	var ns int64
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			if _, serr := os.Stat(fmt.Sprintf("/proc/%d/task/%s", pid, t.Name())); serr != nil {
				continue // the thread exited since the listing
			}
			return ProcessCPU(pid) // no schedstat (CONFIG_SCHED_INFO off)
		}
		if err != nil {
			return 0, err
		}
		f := strings.Fields(string(b))
		if len(f) < 1 {
			return 0, fmt.Errorf("bench: empty schedstat of thread %s of %d", t.Name(), pid)
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: schedstat of thread %s of %d: %w", t.Name(), pid, err)
		}
		ns += v
	}
	return time.Duration(ns), nil
}

// CoreBusy returns the time CPU core cpu spent busy (user, nice, system,
// irq, softirq, and steal: time the hypervisor gave to someone else) since
// boot, from /proc/stat. A benchmark subtracts its own processes' CPU time
// from it to see how much of a core others took during a measurement.
func CoreBusy(cpu int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	name := fmt.Sprintf("cpu%d", cpu)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || f[0] != name {
			continue
		}
		var ticks int64
		for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system [idle iowait] irq softirq steal
			v, err := strconv.ParseInt(f[i], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("bench: /proc/stat %s field %d: %w", name, i, err)
			}
			ticks += v
		}
		const hz = 100 // USER_HZ on Linux
		return time.Duration(ticks) * time.Second / hz, nil
	}
	return 0, fmt.Errorf("bench: no %s in /proc/stat", name)
}
