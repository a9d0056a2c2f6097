package daemon

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/meridiantime/meridian/clock/hostclock"
	"github.com/meridiantime/meridian/clock/phc"
	"github.com/meridiantime/meridian/hwts"
)

// phcState is `clock: phc:/dev/ptpN` and the PHCs of NICs that stamp in
// hardware. meridiand's clock stays the one it publishes (over
// CLOCK_MONOTONIC_RAW); a configured PHC follows it (phc2sys's job), so
// the NIC carries the disciplined time, and every PHC a NIC stamps in is
// measured against the host to convert its stamps (phc.Map).
type phcState struct {
	mu       sync.Mutex
	index    int // the configured PHC's index, -1 none
	clock    *phc.Clock
	follower *phc.Follower
	maps     map[int]*phc.Map // by /dev/ptp index; the configured one shares its fd
	lastErr  string
}

// atRaw is meridiand's clock reading at a CLOCK_MONOTONIC_RAW instant.
func (d *Daemon) atRaw(raw int64) int64 { return d.clk.Model().At(raw) }

func (d *Daemon) mapOptions() phc.MapOptions {
	return phc.MapOptions{Dev: d.opt.PHCDevice, Adj: d.opt.PHCAdj, Raw: d.opt.PHCRaw, AtRaw: d.atRaw}
}

// openPHC opens the configured PHC, if any, and its follower.
func (d *Daemon) openPHC() error {
	d.phc.index = -1
	d.phc.maps = map[int]*phc.Map{}
	if !strings.HasPrefix(d.cfg.Clock, "phc:") {
		return nil
	}
	path := strings.TrimPrefix(d.cfg.Clock, "phc:")
	n, err := strconv.Atoi(strings.TrimPrefix(path, "/dev/ptp"))
	if err != nil {
		return fmt.Errorf("clock: bad PHC device %q", path)
	}
	c, err := phc.Open(path, d.opt.PHCDevice, d.opt.PHCAdj)
	if err != nil {
		return fmt.Errorf("clock: %w", err)
	}
	m, err := phc.NewMap(c.FD(), c.Caps(), d.mapOptions())
	if err != nil {
		c.Close()
		return fmt.Errorf("clock: %s: %w", path, err)
	}
	raw := d.opt.PHCRaw
	if raw == nil {
		raw = hostclock.MonoRawNS
	}
	d.phc.index, d.phc.clock, d.phc.maps[n] = n, c, m
	d.phc.follower = &phc.Follower{Map: m, PHC: c, Raw: raw, AtRaw: d.atRaw}
	d.log.Info("PHC follows the clock", "device", path, "measured_by", m.Method().String())
	return nil
}

// phcOpener is hwts.Options.PHC for every source and server: the
// configured PHC's map, or a map of its own for another NIC's PHC.
func (d *Daemon) phcOpener(index int) (hwts.HardwareClock, error) {
	d.phc.mu.Lock()
	defer d.phc.mu.Unlock()
	if m, ok := d.phc.maps[index]; ok {
		return m, nil
	}
	m, err := phc.OpenMap(fmt.Sprintf("/dev/ptp%d", index), d.mapOptions())
	if err != nil {
		return nil, err
	}
	d.phc.maps[index] = m
	d.log.Info("hardware timestamps", "device", fmt.Sprintf("/dev/ptp%d", index), "measured_by", m.Method().String())
	return m, nil
}

// runPHC steers the configured PHC once per PHCEvery until ctx ends.
func (d *Daemon) runPHC(ctx context.Context, wg *sync.WaitGroup) {
	if d.phc.follower == nil {
		return
	}
	every := d.opt.PHCEvery
	if every == 0 {
		every = time.Second
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			d.phc.mu.Lock()
			err := d.phc.follower.Update()
			off, unc := d.phc.follower.Offset()
			msg := ""
			if err != nil {
				msg = err.Error()
			}
			changed := msg != d.phc.lastErr
			d.phc.lastErr = msg
			d.phc.mu.Unlock()
			if changed && err != nil {
				d.log.Warn("PHC not steered", "device", d.cfg.Clock, "err", err)
			} else if changed {
				d.log.Info("PHC steered again", "device", d.cfg.Clock)
			}
			if err == nil {
				d.m.phcOffset.Set(float64(off) / 1e9)
				d.m.phcUncertainty.Set(float64(unc) / 1e9)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// PHCOffset is the last measured PHC − clock and its uncertainty (ns);
// ok false without a configured PHC.
func (d *Daemon) PHCOffset() (offNS, uncNS int64, ok bool) {
	d.phc.mu.Lock()
	defer d.phc.mu.Unlock()
	if d.phc.follower == nil {
		return 0, 0, false
	}
	off, unc := d.phc.follower.Offset()
	return off, unc, true
}

func (d *Daemon) closePHC() {
	d.phc.mu.Lock()
	defer d.phc.mu.Unlock()
	for _, m := range d.phc.maps {
		m.Close()
	}
	d.phc.maps = nil
	if d.phc.clock != nil {
		d.phc.clock.Close()
		d.phc.clock, d.phc.follower = nil, nil
	}
}
