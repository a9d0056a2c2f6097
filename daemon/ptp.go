package daemon

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/facebook/time/ptp/protocol"
	"github.com/prometheus/client_golang/prometheus"

	timev1 "github.com/meridiantime/meridian/api/meridian/time/v1"
	"github.com/meridiantime/meridian/config"
	"github.com/meridiantime/meridian/hwts"
	"github.com/meridiantime/meridian/ntp"
	"github.com/meridiantime/meridian/ptp"
	"github.com/meridiantime/meridian/ptp/engine"
)

// ptpParts are the daemon's PTP client port (every `type: ptp` source,
// one engine each, so that each is a source of its own for the
// discipline's selection) and grandmaster (ptp_server).
type ptpParts struct {
	client *ptp.Client
	server []*ptp.Server
}

// ptpSupported refuses what the PTP parts cannot do yet: a client port
// and a grandmaster in one daemon would share ports 319/320 (the
// grandmaster's sockets, bound to an address, would take the client's
// Sync and Follow_Up).
func ptpSupported(cfg *config.Config) error {
	if len(cfg.PTPServer.Listen) == 0 {
		return nil
	}
	for i, s := range cfg.Sources {
		if s.Type == "ptp" {
			return fmt.Errorf("sources[%d]: type ptp together with ptp_server is not supported yet (one host's ports 319/320 serve one of them)", i)
		}
	}
	return nil
}

// logInterval is d as a PTP log2 interval, rounded up (never faster).
func logInterval(d time.Duration) protocol.LogInterval {
	if d <= 0 {
		return 0
	}
	return protocol.LogInterval(max(-7, min(6, int(math.Ceil(math.Log2(d.Seconds()))))))
}

// setupPTP builds the PTP parts and binds the grandmaster's sockets.
func (d *Daemon) setupPTP() error {
	var servers []netip.Addr
	var first *config.Source
	for i, s := range d.cfg.Sources {
		if s.Type != "ptp" {
			continue
		}
		a, err := resolveHost(s.Address)
		if err != nil {
			return fmt.Errorf("sources[%d].address: %w", i, err)
		}
		servers = append(servers, a)
		if first == nil {
			first = &d.cfg.Sources[i]
		}
	}
	if first != nil {
		mode, err := hwts.ParseMode(first.Timestamping)
		if err != nil {
			return err
		}
		log := logInterval(first.Poll.D())
		cl, err := ptp.NewClient(ptp.ClientConfig{
			Servers: servers, Independent: true, Local: d.opt.PTPClientAddr, Interface: first.Interface, Timestamping: mode,
			TimestampSys: d.opt.TimestampSys, PHC: d.phcOpener,
			LocalEventPort: uint16(first.EventPort), LocalGeneralPort: uint16(first.GeneralPort),
			ServerEventPort: uint16(first.EventPort), ServerGeneralPort: uint16(first.GeneralPort),
			Engine: engine.ClientConfig{Domain: uint8(first.Domain), LogSync: log, LogDelayReq: log},
		}, d.clk, d.loop.Gen, d.log)
		if err != nil {
			return err
		}
		d.ptp.client = cl
		d.m.registerPTPClient(cl)
	}
	p := d.cfg.PTPServer
	for i, a := range p.Listen {
		addr, err := resolveHost(a)
		if err != nil {
			return fmt.Errorf("ptp_server.listen[%d]: %w", i, err)
		}
		mode, err := hwts.ParseMode(p.Timestamping)
		if err != nil {
			return err
		}
		srv := ptp.NewServer(ptp.ServerConfig{
			Listen: addr, EventPort: uint16(p.EventPort), GeneralPort: uint16(p.GeneralPort),
			ClientEventPort: uint16(p.EventPort), ClientGeneralPort: uint16(p.GeneralPort),
			Interface: p.Interface, Timestamping: mode, Workers: p.Workers, TxTimeout: p.TxTimestampTimeout.D(),
			TimestampSys: d.opt.TimestampSys, PHC: d.phcOpener,
			Engine: engine.MasterConfig{
				Identity: clockIdentity(addr), Domain: uint8(p.Domain), MaxClients: p.MaxClients,
				MinLogInterval: protocol.LogInterval(p.MinLogInterval()), MaxDurationS: uint32(p.MaxDuration.D() / time.Second),
			},
		}, d.tt, d.log)
		if err := srv.Listen(); err != nil {
			d.closePTP()
			return fmt.Errorf("ptp_server.listen[%d]: %w", i, err)
		}
		d.ptp.server = append(d.ptp.server, srv)
		d.m.registerPTPServer(srv, addr.String())
	}
	return nil
}

