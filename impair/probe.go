package impair

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"time"
)

// ProbeResult holds the one-way and round-trip delays of UDP echoes between
// the namespaces. Both ends run in this process and stamp with one clock
// (Go's monotonic clock, CLOCK_MONOTONIC), so one-way delays are measured,
// not halved round trips. Stamps are taken in user space right after a read
// returns and right before a write: the kernel's stack in both namespaces
// is part of every figure.
type ProbeResult struct {
	Sent      int             // probes requested
	AtoB      []time.Duration // sorted
	BtoA      []time.Duration // sorted
	RoundTrip []time.Duration // sorted; excludes the echo's turnaround
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1, nearest rank) of sorted
// durations, 0 for none.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return sorted[max(0, min(i, len(sorted)-1))]
}

const probeBytes = 8 + 3*8

// Echo is one probe's legs, with when it was sent (since the first).
type Echo struct {
	SentAfter       time.Duration
	AtoB, BtoA, RTT time.Duration
}

// Probe sends n UDP echoes from A to B, one every interval, and measures
// each leg. Lost echoes are simply missing from the result.
func (p *Pair) Probe(ctx context.Context, n int, interval time.Duration) (ProbeResult, error) {
	es, err := p.ProbeSeries(ctx, n, interval)
	res := ProbeResult{Sent: n}
	for _, e := range es {
		res.AtoB = append(res.AtoB, e.AtoB)
		res.BtoA = append(res.BtoA, e.BtoA)
		res.RoundTrip = append(res.RoundTrip, e.RTT)
	}
	for _, s := range [][]time.Duration{res.AtoB, res.BtoA, res.RoundTrip} {
		slices.Sort(s)
	}
	return res, err
}

// ProbeSeries is Probe's echoes one by one, in the order they came back.
func (p *Pair) ProbeSeries(ctx context.Context, n int, interval time.Duration) ([]Echo, error) {
	srv, err := p.ListenUDP(B, 0)
	if err != nil {
		return nil, err
	}
	cli, err := p.ListenUDP(A, 0)
	if err != nil {
		srv.Close()
		return nil, err
	}
	base := time.Now()
	since := func() int64 { return int64(time.Since(base)) }
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the echo: stamps arrival and departure
		defer wg.Done()
		buf := make([]byte, 64)
		for {
			k, from, err := srv.ReadFromUDPAddrPort(buf)
			t2 := since()
			if err != nil {
				return
			}
			if k != probeBytes {
				continue
			}
			binary.LittleEndian.PutUint64(buf[16:], uint64(t2))
			binary.LittleEndian.PutUint64(buf[24:], uint64(since()))
			_, _ = srv.WriteToUDPAddrPort(buf[:probeBytes], from)
		}
	}()
	defer func() {
		srv.Close()
		cli.Close()
		wg.Wait()
	}()
	var echoes []Echo
	recvDone := make(chan error, 1)
	go func() { // replies
		buf := make([]byte, 64)
		for {
			_ = cli.SetReadDeadline(time.Now().Add(time.Second))
			k, _, err := cli.ReadFromUDPAddrPort(buf)
			t4 := since()
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) {
					recvDone <- nil
				} else {
					recvDone <- err
				}
				return
			}
			if k != probeBytes {
				continue
			}
			t1 := int64(binary.LittleEndian.Uint64(buf[8:]))
			t2 := int64(binary.LittleEndian.Uint64(buf[16:]))
			t3 := int64(binary.LittleEndian.Uint64(buf[24:]))
			echoes = append(echoes, Echo{SentAfter: time.Duration(t1), AtoB: time.Duration(t2 - t1),
				BtoA: time.Duration(t4 - t3), RTT: time.Duration(t4 - t1 - (t3 - t2))})
		}
	}()
	dst := net.UDPAddrFromAddrPort(srv.LocalAddr().(*net.UDPAddr).AddrPort())
	msg := make([]byte, probeBytes)
	tick := time.NewTicker(interval)
	var serr error
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint64(msg[0:], uint64(i))
		binary.LittleEndian.PutUint64(msg[8:], uint64(since()))
		if _, err := cli.WriteToUDP(msg, dst); err != nil {
			serr = fmt.Errorf("impair: probe send: %w", err)
			break
		}
		select {
		case <-ctx.Done():
			serr = ctx.Err()
		case <-tick.C:
		}
		if serr != nil {
			break
		}
	}
	tick.Stop()
	rerr := <-recvDone // a second without replies ends it
	return echoes, errors.Join(serr, rerr)
}

// Calibration is the wire's own overhead, measured with zero impairment.
type Calibration struct {
	AtoBP50, BtoAP50 time.Duration // one-way medians
	AtoBMin, BtoAMin time.Duration
	Replies, Sent    int
	// OverheadNS is the one-way delay a zero-impairment wire adds: the mean
	// of the two directions' medians (user-space stamps, so it includes
	// both kernels' stacks, as an application sees them).
	OverheadNS int64
}

// Calibrate sets the wire to zero impairment, warms the path (ARP), sends
// n probes and records the result as the wire's overhead (Wire.OverheadNS).
// It leaves the wire at zero impairment: Configure the real one after.
func (p *Pair) Calibrate(ctx context.Context, n int) (Calibration, error) {
	if p.Wire == nil {
		return Calibration{}, errors.New("impair: calibrate: a veth pair has no wire")
	}
	if err := p.Wire.Configure(Config{}); err != nil {
		return Calibration{}, err
	}
	if _, err := p.Probe(ctx, 5, 5*time.Millisecond); err != nil { // ARP
		return Calibration{}, err
	}
	r, err := p.Probe(ctx, n, 2*time.Millisecond)
	if err != nil {
		return Calibration{}, err
	}
	if len(r.AtoB) < n/2 {
		return Calibration{}, fmt.Errorf("impair: calibrate: %d of %d probes answered through a lossless wire", len(r.AtoB), n)
	}
	c := Calibration{
		AtoBP50: Quantile(r.AtoB, 0.5), BtoAP50: Quantile(r.BtoA, 0.5),
		AtoBMin: r.AtoB[0], BtoAMin: r.BtoA[0], Replies: len(r.AtoB), Sent: r.Sent,
	}
	c.OverheadNS = int64(c.AtoBP50+c.BtoAP50) / 2
	p.Wire.overheadNS.Store(c.OverheadNS)
	return c, nil
}
