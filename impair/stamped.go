package impair

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
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
	srv, err := p.ListenUDP(B, 0)
	if err != nil {
		return Floors{}, err
	}
	defer srv.Close()
	cli, err := p.ListenUDP(A, 0)
	if err != nil {
		return Floors{}, err
	}
	defer cli.Close()
	ss, err := softwareStamps(srv)
	if err != nil {
		return Floors{}, err
	}
	cs, err := softwareStamps(cli)
	if err != nil {
		return Floors{}, err
	}
	var ab, ba []time.Duration
	buf := make([]byte, 64)
	oob := make([]byte, 512)
	msg := make([]byte, probeBytes)
	dst := srv.LocalAddr().(*net.UDPAddr)
	sent := 0
	for i := 0; i < n; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return Floors{}, ctx.Err()
			case <-time.After(interval):
			}
		}
		binary.LittleEndian.PutUint64(msg, uint64(i))
		idc := cs.NextTxID()
		if _, err := cli.WriteToUDP(msg, dst); err != nil {
			return Floors{}, fmt.Errorf("impair: stamped probe send: %w", err)
		}
		sent++
		t2, from, ok := readStamped(srv, buf, oob, i)
		if !ok {
			continue
		}
		ids := ss.NextTxID()
		if _, err := srv.WriteToUDP(buf[:probeBytes], from); err != nil {
			return Floors{}, fmt.Errorf("impair: stamped probe reply: %w", err)
		}
		t4, _, ok := readStamped(cli, buf, oob, i)
		if !ok {
			continue
		}
		t1, ok1 := cs.TxStamp(idc, 20*time.Millisecond)
		t3, ok3 := ss.TxStamp(ids, 20*time.Millisecond)
		if !ok1 || !ok3 || t1.Source != hwts.SourceSoftware || t3.Source != hwts.SourceSoftware {
			continue
		}
		ab = append(ab, time.Duration(t2-t1.NS))
		ba = append(ba, time.Duration(t4-t3.NS))
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
// probes) within a second and returns its kernel receive stamp.
func readStamped(c *net.UDPConn, buf, oob []byte, seq int) (int64, *net.UDPAddr, bool) {
	deadline := time.Now().Add(time.Second)
	_ = c.SetReadDeadline(deadline)
	for {
		k, oobn, _, from, err := c.ReadMsgUDP(buf, oob)
		if err != nil {
			return 0, nil, false
		}
		if k != probeBytes || binary.LittleEndian.Uint64(buf) != uint64(seq) {
			continue
		}
		st, ok := hwts.ParseRx(oob[:oobn])
		if !ok || st.Source != hwts.SourceSoftware {
			return 0, nil, false
		}
		return st.NS, from, true
	}
}
