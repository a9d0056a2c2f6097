package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/meridiantime/meridian/config"
	"github.com/meridiantime/meridian/discipline"
	"github.com/meridiantime/meridian/hwts"
	"github.com/meridiantime/meridian/ntp"
	"github.com/meridiantime/meridian/ntp/engine"
)

type reloadReq struct {
	cfg  *config.Config
	done chan error
}

type runningSource struct {
	src    *ntp.Source
	cfg    config.Source
	cancel context.CancelFunc
	done   chan struct{}
}

// ErrNotRunning: Reload was called on a daemon that is not running.
var ErrNotRunning = errors.New("daemon: not running")

// newNTPSource builds (does not start) the source sc configures.
func (d *Daemon) newNTPSource(sc config.Source) (*ntp.Source, error) {
	cc := engine.ClientConfig{Poll: sc.Poll.D(), MinPoll: sc.MinPoll.D(), MaxPoll: sc.MaxPoll.D(), IBurst: sc.IBurst, Interleaved: sc.XLeave}
	src := ntp.NewSource("ntp:"+sc.Address, sc.Address, cc, d.clk, d.loop.Gen, d.log)
	src.Interface, src.TimestampSys, src.PHC = sc.Interface, d.opt.TimestampSys, d.phcOpener
	src.Resolve = d.opt.Resolve
	var err error
	if src.Timestamping, err = hwts.ParseMode(sc.Timestamping); err != nil {
		return nil, err
	}
	return src, nil
}

// startSource runs src until Run ends or a reload removes it.
func (d *Daemon) startSource(src *ntp.Source) {
	ctx, cancel := context.WithCancel(d.srcCtx)
	r := &runningSource{src: src, cancel: cancel, done: make(chan struct{})}
	for _, sc := range d.cfg.Sources {
		if sc.Type == "ntp" && "ntp:"+sc.Address == src.Name {
			r.cfg = sc
		}
	}
	d.running[src.Name] = r
	d.srcWG.Add(1)
	go func() {
		defer d.srcWG.Done()
		defer close(r.done)
		d.runSource(ctx, src)
	}()
}

// stopSource stops a running source and forgets it everywhere (the
// discipline, the metrics, the Sources call), as a reload's removal does.
func (d *Daemon) stopSource(name string) {
	if r, ok := d.running[name]; ok {
		r.cancel()
		<-r.done
		delete(d.running, name)
	}
	d.disc.RemoveSource(name)
	d.m.forgetSource(name)
	d.removed[name] = true
	d.reportsMu.Lock()
	delete(d.reports, name)
	kept := d.sources[:0:0]
	for _, s := range d.sources {
		if s.Name != name {
			kept = append(kept, s)
		}
	}
	d.sources = kept
	d.reportsMu.Unlock()
	delete(d.srcStates, name)
}

