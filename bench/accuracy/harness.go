package accuracy

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meridiantime/meridian/impair"
	"github.com/meridiantime/meridian/truetime"
	"github.com/meridiantime/meridian/truetime/shm"
)

// Contestant names.
const (
	MeridianNTP = "meridian-ntp"
	ChronydNTP  = "chronyd-ntp"
	MeridianPTP = "meridian-ptp"
	Ptp4lPTP    = "ptp4l-ptp"
)

// ContestantNames lists every contestant.
var ContestantNames = []string{MeridianNTP, ChronydNTP, MeridianPTP, Ptp4lPTP}

// Server kinds.
const (
	ServerMeridiand = "meridiand" // local_stratum 1, clock_offset = the injected offset; NTP and PTP
	ServerChronyd   = "chronyd"   // local stratum 1, the host clock; NTP only, injected offset 0
)

// serverStratum is every server's stratum: a synchronized client is one
// below it.
const serverStratum = 1

// Sampling intervals.
const (
	meridianEvery = 100 * time.Millisecond // shm reads
	peerEvery     = time.Second            // chronyc queries, metric scrapes, ptp4l's Sync interval
)

// DriftBoundPPM is meridiand's default drift_bound_ppm: the rate at which
// anything once proven loses precision (the provable minimum's growth).
const DriftBoundPPM = 15

// The stamped calibration: exchanges, one every stampedEvery (long enough
// for the machine to fall idle between them, as between a client's polls).
const (
	stampedExchanges = 40
	stampedEvery     = 100 * time.Millisecond
)

// The stamped probe that runs through the whole run, next to the clients
// (impair.StampProbe): one exchange every probeEvery, each datagram
// awaited for at most probeWait.
const (
	probeEvery = 500 * time.Millisecond
	probeWait  = 250 * time.Millisecond
)

// maxBracketNS bounds the host-clock reads around one interval read: a
// read preempted between them (ms on a loaded machine) would pass for our
// error, and would make the containment check lenient.
const maxBracketNS = 20_000

// Options configures one path's run.
type Options struct {
	Meridiand        string   // the meridiand binary
	Contestants      []string // default: all
	Server           string   // ServerMeridiand (default) or ServerChronyd
	InjectedOffsetNS int64    // the server's clock − the host clock (meridiand server only)
	Warmup, Measure  time.Duration
	Dir              string // configurations and logs (a directory per path is made in it)
	// Traces: our clients log every sample (log_level debug) so that
	// Run.WriteTraces can record the one-way delays their exchanges took.
	Traces bool
	// XLeave: the NTP clients (ours and chronyd) ask for interleaved mode
	// (xleave), so that the server's transmit timestamp is its kernel's
	// stamp of the previous reply instead of a reading before the send.
	XLeave bool
}

func (o *Options) fill() {
	if len(o.Contestants) == 0 {
		o.Contestants = ContestantNames
	}
	if o.Server == "" {
		o.Server = ServerMeridiand
	}
}

// Validate checks the options; errors name the option.
func (o Options) Validate() error {
	o.fill()
	seen := map[string]bool{}
	for _, c := range o.Contestants {
		if !slices.Contains(ContestantNames, c) {
			return fmt.Errorf("accuracy: contestants: unknown %q (known: %s)", c, strings.Join(ContestantNames, ", "))
		}
		if seen[c] {
			return fmt.Errorf("accuracy: contestants: %q named twice", c)
		}
		seen[c] = true
	}
	switch o.Server {
	case ServerMeridiand:
		if o.InjectedOffsetNS < -int64(time.Second) || o.InjectedOffsetNS > int64(time.Second) {
			return fmt.Errorf("accuracy: injected offset %v: must be within ±1s", time.Duration(o.InjectedOffsetNS))
		}
	case ServerChronyd:
		if o.InjectedOffsetNS != 0 {
			return fmt.Errorf("accuracy: injected offset %v: a chronyd server serves the host clock, only 0 is possible", time.Duration(o.InjectedOffsetNS))
		}
		if seen[MeridianPTP] || seen[Ptp4lPTP] {
			return errors.New("accuracy: contestants: a chronyd server serves no PTP (use the meridiand server)")
		}
	default:
		return fmt.Errorf("accuracy: server: unknown %q (known: %s, %s)", o.Server, ServerMeridiand, ServerChronyd)
	}
	if o.Warmup < 0 || o.Measure < 5*time.Second {
		return fmt.Errorf("accuracy: warm-up %v, measure %v: need warm-up ≥ 0 and measure ≥ 5s", o.Warmup, o.Measure)
	}
	if o.Warmup+o.Measure > time.Hour {
		return fmt.Errorf("accuracy: warm-up + measure = %v: at most 1h per path", o.Warmup+o.Measure)
	}
	return nil
}

