package impair

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/meridiantime/meridian/hwts"
)

// Floors are one-way delays through the wire as the kernel stamps them:
// from the sender's software transmit stamp to the receiver's software
// receive stamp, both CLOCK_REALTIME of the one kernel the namespaces
// share, so each leg is measured, not half a round trip. Time clients
// that stamp in the kernel (chronyd, meridiand) see exactly these legs.
type Floors struct {
	AtoBMin, BtoAMin time.Duration
	AtoBP50, BtoAP50 time.Duration
	Exchanges, Sent  int
}

// StampedCalibration is the wire's own overhead per direction as kernel
// stamps see it, in the rhythm of a time client's exchanges: a request
// after a pause (the machine idle, so its wake-up is slow) and the reply
// right after the request's delivery (the machine awake).
type StampedCalibration struct {
	Floors
	// AtoBBase and BtoABase are the delays configured while measuring
	// (the path's base delays, no jitter, loss or subtraction).
	AtoBBase, BtoABase time.Duration
	// AtoBOverheadNS and BtoAOverheadNS are each direction's minimum
	// less its base delay (never below 0): set them as the directions'
	// Path.SubtractNS and each direction's minimum is its configured delay.
	AtoBOverheadNS, BtoAOverheadNS int64
}

// CalibrateStamped configures the wire with cfg's base delays alone (no
// jitter, loss, route change or subtraction), measures n exchanges one
// every interval with kernel stamps (StampFloors) and returns each
// direction's overhead over its base delay. It leaves the wire at those
// base delays: Configure the real path after.
//
// Calibrate's user-space probes, back to back every 2 ms, keep the machine
// awake; a time client's request leaves a machine that has been idle since
// its last poll, and the wire's wake-up to read it is slower than the one
// for the reply that follows within a millisecond. Measured with
// user-space overheads subtracted, that made the request direction's
// floor ~20 µs longer than the reply's on a "symmetric" path: an
// asymmetry of the instrument that every client took for offset.
func (p *Pair) CalibrateStamped(ctx context.Context, cfg Config, n int, interval time.Duration) (StampedCalibration, error) {
	if p.Wire == nil {
		return StampedCalibration{}, errors.New("impair: calibrate: a veth pair has no wire")
	}
	base := Config{AtoB: Path{Delay: cfg.AtoB.Delay}, BtoA: Path{Delay: cfg.BtoA.Delay}, Seed: cfg.Seed}
	if err := p.Wire.Configure(base); err != nil {
		return StampedCalibration{}, err
	}
	f, err := p.StampFloors(ctx, n, interval)
	if err != nil {
		return StampedCalibration{}, err
	}
	if f.Exchanges < n/2 {
		return StampedCalibration{}, fmt.Errorf("impair: calibrate: %d of %d stamped exchanges completed through a lossless wire", f.Exchanges, n)
	}
	return StampedCalibration{
		Floors:         f,
		AtoBBase:       base.AtoB.Delay,
		BtoABase:       base.BtoA.Delay,
		AtoBOverheadNS: max(0, int64(f.AtoBMin-base.AtoB.Delay)),
		BtoAOverheadNS: max(0, int64(f.BtoAMin-base.BtoA.Delay)),
	}, nil
}

// StampFloors sends n UDP exchanges from A to B through the wire as it is
// configured, one every interval, each answered at once, and reports both
// legs' kernel-stamped minima and medians. Exchanges without both
// transmit stamps, or lost, are left out.
func (p *Pair) StampFloors(ctx context.Context, n int, interval time.Duration) (Floors, error) {
	x, err := p.newStampedExchanger(time.Second)
	if err != nil {
		return Floors{}, err
	}
	defer x.close()
	var ab, ba []time.Duration
	sent := 0
	for i := 0; i < n; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return Floors{}, ctx.Err()
			case <-time.After(interval):
			}
		}
		l, err := x.exchange(uint64(i))
		if err != nil {
			return Floors{}, err
		}
		sent++
		if l.AtoB > 0 && l.BtoA > 0 {
			ab = append(ab, l.AtoB)
			ba = append(ba, l.BtoA)
		}
	}
	f := Floors{Exchanges: len(ab), Sent: sent}
	if len(ab) == 0 {
		return f, fmt.Errorf("impair: stamped probe: none of %d exchanges completed with kernel stamps", sent)
	}
	slices.Sort(ab)
	slices.Sort(ba)
	f.AtoBMin, f.BtoAMin = ab[0], ba[0]
	f.AtoBP50, f.BtoAP50 = Quantile(ab, 0.5), Quantile(ba, 0.5)
	return f, nil
}

// StampedLegs is one stamped exchange: when it was sent and each leg's
// kernel-stamped one-way delay, 0 for a leg that was lost or went without
// a stamp (a lost request has no reply leg).
type StampedLegs struct {
	At         time.Time
	AtoB, BtoA time.Duration
}

// stampedExchanger is a stamped client in A and an echo server in B, both
// UDP sockets with software stamps, used one exchange at a time.
type stampedExchanger struct {
	srv, cli *net.UDPConn
	ss, cs   *hwts.Socket
	dst      *net.UDPAddr
	wait     time.Duration // for each datagram to arrive
	buf, oob []byte
	msg      []byte
}