func (d *Daemon) closePTP() {
	for _, s := range d.ptp.server {
		s.Close()
	}
}

// runPTP starts the PTP parts; they stop with ctx.
func (d *Daemon) runPTP(ctx context.Context, wg *sync.WaitGroup) {
	if cl := d.ptp.client; cl != nil {
		in := make(chan ptp.Sample, 64)
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := cl.Run(ctx, in); err != nil {
				d.log.Warn("ptp client ended", "servers", cl.Names(), "err", err)
			}
		}()
		go func() { // into the loop's channel, as the NTP sources' samples
			defer wg.Done()
			for {
				select {
				case s := <-in:
					select {
					case d.samples <- ntp.SourceSample{Name: s.Name, Sample: s.Sample, Gen: s.Gen}:
					case <-ctx.Done():
						return
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	for _, s := range d.ptp.server {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = s.Serve(ctx)
		}()
	}
}

// ptpSourceInfo is the Sources call's entries for the PTP servers; the
// caller holds reportsMu.
func (d *Daemon) ptpSourceInfo(nowNS int64) []*timev1.Source {
	cl := d.ptp.client
	if cl == nil {
		return nil
	}
	var out []*timev1.Source
	for i, name := range cl.Names() {
		st := &cl.Servers[i]
		x := &timev1.Source{
			Name: name, Address: strings.TrimPrefix(name, "ptp:"), Type: "ptp", State: "unused", LastSampleAgeNs: -1,
			Stratum: st.Stratum.Load(), Valid: st.Samples.Load(),
			TxTimestamping: hwts.Source(cl.Stats.LastTxSource.Load()).String(),
			RxTimestamping: hwts.Source(cl.Stats.LastRxSource.Load()).String(),
		}
		if st.Granted.Load() {
			x.Reach = 1 // granted Sync and Delay_Resp: the server answers
		}
		if r, ok := d.reports[name]; ok {
			x.State = r.State.String()
			x.OffsetNs, x.DelayNs, x.JitterNs, x.BoundNs = r.OffsetNS, r.DelayNS, r.JitterNS, r.BoundNS
			if r.LastLocalNS != 0 {
				x.LastSampleAgeNs = nowNS - r.LastLocalNS
			}
		}
		out = append(out, x)
	}
	return out
}

// resolveHost is an IP address, or the first address a name resolves to.
func resolveHost(h string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap(), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	as, err := net.DefaultResolver.LookupNetIP(ctx, "ip", h)
	if err != nil || len(as) == 0 {
		return netip.Addr{}, fmt.Errorf("resolve %q: %v", h, err)
	}
	return as[0].Unmap(), nil
}

// clockIdentity derives the grandmaster's clock identity from its address
// (EUI-64 style: stable across restarts, distinct per address).
func clockIdentity(a netip.Addr) protocol.ClockIdentity {
	b := a.As16()
	var id uint64
	for i, x := range b {
		id ^= uint64(x) << (8 * uint(7-i%8))
	}
	return protocol.ClockIdentity(id | 0x0200_0000_0000_0000) // locally administered
}

// registerPTPClient exports per-server state of the PTP client port.
func (m *metrics) registerPTPClient(cl *ptp.Client) {
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for i, name := range cl.Names() {
		st := &cl.Servers[i]
		l := prometheus.Labels{"source": name}
		g := func(n, help string, f func() float64) {
			m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: n, Help: help, ConstLabels: l}, f))
		}
		g("meridian_ptp_source_selected", "1 when the PTP client port measures this server (BMCA).", func() float64 { return b(st.Selected.Load()) })
		g("meridian_ptp_source_granted", "1 while the server grants Sync and Delay_Resp.", func() float64 { return b(st.Granted.Load()) })
		g("meridian_ptp_source_path_delay_seconds", "Mean path delay of the last PTP sample.", func() float64 { return float64(st.LastDelayNS.Load()) / 1e9 })
		g("meridian_ptp_source_offset_seconds", "Server minus local clock in the last PTP sample.", func() float64 { return float64(st.LastOffsetNS.Load()) / 1e9 })
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "meridian_ptp_source_samples_total",
			Help: "PTP samples given to the discipline.", ConstLabels: l}, func() float64 { return float64(st.Samples.Load()) }))
	}
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "meridian_ptp_client_tx_stamps_missing_total",
		Help: "Delay_Reqs whose transmit stamp did not come in time (the pre-send reading was used)."},
		func() float64 { return float64(cl.Stats.TxStampsMissing.Load()) }))
}