// need resolves a program in PATH; the error names it and its package.
func need(prog string) (string, error) {
	p, err := exec.LookPath(prog)
	if err == nil {
		return p, nil
	}
	pkg := map[string]string{"chronyd": "chrony", "chronyc": "chrony", "ptp4l": "linuxptp", "setpriv": "util-linux", "ip": "iproute2"}[prog]
	return "", fmt.Errorf("accuracy: %s not found in PATH (Debian package %s): %w", prog, pkg, err)
}

// Requirements reports the first missing requirement of a run with o:
// root, ip(8), /dev/net/tun, setpriv, the meridiand binary, and chronyd and
// chronyc or ptp4l as the contestants and server need.
func Requirements(o Options) error {
	o.fill()
	if err := o.Validate(); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("accuracy: needs root (network namespaces, TAP devices)")
	}
	progs := []string{"ip", "setpriv"}
	if o.Server == ServerChronyd || slices.Contains(o.Contestants, ChronydNTP) {
		progs = append(progs, "chronyd", "chronyc")
	}
	if slices.Contains(o.Contestants, Ptp4lPTP) {
		progs = append(progs, "ptp4l")
	}
	for _, p := range progs {
		if _, err := need(p); err != nil {
			return err
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return fmt.Errorf("accuracy: the impairment wire needs /dev/net/tun: %w", err)
	}
	if st, err := os.Stat(o.Meridiand); err != nil || st.IsDir() {
		return fmt.Errorf("accuracy: meridiand binary %q: not a file (build it: go build -o bin/meridiand ./cmd/meridiand)", o.Meridiand)
	}
	return nil
}

// groups splits the contestants into the pairs they run in: the NTP
// clients share one; each PTP client has its own (ptp4l and our client
// both bind ports 319 and 320).
func groups(cs []string) [][]string {
	var ntp, out [][]string
	var n []string
	for _, c := range ContestantNames {
		if !slices.Contains(cs, c) {
			continue
		}
		switch c {
		case MeridianNTP, ChronydNTP:
			n = append(n, c)
		default:
			out = append(out, []string{c})
		}
	}
	if len(n) > 0 {
		ntp = [][]string{n}
	}
	return append(ntp, out...)
}

type seenDelay struct {
	at time.Time
	ns int64
}

// group is one pair of namespaces: the server in B, clients in A.
type group struct {
	pair       *impair.Pair
	cal        impair.Calibration        // user-space probes, back to back (reported)
	stamped    impair.StampedCalibration // kernel stamps, a client's rhythm (subtracted)
	probe      *impair.StampProbe        // kernel stamps through the run (the measured physics)
	cfg        impair.Config
	configured time.Time // route changes count from here
	server     *proc
	serverShm  *shm.Reader
	names      []string

	mu      sync.Mutex
	delays  []seenDelay // round trips any client of the group reported
	witness []int64     // server midpoint − (host + injected), one a second
}

func (g *group) addDelay(at time.Time, ns int64) {
	g.mu.Lock()
	g.delays = append(g.delays, seenDelay{at, ns})
	g.mu.Unlock()
}

// provableMinNS is the narrowest half-width any bound under the daemon's
// assumptions could prove at now from the round trips seen so far: the
// smallest δ/2 + drift bound × age (0 before any).
func (g *group) provableMinNS(now time.Time) int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	best := int64(math.MaxInt64)
	for _, d := range g.delays {
		best = min(best, d.ns/2+int64(DriftBoundPPM*1e-6*float64(now.Sub(d.at))))
	}
	if best == math.MaxInt64 {
		return 0
	}
	return best
}

// obs is one sample of a contestant.
type obs struct {
	at        time.Time
	synced    bool
	errNS     int64   // estimate − truth
	epsNS     int64   // meridian: the interval's half-width
	ratio     float64 // meridian: ε / the provable minimum then (0: none yet)
	bracketed bool
}

// contestant is one client under test.
type contestant struct {
	name string
	g    *group
	proc *proc

	// meridian
	rd          *shm.Reader
	metrics     *http.Client
	metricsAddr netip.AddrPort
	// chronyd
	csock string

	mu                                            sync.Mutex
	obs                                           []obs
	checked, violations, control, loose, minDelay int64
	// interleaved: meridian-ntp: its source's interleaved samples (the
	// metric, last scraped); chronyd-ntp: the once-a-second ntpdata
	// reports whose last exchange was interleaved.
	interleaved int64
	examples    []string
}

