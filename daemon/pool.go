package daemon

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"time"

	"github.com/meridiantime/meridian/config"
)

// pool is one `type: pool` entry: up to MaxSources of its name's addresses
// run as NTP sources of their own ("ntp:ADDR:PORT"); a member that stops
// answering for 8 polls is dropped and replaced by an address the name
// resolves to that is not in use (chrony's pool directive).
type pool struct {
	cfg       config.Source
	host      string
	port      string
	members   map[string]netip.Addr // source name → address
	dropped   map[netip.Addr]bool   // replaced for not answering: not picked again
	resolving bool
	nextTry   time.Time // no resolution before this (backoff after a failure or a short answer)
	backoff   time.Duration
}

type poolResult struct {
	p     *pool
	addrs []netip.Addr
	err   error
}

// Pool resolution backoff.
const (
	poolRetryMin = 2 * time.Second
	poolRetryMax = 10 * time.Minute
)

func (d *Daemon) setupPools() error {
	for i, sc := range d.cfg.Sources {
		if sc.Type != "pool" {
			continue
		}
		host, port, err := net.SplitHostPort(sc.Address)
		if err != nil {
			return fmt.Errorf("sources[%d].address: %w", i, err)
		}
		d.pools = append(d.pools, &pool{cfg: sc, host: host, port: port,
			members: map[string]netip.Addr{}, dropped: map[netip.Addr]bool{}, backoff: d.poolRetryMin()})
	}
	return nil
}

func (d *Daemon) poolRetryMin() time.Duration {
	if d.opt.SourceRetryMin > 0 {
		return d.opt.SourceRetryMin
	}
	return poolRetryMin
}

// lookupHost resolves a pool's name to all its addresses.
func (d *Daemon) lookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	if d.opt.LookupHost != nil {
		return d.opt.LookupHost(ctx, host)
	}
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// tendPools runs in Run's loop at every update: members that stopped
// answering leave, and a pool short of members resolves its name again
// (in the background, answered through d.poolCh).
func (d *Daemon) tendPools() {
	for _, p := range d.pools {
		for name, a := range p.members {
			r, ok := d.running[name]
			if !ok || r.src.Stats.Reach.Load() != 0 || r.src.Stats.Sent.Load() < unreachablePolls {
				continue
			}
			d.log.Warn("pool member unreachable: replacing it", "pool", p.cfg.Address, "source", name)
			delete(p.members, name)
			p.dropped[a] = true
			d.stopSource(name)
			p.nextTry = time.Time{} // resolve at once
		}
		if len(p.members) >= p.cfg.MaxSources || p.resolving || time.Now().Before(p.nextTry) {
			continue
		}
		p.resolving = true
		d.srcWG.Add(1)
		go func() {
			defer d.srcWG.Done()
			ctx, cancel := context.WithTimeout(d.srcCtx, 30*time.Second)
			defer cancel()
			addrs, err := d.lookupHost(ctx, p.host)
			select {
			case d.poolCh <- poolResult{p: p, addrs: addrs, err: err}:
			case <-d.srcCtx.Done():
			}
		}()
	}
}

// applyPool adds members from a resolution, runs in Run's loop.
func (d *Daemon) applyPool(r poolResult) {
	p := r.p
	p.resolving = false
	if r.err != nil {
		d.log.Warn("pool name not resolved: retrying", "pool", p.cfg.Address, "err", r.err, "in", p.backoff)
		p.nextTry = time.Now().Add(p.backoff)
		p.backoff = min(2*p.backoff, poolRetryMax)
		return
	}
	inUse := map[netip.Addr]bool{}
	for _, a := range p.members {
		inUse[a] = true
	}
	addrs := append([]netip.Addr(nil), r.addrs...)
	sort.Slice(addrs, func(i, j int) bool { return addrs[i].Less(addrs[j]) })
	var fresh []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if !inUse[a] && !p.dropped[a] {
			fresh = append(fresh, a)
			inUse[a] = true
		}
	}
	if len(fresh) == 0 && len(p.dropped) > 0 && len(p.members) == 0 {
		// Every address was dropped once: give them another chance.
		p.dropped = map[netip.Addr]bool{}
	}
	for _, a := range fresh {
		if len(p.members) >= p.cfg.MaxSources {
			break
		}
		sc := p.cfg
		sc.Type, sc.MaxSources = "ntp", 0
		sc.Address = net.JoinHostPort(a.String(), p.port)
		src, err := d.newNTPSource(sc)
		if err != nil {
			d.log.Error("pool member", "pool", p.cfg.Address, "err", err)
			continue
		}
		name := src.Name
		if _, taken := d.running[name]; taken {
			continue // also configured on its own
		}
		p.members[name] = a
		delete(d.removed, name)
		d.disc.SetSourceOptions(name, sourceOptions(p.cfg))
		d.startSource(src)
		d.reportsMu.Lock()
		d.sources = append(d.sources, src)
		d.reportsMu.Unlock()
		d.log.Info("pool member added", "pool", p.cfg.Address, "source", name)
	}
	if len(p.members) < p.cfg.MaxSources {
		p.nextTry = time.Now().Add(p.backoff)
		p.backoff = min(2*p.backoff, poolRetryMax)
	} else {
		p.backoff = d.poolRetryMin()
	}
}

// poolMember reports whether a running source belongs to a pool.
func (d *Daemon) poolMember(name string) bool {
	for _, p := range d.pools {
		if _, ok := p.members[name]; ok {
			return true
		}
	}
	return false
}
