package daemon

import (
	"math"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/meridiantime/meridian/clock/hostclock"
	"github.com/meridiantime/meridian/discipline"
	"github.com/meridiantime/meridian/internal/version"
	"github.com/meridiantime/meridian/ntp"
	"github.com/meridiantime/meridian/truetime"
)

// metrics is the daemon's own registry (no global state).
type metrics struct {
	stateSet, reference       *prometheus.GaugeVec
	stratum, rootDelay        prometheus.Gauge
	rootDisp, leap            prometheus.Gauge
	lastRef                   string
	srcSent, srcValid         *prometheus.GaugeVec
	srcTimeouts, srcLastAge   *prometheus.GaugeVec
	phcOffset, phcUncertainty prometheus.Gauge       // nil without clock: phc
	perSource                 []*prometheus.GaugeVec // every vector labelled by source
	reg                       *prometheus.Registry
	offset                    prometheus.Gauge
	freq                      prometheus.Gauge
	errorBound                prometheus.Gauge
	status                    prometheus.Gauge
	synced                    prometheus.Gauge
	updates                   prometheus.Counter
	steps                     prometheus.Counter
	faults                    prometheus.Counter
	floorRaises               prometheus.Counter
	disruptions               prometheus.Counter
	srcOffset                 *prometheus.GaugeVec
	srcDelay                  *prometheus.GaugeVec
	srcJitter                 *prometheus.GaugeVec
	srcSelected               *prometheus.GaugeVec
	srcFalsetick              *prometheus.GaugeVec
	srcReach                  *prometheus.GaugeVec
	srcStratum                *prometheus.GaugeVec
	srcInterleaved            *prometheus.GaugeVec
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	g := func(name, help string) prometheus.Gauge {
		x := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		m.reg.MustRegister(x)
		return x
	}
	gv := func(name, help string) *prometheus.GaugeVec {
		x := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"source"})
		m.reg.MustRegister(x)
		m.perSource = append(m.perSource, x)
		return x
	}
	bi := version.Get()
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meridian_build_info",
		Help: "Always 1: the running build's version, VCS revision and Go version as labels."}, []string{"version", "revision", "goversion"})
	build.WithLabelValues(bi.Version, bi.Revision, bi.GoVersion).Set(1)
	m.reg.MustRegister(build)
	rp := hostclock.ReadPath()
	readPath := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meridian_clock_read_path",
		Help: "Always 1: how this process reads the host's clocks (method vdso or syscall; frame_bytes the stack reserved for each vDSO call)."}, []string{"method", "frame_bytes"})
	readPath.WithLabelValues(rp.Method, strconv.Itoa(rp.FrameBytes)).Set(1)
	m.reg.MustRegister(readPath)
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.stateSet = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meridian_status_state",
		Help: "1 for the current status (a state set: synchronized, holdover, unsynchronized, disrupted), 0 for the others."}, []string{"state"})
	m.reg.MustRegister(m.stateSet)
	m.stratum = g("meridian_stratum", "Stratum served (0 while unsynchronized).")
	m.rootDelay = g("meridian_root_delay_seconds", "Root delay to the primary reference (NaN while unsynchronized).")
	m.rootDisp = g("meridian_root_dispersion_seconds", "Root dispersion to the primary reference (NaN while unsynchronized).")
	m.leap = g("meridian_leap", "Pending leap second: 0 none, 1 insert, 2 delete.")
	m.reference = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meridian_reference_info",
		Help: "1 with the reference (upstream address, LOCL or a reference ID) as a label; no series while unsynchronized."}, []string{"reference"})
	m.reg.MustRegister(m.reference)
	m.offset = g("meridian_offset_seconds", "Estimated local clock minus true time at the last update.")
	m.freq = g("meridian_frequency_ppb", "Frequency correction applied to the clock, ppb.")
	m.errorBound = g("meridian_error_bound_seconds", "Half-width ε of the TrueTime interval at the last update.")
	m.status = g("meridian_status", "0 unsynchronized, 1 synchronized, 2 holdover, 3 disrupted.")
	m.synced = g("meridian_synchronized", "1 when synchronized.")
	m.updates = prometheus.NewCounter(prometheus.CounterOpts{Name: "meridian_updates_total", Help: "Discipline updates."})
	m.steps = prometheus.NewCounter(prometheus.CounterOpts{Name: "meridian_clock_steps_total", Help: "Clock steps."})
	m.faults = prometheus.NewCounter(prometheus.CounterOpts{Name: "meridian_selection_faults_total",
		Help: "Selections that missed the previous estimate carried forward (a reference stepped, or an assumption broke): the interval covered both."})
	m.floorRaises = prometheus.NewCounter(prometheus.CounterOpts{Name: "meridian_floor_raises_total",
		Help: "Estimates widened so that TrueTime does not go backwards (a reference stepped back)."})
	m.disruptions = prometheus.NewCounter(prometheus.CounterOpts{Name: "meridian_disruptions_total",
		Help: "Suspends, VM pauses or VMClock disruptions noticed at a publish; samples taken before were dropped."})
	m.reg.MustRegister(m.updates, m.steps, m.faults, m.floorRaises, m.disruptions)
	m.srcOffset = gv("meridian_source_offset_seconds", "Filtered local minus source offset.")
	m.srcDelay = gv("meridian_source_delay_seconds", "Round-trip delay of the filtered sample.")
	m.srcJitter = gv("meridian_source_jitter_seconds", "RMS offset jitter in the clock filter.")
	m.srcSelected = gv("meridian_source_selected", "1 when the source was combined at the last update.")
	m.srcFalsetick = gv("meridian_source_falseticker", "1 when the source was rejected as a falseticker.")
	m.srcReach = gv("meridian_source_reach", "Reachability register of the source (8 bits, newest poll in bit 0).")
	m.srcStratum = gv("meridian_source_stratum", "Stratum the source advertised in its last valid reply.")
	m.srcSent = gv("meridian_source_sent", "Requests sent to the source since start.")
	m.srcValid = gv("meridian_source_valid", "Valid replies (samples) from the source since start.")
	m.srcTimeouts = gv("meridian_source_timeouts", "Polls the source did not answer since start.")
	m.srcLastAge = gv("meridian_source_last_sample_age_seconds", "Age of the source's newest sample at the last update (NaN: none).")
	m.srcInterleaved = gv("meridian_source_interleaved_samples", "Samples taken from interleaved replies (xleave: the server's real transmit stamp), since start.")
	return m
}