// Reload applies a new configuration to the running daemon (SIGHUP): NTP
// sources are added, removed or restarted with their new settings at once,
// every source's selection options and the NTP server's allow/deny lists
// take effect;
// any other change (PTP sources included) needs a restart, and Reload
// then returns an error naming the keys, after applying the sources. A
// configuration that does not validate changes nothing.
func (d *Daemon) Reload(ctx context.Context, cfg *config.Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	req := reloadReq{cfg: cfg, done: make(chan error, 1)}
	select {
	case d.reloadCh <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// applyReload runs in Run's loop.
func (d *Daemon) applyReload(cfg *config.Config) error {
	want := map[string]config.Source{}
	var order []string
	for _, sc := range cfg.Sources {
		if sc.Type == "ntp" {
			n := "ntp:" + sc.Address
			want[n] = sc
			order = append(order, n)
		}
	}
	var added, removed, restarted []string
	for name, r := range d.running {
		if d.poolMember(name) {
			continue // a pool's own (pool entries need a restart to change)
		}
		sc, keep := want[name]
		if keep && reflect.DeepEqual(sc, r.cfg) {
			continue
		}
		if keep {
			r.cancel()
			<-r.done
			delete(d.running, name)
			restarted = append(restarted, name)
			continue
		}
		removed = append(removed, name)
		d.stopSource(name)
	}
	// The new configuration's sources, PTP ones as they were (a restart
	// applies those).
	var ptpOld []config.Source // and pool entries
	for _, sc := range d.cfg.Sources {
		if sc.Type != "ntp" {
			ptpOld = append(ptpOld, sc)
		}
	}
	newSources := append([]config.Source(nil), ptpOld...)
	for _, n := range order {
		newSources = append(newSources, want[n])
	}
	d.cfg.Sources = newSources
	d.applySourceOptions()
	d.cfg.NTPServer.Allow, d.cfg.NTPServer.Deny = cfg.NTPServer.Allow, cfg.NTPServer.Deny
	if d.ntpServer != nil {
		d.ntpServer.SetAccess(ntpAccess(d.cfg))
	}
	var sources []*ntp.Source
	var errs []error
	for _, n := range order {
		if r, ok := d.running[n]; ok {
			sources = append(sources, r.src)
			continue
		}
		src, err := d.newNTPSource(want[n])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		delete(d.removed, n)
		d.startSource(src)
		sources = append(sources, src)
		if !contains(restarted, n) {
			added = append(added, n)
		}
	}
	d.reportsMu.Lock()
	for _, s := range d.sources {
		if d.poolMember(s.Name) {
			sources = append(sources, s)
		}
	}
	d.sources = sources
	d.reportsMu.Unlock()
	sort.Strings(added)
	sort.Strings(removed)
	sort.Strings(restarted)
	d.log.Info("configuration reloaded", "sources_added", strings.Join(added, ","),
		"sources_removed", strings.Join(removed, ","), "sources_restarted", strings.Join(restarted, ","))
	if keys := restartKeys(d.cfg, cfg); len(keys) > 0 {
		errs = append(errs, fmt.Errorf("reload: %s changed: restart meridiand to apply", strings.Join(keys, ", ")))
	}
	return errors.Join(errs...)
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// restartKeys lists the top-level keys (and "sources (ptp)") whose change
// a reload does not apply.
func restartKeys(old, nu *config.Config) []string {
	ptp := func(c *config.Config) []config.Source {
		var out []config.Source
		for _, s := range c.Sources {
			if s.Type != "ntp" {
				out = append(out, s)
			}
		}
		return out
	}
	var keys []string
	if !reflect.DeepEqual(ptp(old), ptp(nu)) {
		keys = append(keys, "sources (ptp, pool)")
	}
	asMap := func(c *config.Config) map[string]any {
		x := *c
		x.Sources = nil
		x.NTPServer.Allow, x.NTPServer.Deny = nil, nil // applied by the reload
		b, _ := yaml.Marshal(&x)
		m := map[string]any{}
		_ = yaml.Unmarshal(b, &m)
		return m
	}
	a, b := asMap(old), asMap(nu)
	for k := range a {
		if !reflect.DeepEqual(a[k], b[k]) {
			keys = append(keys, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// applySourceOptions hands every configured source's selection options
// (noselect, prefer, max_distance) to the discipline.
func (d *Daemon) applySourceOptions() {
	for _, sc := range d.cfg.Sources {
		if sc.Type != "pool" {
			d.disc.SetSourceOptions(sc.Type+":"+sc.Address, sourceOptions(sc))
		}
	}
}

func sourceOptions(sc config.Source) discipline.SourceOptions {
	return discipline.SourceOptions{NoSelect: sc.NoSelect, Prefer: sc.Prefer, MaxDistanceNS: int64(sc.MaxDistance)}
}

// ntpAccess is the NTP server's allow/deny list (nil when both are empty).
func ntpAccess(c *config.Config) *ntp.Access {
	if len(c.NTPServer.Allow) == 0 && len(c.NTPServer.Deny) == 0 {
		return nil
	}
	conv := func(ss []string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			if p, err := config.ParsePrefix(s); err == nil { // validated already
				out = append(out, p)
			}
		}
		return out
	}
	return ntp.NewAccess(conv(c.NTPServer.Allow), conv(c.NTPServer.Deny))
}

// Backoff between attempts of a source whose address cannot be resolved
// (or whose socket cannot be opened): doubling, up to the maximum.
const (
	sourceRetryMin = 2 * time.Second
	sourceRetryMax = 10 * time.Minute
)

// runSource runs src until ctx ends: a named server that stopped answering
// is resolved again at once, an address that cannot be resolved (or any
// other failure to start) is retried with backoff; only a server's DENY or
// RSTR stops the source for good.
func (d *Daemon) runSource(ctx context.Context, src *ntp.Source) {
	first := sourceRetryMin
	if d.opt.SourceRetryMin > 0 {
		first = d.opt.SourceRetryMin
	}
	backoff := first
	for {
		err := src.Run(ctx, d.samples)
		switch {
		case ctx.Err() != nil || err == nil:
			return
		case errors.Is(err, engine.ErrKissStop):
			d.log.Warn("ntp source stopped by its server", "source", src.Name, "err", err)
			return
		case errors.Is(err, ntp.ErrUnreachable):
			d.log.Info("ntp source unreachable: resolving its name again", "source", src.Name)
			backoff = first
			continue
		}
		d.log.Warn("ntp source failed: retrying", "source", src.Name, "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, sourceRetryMax)
	}
}