func (p *Pair) newStampedExchanger(wait time.Duration) (*stampedExchanger, error) {
	x := &stampedExchanger{wait: wait, buf: make([]byte, 64), oob: make([]byte, 512), msg: make([]byte, probeBytes)}
	var err error
	if x.srv, err = p.ListenUDP(B, 0); err != nil {
		return nil, err
	}
	if x.cli, err = p.ListenUDP(A, 0); err != nil {
		x.close()
		return nil, err
	}
	if x.ss, err = softwareStamps(x.srv); err != nil {
		x.close()
		return nil, err
	}
	if x.cs, err = softwareStamps(x.cli); err != nil {
		x.close()
		return nil, err
	}
	x.dst = x.srv.LocalAddr().(*net.UDPAddr)
	return x, nil
}

func (x *stampedExchanger) close() {
	for _, c := range []*net.UDPConn{x.srv, x.cli} {
		if c != nil {
			_ = c.Close()
		}
	}
}

// exchange sends probe seq from A, echoes it from B at once and returns
// the legs it could measure; an error only when a socket refused to send.
func (x *stampedExchanger) exchange(seq uint64) (StampedLegs, error) {
	l := StampedLegs{At: time.Now()}
	binary.LittleEndian.PutUint64(x.msg, seq)
	idc := x.cs.NextTxID()
	if _, err := x.cli.WriteToUDP(x.msg, x.dst); err != nil {
		return l, fmt.Errorf("impair: stamped probe send: %w", err)
	}
	t2, from, ok := readStamped(x.srv, x.buf, x.oob, seq, x.wait)
	if !ok {
		return l, nil // lost: neither leg
	}
	// The reply goes at once, as a server's would; the stamps are read after.
	ids := x.ss.NextTxID()
	if _, err := x.srv.WriteToUDP(x.buf[:probeBytes], from); err != nil {
		return l, fmt.Errorf("impair: stamped probe reply: %w", err)
	}
	t4, _, ok4 := readStamped(x.cli, x.buf, x.oob, seq, x.wait)
	if t1, ok := x.cs.TxStamp(idc, 20*time.Millisecond); ok && t1.Source == hwts.SourceSoftware {
		l.AtoB = time.Duration(t2 - t1.NS)
	}
	if t3, ok := x.ss.TxStamp(ids, 20*time.Millisecond); ok && ok4 && t3.Source == hwts.SourceSoftware {
		l.BtoA = time.Duration(t4 - t3.NS)
	}
	return l, nil
}

// StampProbe measures the wire with stamped exchanges for as long as it
// runs, next to whatever else uses it: the legs the clients' packets see
// at the same time, where a calibration made before sees the machine as it
// was then. Start it with Pair.StartStampProbe; Close stops it.
type StampProbe struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	legs   []StampedLegs
	err    error
}

// StartStampProbe runs one stamped exchange every interval (waiting at
// most wait for each datagram) until ctx ends or Close.
func (p *Pair) StartStampProbe(ctx context.Context, interval, wait time.Duration) (*StampProbe, error) {
	if interval <= 0 || wait <= 0 {
		return nil, fmt.Errorf("impair: stamp probe: interval %v and wait %v must be > 0", interval, wait)
	}
	x, err := p.newStampedExchanger(wait)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	sp := &StampProbe{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(sp.done)
		defer x.close()
		t := time.NewTicker(interval)
		defer t.Stop()
		for seq := uint64(0); ; seq++ {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			l, err := x.exchange(seq)
			sp.mu.Lock()
			if err != nil {
				sp.err = err
				sp.mu.Unlock()
				return
			}
			sp.legs = append(sp.legs, l)
			sp.mu.Unlock()
		}
	}()
	return sp, nil
}

// Legs returns the exchanges so far, oldest first.
func (sp *StampProbe) Legs() []StampedLegs {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return slices.Clone(sp.legs)
}

// Close stops the probe, waits for it and returns the error that stopped
// it early, if any.
func (sp *StampProbe) Close() error {
	sp.cancel()
	<-sp.done
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.err
}

func softwareStamps(c *net.UDPConn) (*hwts.Socket, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	s, err := hwts.EnableWith(rc, hwts.Options{Mode: hwts.Software})
	if err != nil {
		return nil, fmt.Errorf("impair: stamped probe: %w", err)
	}
	return s, nil
}

// readStamped reads probe seq (skipping strays and late replies to earlier
// probes) within wait and returns its kernel receive stamp.
func readStamped(c *net.UDPConn, buf, oob []byte, seq uint64, wait time.Duration) (int64, *net.UDPAddr, bool) {
	deadline := time.Now().Add(wait)
	_ = c.SetReadDeadline(deadline)
	for {
		k, oobn, _, from, err := c.ReadMsgUDP(buf, oob)
		if err != nil {
			return 0, nil, false
		}
		if k != probeBytes || binary.LittleEndian.Uint64(buf) != seq {
			continue
		}
		st, ok := hwts.ParseRx(oob[:oobn])
		if !ok || st.Source != hwts.SourceSoftware {
			return 0, nil, false
		}
		return st.NS, from, true
	}
}