func (m *metrics) observe(e truetime.Estimate, srcs []discipline.SourceReport, nowNS int64) {
	m.updates.Inc()
	m.status.Set(float64(e.Status))
	for _, st := range []truetime.Status{truetime.Synchronized, truetime.Holdover, truetime.Unsynchronized, truetime.Disrupted} {
		v := 0.0
		if st == e.Status {
			v = 1
		}
		m.stateSet.WithLabelValues(st.String()).Set(v)
	}
	if e.Status == truetime.Synchronized {
		m.synced.Set(1)
	} else {
		m.synced.Set(0)
	}
	m.freq.Set(e.FreqPPB)
	m.leap.Set(float64(e.Leap))
	if e.Status == truetime.Synchronized || e.Status == truetime.Holdover {
		iv := truetime.Bound(nowNS, e)
		m.errorBound.Set(float64(iv.LatestNS-iv.EarliestNS) / 2e9)
		m.offset.Set(e.OffsetNS / 1e9)
		m.stratum.Set(float64(e.Stratum))
		m.rootDelay.Set(float64(e.RootDelayNS) / 1e9)
		m.rootDisp.Set(float64(e.RootDispersionNS) / 1e9)
		if ref := e.Reference(); ref != m.lastRef {
			m.reference.Reset()
			m.reference.WithLabelValues(ref).Set(1)
			m.lastRef = ref
		}
	} else {
		// Nothing to show: stale values would look current.
		nan := math.NaN()
		m.errorBound.Set(nan)
		m.offset.Set(nan)
		m.stratum.Set(0)
		m.rootDelay.Set(nan)
		m.rootDisp.Set(nan)
		m.reference.Reset()
		m.lastRef = ""
	}
	for _, s := range srcs {
		age := math.NaN()
		if s.LastLocalNS != 0 {
			age = float64(nowNS-s.LastLocalNS) / 1e9
		}
		m.srcLastAge.WithLabelValues(s.Name).Set(age)
		m.srcOffset.WithLabelValues(s.Name).Set(s.OffsetNS / 1e9)
		m.srcDelay.WithLabelValues(s.Name).Set(float64(s.DelayNS) / 1e9)
		m.srcJitter.WithLabelValues(s.Name).Set(s.JitterNS / 1e9)
		sel, ft := 0.0, 0.0
		if s.State == discipline.SourceSelected {
			sel = 1
		}
		if s.State == discipline.SourceFalseticker {
			ft = 1
		}
		m.srcSelected.WithLabelValues(s.Name).Set(sel)
		m.srcFalsetick.WithLabelValues(s.Name).Set(ft)
	}
}

// observeSources publishes per-source protocol state.
func (m *metrics) observeSources(srcs []*ntp.Source) {
	for _, s := range srcs {
		m.srcReach.WithLabelValues(s.Name).Set(float64(s.Stats.Reach.Load()))
		m.srcStratum.WithLabelValues(s.Name).Set(float64(s.Stats.Stratum.Load()))
		m.srcInterleaved.WithLabelValues(s.Name).Set(float64(s.Stats.Interleaved.Load()))
		m.srcSent.WithLabelValues(s.Name).Set(float64(s.Stats.Sent.Load()))
		m.srcValid.WithLabelValues(s.Name).Set(float64(s.Stats.Valid.Load()))
		m.srcTimeouts.WithLabelValues(s.Name).Set(float64(s.Stats.Timeouts.Load()))
	}
}

