package daemon

import (
	"github.com/prometheus/client_golang/prometheus"

	timev1 "github.com/meridiantime/meridian/api/meridian/time/v1"
	"github.com/meridiantime/meridian/discipline"
	"github.com/meridiantime/meridian/hlc"
	"github.com/meridiantime/meridian/hlc/hlcfile"
	"github.com/meridiantime/meridian/hwts"
	"github.com/meridiantime/meridian/timeservice"
	"github.com/meridiantime/meridian/truetime"
)

// startGRPC creates the HLC and opens the TimeService listeners. With
// hlc.persist the HLC loads the bound that the previous run persisted in
// state_dir/hlc.upper (converting the old microsecond form, see
// hlc/hlcfile): it issues nothing until TrueTime's latest has passed that
// bound, and the TimeService waits that out (or answers UNAVAILABLE with a
// retry hint) instead of handing out timestamps ahead of physical time.
func (d *Daemon) startGRPC() error {
	ho := hlc.Options{MaxOffsetFloor: d.cfg.HLC.MaxOffsetFloor.D(), EpsFactor: d.cfg.HLC.EpsFactor}
	if d.cfg.HLC.Persist {
		ho.Persist = hlcfile.Persister{Dir: d.StateDir}
	}
	var err error
	if d.hlc, err = hlc.New(d.tt, ho); err != nil {
		return err
	}
	d.m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "meridian_hlc_rejected_total",
		Help: "HLCUpdate calls refused because the remote timestamp was further ahead than the max offset.",
	}, func() float64 { return float64(d.hlc.Rejected()) }))
	svc, err := timeservice.NewService(timeservice.Options{
		TT: d.tt, HLC: d.hlc, Sources: d.sourceInfo, ClockName: d.cfg.Clock, Reason: d.statusReason, ServerStats: d.serverStats, Clients: d.clients, MaxWatchers: d.cfg.GRPC.MaxWatchers,
		MaxWaiters: d.cfg.GRPC.MaxWaiters, MaxWaitersPerConn: d.cfg.GRPC.MaxWaitersPerConn,
	})
	if err != nil {
		return err
	}
	d.svc = svc
	tlsf := d.cfg.GRPC.TLS
	d.grpc, err = timeservice.NewServer(svc, timeservice.ServerConfig{
		Listen: d.grpcListen, TLS: timeservice.TLSFiles{Cert: tlsf.Cert, Key: tlsf.Key, CA: tlsf.CA},
		Registerer: d.m.reg, Log: d.log,
	})
	return err
}

// sourceInfo is the Sources call: configuration, protocol counters and the
// discipline's newest report for each source.
func (d *Daemon) sourceInfo() []*timev1.Source {
	now := d.clk.NowNS()
	d.reportsMu.Lock()
	defer d.reportsMu.Unlock()
	out := make([]*timev1.Source, 0, len(d.sources))
	for _, s := range d.sources {
		x := &timev1.Source{
			Name: s.Name, Address: s.Addr, Type: "ntp", State: "unused", LastSampleAgeNs: -1,
			Stratum: s.Stats.Stratum.Load(), Reach: s.Stats.Reach.Load(),
			Sent: s.Stats.Sent.Load(), Valid: s.Stats.Valid.Load(), Rejected: s.Stats.Rejected.Load(), Timeouts: s.Stats.Timeouts.Load(),
			TxTimestamping: hwts.Source(s.Stats.LastTxSource.Load()).String(),
			RxTimestamping: hwts.Source(s.Stats.LastRxSource.Load()).String(),
			PollNs:         s.Stats.PollNS.Load(), Interleaved: s.Stats.Interleaved.Load(),
			RootDelayNs: s.Stats.LastRootDelayNS.Load(), RootDispersionNs: s.Stats.LastRootDispersionNS.Load(),
			Leap:         leapName(truetime.Leap(s.Stats.LastLeap.Load())),
			LastOffsetNs: s.Stats.LastOffsetNS.Load(), LastDelayNs: s.Stats.LastDelayNS.Load(),
			StateReason: sourceStateWhy(discipline.SourceUnused),
		}
		if r, ok := d.reports[s.Name]; ok {
			x.State = r.State.String()
			x.StateReason = sourceStateWhy(r.State)
			x.Samples = uint32(r.Samples)
			x.OffsetNs, x.DelayNs, x.JitterNs, x.BoundNs = r.OffsetNS, r.DelayNS, r.JitterNS, r.BoundNS
			if r.LastLocalNS != 0 {
				x.LastSampleAgeNs = now - r.LastLocalNS
			}
		}
		out = append(out, x)
	}
	return append(out, d.ptpSourceInfo(now)...)
}

// serverStats is the ServerStats call: the NTP server's and the PTP
// grandmasters' counters since start.
func (d *Daemon) serverStats() *timev1.ServerStatsResponse {
	r := &timev1.ServerStatsResponse{}
	if d.ntpServer != nil {
		x := d.ntpServer.Stats()
		r.NtpEnabled = true
		r.NtpRequests, r.NtpReplies, r.NtpKodRate = x.Requests, x.Replies, x.KoDRate
		r.NtpInterleavedReplies, r.NtpUnsynchronizedReplies = x.InterleavedReplies, x.RepliesUnsynchronized
		r.NtpDropped = map[string]uint64{"short": x.DropShort, "mode": x.DropMode, "version": x.DropVersion,
			"source_port": x.DropSourcePort, "denied": x.DropDenied, "rate": x.RateDropped}
	}
	for _, s := range d.ptp.server {
		c := s.Counters()
		r.PtpEnabled = true
		r.PtpClients += uint64(c.Clients)
		r.PtpGrants += uint64(c.Grants)
		r.PtpDenied += uint64(c.DeniedRate + c.DeniedDuration + c.DeniedClients + c.DeniedType)
		r.PtpSyncs += uint64(c.Syncs)
		r.PtpFollowUps += uint64(c.FollowUps)
		r.PtpDelayResps += uint64(c.DelayResps)
		r.PtpTxTimeouts += uint64(c.TxTimeouts)
		r.PtpDropped += uint64(c.DroppedShort + c.DroppedVersion + c.DroppedDomain + c.DroppedType)
	}
	return r
}

func leapName(l truetime.Leap) string {
	switch l {
	case truetime.LeapInsert:
		return "insert"
	case truetime.LeapDelete:
		return "delete"
	}
	return "none"
}

// clients is the Clients call: the NTP server's client log.
func (d *Daemon) clients(limit int) []*timev1.Client {
	if d.ntpServer == nil {
		return nil
	}
	var out []*timev1.Client
	for _, c := range d.ntpServer.Clients(limit) {
		out = append(out, &timev1.Client{Address: c.Addr.String(), Replies: c.Replies, Dropped: c.Dropped, Kod: c.KoD,
			LastAgoNs: int64(c.LastAgo), FirstSeenAgoNs: int64(c.FirstSeenAgo)})
	}
	return out
}