func (c *contestant) add(o obs) {
	c.mu.Lock()
	c.obs = append(c.obs, o)
	c.mu.Unlock()
}

// Run is one path's setup: its groups, servers and contestants, sampling
// from the moment each started until Sample's span ends.
type Run struct {
	opts   Options
	path   Path
	dir    string
	groups []*group
	cs     []*contestant
	cl     closers

	stop    chan struct{}
	stopped sync.Once
	wg      sync.WaitGroup
	begin   time.Time // Sample's start: t = 0 of the series
	end     time.Time
}

// Start builds path's groups (a calibrated, impaired wire each, the server
// in B, the clients in A) and starts sampling every contestant at once. The
// wires stop when ctx ends; Close stops everything.
func Start(ctx context.Context, opts Options, path Path) (r *Run, err error) {
	opts.fill()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	dir := filepath.Join(opts.Dir, path.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("accuracy: %w", err)
	}
	r = &Run{opts: opts, path: path, dir: dir, stop: make(chan struct{})}
	defer func() {
		if err != nil {
			err = errors.Join(err, r.Close())
			r = nil
		}
	}()
	for i, names := range groups(opts.Contestants) {
		if err := r.startGroup(ctx, i, names); err != nil {
			return r, fmt.Errorf("accuracy: path %s, group %v: %w", path.Name, names, err)
		}
	}
	return r, nil
}