// forgetSource drops a removed source's series.
func (m *metrics) forgetSource(name string) {
	for _, v := range m.perSource {
		v.DeleteLabelValues(name)
	}
}

// registerPHC adds the configured PHC's gauges (clock: phc:/dev/ptpN).
func (m *metrics) registerPHC() {
	m.phcOffset = prometheus.NewGauge(prometheus.GaugeOpts{Name: "meridian_phc_offset_seconds",
		Help: "The configured PHC minus meridiand's clock at the last measurement (PTP_SYS_OFFSET_*)."})
	m.phcUncertainty = prometheus.NewGauge(prometheus.GaugeOpts{Name: "meridian_phc_offset_uncertainty_seconds",
		Help: "Half-width of that measurement's bracket."})
	m.reg.MustRegister(m.phcOffset, m.phcUncertainty)
}

func (m *metrics) registerServer(s *ntp.Server) {
	c := func(name, help string, f func(ntp.ServerStats) uint64) {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(f(s.Stats())) }))
	}
	c("meridian_ntp_server_requests_total", "NTP requests received.", func(x ntp.ServerStats) uint64 { return x.Requests })
	c("meridian_ntp_server_replies_total", "NTP replies sent (KoD excluded).", func(x ntp.ServerStats) uint64 { return x.Replies })
	c("meridian_ntp_server_kod_rate_total", "Kiss-o'-death RATE replies (rate limit).", func(x ntp.ServerStats) uint64 { return x.KoDRate })
	c("meridian_ntp_server_dropped_short_total", "Requests dropped: shorter than 48 bytes.", func(x ntp.ServerStats) uint64 { return x.DropShort })
	c("meridian_ntp_server_dropped_mode_total", "Requests dropped: not client mode (control, private, ...).", func(x ntp.ServerStats) uint64 { return x.DropMode })
	c("meridian_ntp_server_dropped_version_total", "Requests dropped: bad version.", func(x ntp.ServerStats) uint64 { return x.DropVersion })
	c("meridian_ntp_server_unsynchronized_replies_total", "Replies sent with LI=3 / stratum 16.", func(x ntp.ServerStats) uint64 { return x.RepliesUnsynchronized })
	m.reg.MustRegister(droppedCollector{s})
	c("meridian_ntp_server_dropped_denied_total", "Requests dropped: the client's address is refused by ntp_server.allow/deny.", func(x ntp.ServerStats) uint64 { return x.DropDenied })
	c("meridian_ntp_server_dropped_source_port_total", "Requests dropped: UDP source port 0 (spoofed; no reply can reach it).", func(x ntp.ServerStats) uint64 { return x.DropSourcePort })
	c("meridian_ntp_server_rate_dropped_total", "Requests dropped: over the rate limit.", func(x ntp.ServerStats) uint64 { return x.RateDropped })
	c("meridian_ntp_server_rate_leaked_total", "Replies sent although over the rate limit (rate_limit.leak).", func(x ntp.ServerStats) uint64 { return x.RateLeaked })
	c("meridian_ntp_server_interleaved_replies_total", "Replies in interleaved mode (carrying the previous reply's kernel transmit stamp).", func(x ntp.ServerStats) uint64 { return x.InterleavedReplies })
	c("meridian_ntp_server_tx_stamps_total", "Kernel transmit stamps of replies stored for interleaved mode.", func(x ntp.ServerStats) uint64 { return x.TxStamps })
	c("meridian_ntp_server_interleaved_evictions_total", "Interleaved-mode table entries evicted by another address.", func(x ntp.ServerStats) uint64 { return x.XleaveEvictions })
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "meridian_ntp_server_interleaved_table_entries",
		Help: "Client addresses in the interleaved-mode table (its capacity: ntp_server.interleaved.table_size)."},
		func() float64 { return float64(s.Stats().XleaveEntries) }))
	for _, reason := range ntp.SendErrorReasons() {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "meridian_ntp_server_send_errors_total",
			Help:        "Replies the kernel refused to send, by errno (the rest of the batch is still sent).",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(s.Stats().SendErrors[reason]) }))
	}
}

// droppedCollector is meridian_ntp_server_dropped_total{reason}: every
// request the server did not answer, by reason (the same counts as the
// per-reason counters, in one family for rate(...) by (reason)).
type droppedCollector struct{ s *ntp.Server }

var droppedDesc = prometheus.NewDesc("meridian_ntp_server_dropped_total",
	"NTP requests not answered, by reason: short, mode, version, source_port, denied, rate.", []string{"reason"}, nil)

func (c droppedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- droppedDesc }

func (c droppedCollector) Collect(ch chan<- prometheus.Metric) {
	x := c.s.Stats()
	for _, r := range []struct {
		reason string
		n      uint64
	}{{"short", x.DropShort}, {"mode", x.DropMode}, {"version", x.DropVersion}, {"source_port", x.DropSourcePort},
		{"denied", x.DropDenied}, {"rate", x.RateDropped}} {
		ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(r.n), r.reason)
	}
}