// registerPTPServer exports a grandmaster's counters.
func (m *metrics) registerPTPServer(s *ptp.Server, listen string) {
	l := prometheus.Labels{"listen": listen}
	c := func(n, help string, f func(engine.MasterCounters) uint64) {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: n, Help: help, ConstLabels: l},
			func() float64 { return float64(f(s.Counters())) }))
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "meridian_ptp_server_clients",
		Help: "Unicast clients holding a grant.", ConstLabels: l}, func() float64 { return float64(s.Counters().Clients) }))
	c("meridian_ptp_server_grants_total", "Unicast grants given (renewals excluded).", func(x engine.MasterCounters) uint64 { return x.Grants })
	c("meridian_ptp_server_renewals_total", "Unicast grants renewed.", func(x engine.MasterCounters) uint64 { return x.Renewals })
	c("meridian_ptp_server_denied_total", "Unicast requests refused (rate, duration, max_clients or message type).", func(x engine.MasterCounters) uint64 {
		return x.DeniedRate + x.DeniedDuration + x.DeniedClients + x.DeniedType
	})
	c("meridian_ptp_server_syncs_total", "Sync messages sent.", func(x engine.MasterCounters) uint64 { return x.Syncs })
	c("meridian_ptp_server_delay_resps_total", "Delay_Resp messages sent.", func(x engine.MasterCounters) uint64 { return x.DelayResps })
	c("meridian_ptp_server_tx_timestamp_timeouts_total", "Syncs whose transmit stamp did not come in time (no Follow_Up).", func(x engine.MasterCounters) uint64 { return x.TxTimeouts })
	c("meridian_ptp_server_dropped_total", "Messages dropped: malformed, wrong version, domain or type, bad TLVs.", func(x engine.MasterCounters) uint64 {
		return x.DroppedShort + x.DroppedVersion + x.DroppedDomain + x.DroppedType + x.DroppedTLV
	})
	c("meridian_ptp_server_syncs_shed_total", "Scheduled Syncs skipped because the grandmaster fell a whole period or more behind (load shed).", func(x engine.MasterCounters) uint64 { return x.ShedSyncs })
	c("meridian_ptp_server_announces_shed_total", "Scheduled Announces skipped because the grandmaster fell a whole period or more behind (load shed).", func(x engine.MasterCounters) uint64 { return x.ShedAnnounces })
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "meridian_ptp_server_rx_dropped_total",
		Help: "Datagrams the kernel dropped on the grandmaster's sockets, their receive buffers full (a worker behind sheds Delay_Reqs and requests).", ConstLabels: l},
		func() float64 { return float64(s.ShellCounters().RxDropped) }))
}