func (r *Run) startGroup(ctx context.Context, i int, names []string) error {
	pair, err := impair.NewPair(ctx, impair.Config{})
	if err != nil {
		return err
	}
	r.cl.add(pair.Close)
	g := &group{pair: pair, names: names}
	r.groups = append(r.groups, g)
	if g.cal, err = pair.Calibrate(ctx, 200); err != nil {
		return err
	}
	// Each direction's own minimum overhead off its delays, so that each
	// configured delay is that direction's minimum (impair.Path.Delay), as
	// on a real path: an uneven overhead would be an asymmetry that biases
	// every client alike, and the minima are what a filter can find. The
	// overhead is measured as the clients see it: kernel stamps at both
	// ends, a request after a pause and its reply at once, over the path's
	// base delays (impair.CalibrateStamped).
	if g.stamped, err = pair.CalibrateStamped(ctx, r.path.Impair, stampedExchanges, stampedEvery); err != nil {
		return err
	}
	g.cfg = r.path.Impair
	g.cfg.AtoB.SubtractNS, g.cfg.BtoA.SubtractNS = g.stamped.AtoBOverheadNS, g.stamped.BtoAOverheadNS
	if err := pair.Wire.Configure(g.cfg); err != nil {
		return err
	}
	g.configured = time.Now()
	if g.probe, err = pair.StartStampProbe(ctx, probeEvery, probeWait); err != nil {
		return err
	}
	r.cl.add(g.probe.Close)
	addrA, addrB := pair.Addr[impair.A], pair.Addr[impair.B]
	gdir := filepath.Join(r.dir, fmt.Sprintf("g%d", i))
	if err := os.MkdirAll(gdir, 0o755); err != nil {
		return err
	}

	// The server.
	switch r.opts.Server {
	case ServerChronyd:
		pr, _, err := startChronyd(pair, impair.B, gdir, "server-chronyd", fmt.Sprintf("local stratum %d\nallow %s\nbindaddress %s\nport 123",
			serverStratum, netip.PrefixFrom(addrB, 24).Masked(), addrB))
		if err != nil {
			return err
		}
		g.server = pr
		r.cl.add(func() error { pr.stop(); return nil })
	default:
		pr, shmPath, err := startMeridiand(r.opts.Meridiand, pair, impair.B, gdir, "server-meridiand", fmt.Sprintf(`local_stratum: %d
clock_offset: %s
ntp_server: {listen: ["%s:123"]}
ptp_server: {listen: ["%s"], timestamping: software}
metrics: {listen: ""}
`, serverStratum, offsetYAML(r.opts.InjectedOffsetNS), addrB, addrB))
		if err != nil {
			return err
		}
		g.server = pr
		r.cl.add(func() error { pr.stop(); return nil })
		if g.serverShm, err = waitShm(ctx, shmPath, pr); err != nil {
			return err
		}
		rd := g.serverShm
		r.cl.add(func() error { rd.Close(); return nil })
		r.wg.Add(1)
		go r.witness(g)
	}

	// The clients.
	for _, name := range names {
		c := &contestant{name: name, g: g, minDelay: math.MaxInt64}
		switch name {
		case MeridianNTP, MeridianPTP:
			src := fmt.Sprintf(`{type: ntp, address: "%s:123", poll: 1s, min_poll: 1s, max_poll: 1s, iburst: true, xleave: %t}`, addrB, r.opts.XLeave)
			if name == MeridianPTP {
				src = fmt.Sprintf(`{type: ptp, address: %q, timestamping: software, poll: 1s}`, addrB.String())
			}
			c.metricsAddr = netip.AddrPortFrom(addrA, 9390)
			level := "info"
			if r.opts.Traces {
				level = "debug"
			}
			pr, shmPath, err := startMeridiand(r.opts.Meridiand, pair, impair.A, gdir, name, fmt.Sprintf(`clock: virtual
clock_offset: 0s
local_stratum: 0
log_level: %s
sources: [%s]
ntp_server: {listen: []}
metrics: {listen: "%s"}
`, level, src, c.metricsAddr))
			if err != nil {
				return err
			}
			c.proc = pr
			r.cl.add(func() error { pr.stop(); return nil })
			if c.rd, err = waitShm(ctx, shmPath, pr); err != nil {
				return err
			}
			rd := c.rd
			r.cl.add(func() error { rd.Close(); return nil })
			c.metrics = nsHTTPClient(pair, impair.A)
			r.cl.add(func() error { c.metrics.CloseIdleConnections(); return nil })
			r.wg.Add(1)
			go r.sampleMeridian(c)
		case ChronydNTP:
			xleave := ""
			if r.opts.XLeave {
				xleave = " xleave"
			}
			directives := fmt.Sprintf("server %s iburst minpoll 0 maxpoll 0%s\nport 0", addrB, xleave)
			if r.opts.Traces {
				// chronyd's own record of every measurement, next to ours.
				directives += fmt.Sprintf("\nlogdir %s\nlog rawmeasurements", filepath.Join(gdir, name))
			}
			pr, sock, err := startChronyd(pair, impair.A, gdir, name, directives)
			if err != nil {
				return err
			}
			c.proc, c.csock = pr, sock
			r.cl.add(func() error { pr.stop(); return nil })
			r.wg.Add(1)
			go r.sampleChronyd(c)
		case Ptp4lPTP:
			pr, err := startPtp4l(pair, impair.A, gdir, name, addrB, func(at time.Time, line string) {
				m, ok, err := ParseMasterOffset(line)
				if !ok || err != nil || m.PathDelayNS == 0 { // the first line comes before a delay measurement
					return
				}
				c.add(obs{at: at, synced: true, errNS: -m.OffsetNS - r.opts.InjectedOffsetNS})
				if m.PathDelayNS > 0 { // the mean one-way delay: the round trip is twice it
					c.g.addDelay(at, 2*m.PathDelayNS)
					c.mu.Lock()
					c.minDelay = min(c.minDelay, 2*m.PathDelayNS)
					c.mu.Unlock()
				}
			})
			if err != nil {
				return err
			}
			c.proc = pr
			r.cl.add(func() error { pr.stop(); return nil })
		}
		r.cs = append(r.cs, c)
	}
	return nil
}

// offsetYAML formats ns as a signed Go duration for meridiand's config.
func offsetYAML(ns int64) string {
	if ns >= 0 {
		return "+" + time.Duration(ns).String()
	}
	return time.Duration(ns).String()
}

// Sample lets every contestant run for the warm-up and the measured span
// (or until ctx ends), then stops sampling.
func (r *Run) Sample(ctx context.Context) {
	r.begin = time.Now()
	t := time.NewTimer(r.opts.Warmup + r.opts.Measure)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
	}
	r.end = time.Now()
	r.stopped.Do(func() { close(r.stop) })
	r.wg.Wait()
}

// Close stops sampling, every process (by PID) and the wires, and deletes
// the namespaces.
func (r *Run) Close() error {
	r.stopped.Do(func() { close(r.stop) })
	r.wg.Wait()
	return r.cl.close()
}

// every calls fn every d until the run stops.
func (r *Run) every(d time.Duration, fn func(now time.Time)) {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-r.stop:
			return
		case now := <-tick.C:
			fn(now)
		}
	}
}

// witness reads the server's own segment against host + injected.
func (r *Run) witness(g *group) {
	defer r.wg.Done()
	r.every(peerEvery, func(time.Time) {
		before := time.Now().UnixNano()
		iv, err := g.serverShm.Now()
		after := time.Now().UnixNano()
		if err != nil || after-before > maxBracketNS {
			return
		}
		g.mu.Lock()
		g.witness = append(g.witness, iv.MidNS()-(before+after)/2-r.opts.InjectedOffsetNS)
		g.mu.Unlock()
	})
}

// readShm reads an interval between two host-clock reads, retrying while
// the thread was preempted in between (up to 20 tries; then the last read
// stands, loosely bracketed).
func readShm(rd *shm.Reader) (beforeNS, afterNS int64, iv truetime.Interval, bracketed bool, err error) {
	for try := 0; ; try++ {
		beforeNS = time.Now().UnixNano()
		iv, err = rd.Now()
		afterNS = time.Now().UnixNano()
		if afterNS-beforeNS <= maxBracketNS {
			return beforeNS, afterNS, iv, true, err
		}
		if try == 20 {
			return beforeNS, afterNS, iv, false, err
		}
		runtime.Gosched()
	}
}

// sampleMeridian reads the daemon's interval every 100 ms and its source's
// round trip every second.
func (r *Run) sampleMeridian(c *contestant) {
	defer r.wg.Done()
	inj := r.opts.InjectedOffsetNS
	nextSlow := time.Now()
	r.every(meridianEvery, func(now time.Time) {
		before, after, iv, bracketed, err := readShm(c.rd)
		if err != nil {
			c.add(obs{at: now})
		} else {
			lo, hi := before+inj, after+inj // the truth lies within
			c.mu.Lock()
			c.checked++
			if !bracketed {
				c.loose++
			}
			if iv.EarliestNS > hi || iv.LatestNS < lo {
				c.violations++
				if len(c.examples) < 5 {
					c.examples = append(c.examples, fmt.Sprintf("at %s: [%d, %d] (mid−truth %v, ε %v) misses the truth [%d, %d]",
						now.Format(time.RFC3339Nano), iv.EarliestNS, iv.LatestNS, time.Duration(iv.MidNS()-hi), time.Duration(iv.EpsNS()), lo, hi))
				}
			}
			// Negative control: the same check on the same read with ε
			// shrunk 100× must find violations, or the check cannot fail.
			if mid, e := iv.MidNS(), iv.EpsNS()/100; mid-e > hi || mid+e < lo {
				c.control++
			}
			c.mu.Unlock()
			o := obs{at: now, synced: true, errNS: iv.MidNS() - hi, epsNS: iv.EpsNS(), bracketed: bracketed}
			if m := c.g.provableMinNS(now); m > 0 {
				o.ratio = float64(iv.EpsNS()) / float64(m)
			}
			c.add(o)
		}
		if now.Before(nextSlow) {
			return
		}
		nextSlow = now.Add(peerEvery - meridianEvery/2)
		d, inter, ok := scrapeSourceDelay(c.metrics, c.metricsAddr)
		if ok {
			c.g.addDelay(now, d)
		}
		c.mu.Lock()
		c.interleaved = max(c.interleaved, inter)
		if ok {
			c.minDelay = min(c.minDelay, d)
		}
		c.mu.Unlock()
	})
}

// sampleChronyd queries chrony's tracking and last round trip every
// second.
func (r *Run) sampleChronyd(c *contestant) {
	defer r.wg.Done()
	r.every(peerEvery, func(now time.Time) {
		if l, err := chronycLine(c.csock, "tracking"); err == nil {
			if tr, err := ParseTracking(l); err == nil && tr.Stratum == serverStratum+1 {
				c.add(obs{at: now, synced: true, errNS: tr.OffsetNS - r.opts.InjectedOffsetNS})
			}
		}
		if l, err := chronycLine(c.csock, "ntpdata"); err == nil {
			if nd, err := ParseNTPData(l); err == nil {
				d := nd.DelayNS
				c.g.addDelay(now, d)
				c.mu.Lock()
				c.minDelay = min(c.minDelay, d)
				if nd.Interleaved {
					c.interleaved++
				}
				c.mu.Unlock()
			}
		}
	})
}

// LogTail is the end of the named contestant's log (empty for an unknown
// name or a log-less process).
func (r *Run) LogTail(name string) string {
	for _, c := range r.cs {
		if c.name == name {
			return c.proc.logTail()
		}
	}
	return ""
}
