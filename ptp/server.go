package ptp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meridiantime/meridian/hwts"
	"github.com/meridiantime/meridian/ptp/engine"
	"github.com/meridiantime/meridian/truetime"
)

// TimeSource is what the grandmaster serves: TrueTime and the estimate
// behind it (the NTP server's interface).
type TimeSource interface {
	Now() (truetime.Interval, error)
	Estimate() truetime.Estimate
	LocalNS() int64 // the clock's own reading, served while unsynchronized
}

// ServerConfig is a grandmaster port.
type ServerConfig struct {
	Listen netip.Addr // address to bind (IPv4 or IPv6)
	// EventPort, GeneralPort are where we listen (0 → 319, 320);
	// ClientEventPort, ClientGeneralPort where clients are answered (0 →
	// 319, 320: ptp4l listens there).
	EventPort, GeneralPort             uint16
	ClientEventPort, ClientGeneralPort uint16
	Interface                          string
	Timestamping                       hwts.Mode
	Workers                            int           // SO_REUSEPORT sockets and engines (0 → 1)
	TxTimeout                          time.Duration // 0 → DefaultTxTimeout
	// EstimateEvery is how often the workers refresh the advertised clock
	// quality from the TimeSource (0 → 1 s).
	EstimateEvery time.Duration
	Engine        engine.MasterConfig // MaxClients is per worker
	// TimestampSys and PHC reach the NIC (see ClientConfig).
	TimestampSys hwts.Sys
	PHC          func(index int) (hwts.HardwareClock, error)
}

func (s *Server) stamping() hwts.Options {
	return hwts.Options{Interface: s.cfg.Interface, Mode: s.cfg.Timestamping, Sys: s.cfg.TimestampSys, PHC: s.cfg.PHC}
}

// Server is a unicast PTP grandmaster over UDP.
type Server struct {
	cfg ServerConfig
	ts  TimeSource
	log *slog.Logger

	mu      sync.Mutex
	workers []*worker

	// noSteer is a test-only knob (negative control): leave the kernel's
	// 4-tuple hash to spread datagrams over the workers.
	noSteer bool
	// unbounded is a test-only knob (negative control): flush as this
	// shell first did — each transmit stamp waited for on its own
	// TxTimeout, the schedule run again after every stamp (a tick), until
	// the engine has no Sync left; with an uncapped MaxBurst that is the
	// loop that never ended and queued without limit when starved.
	unbounded bool
	// stampWaitEach is a test-only knob (negative control): wait for each
	// transmit stamp on its own TxTimeout (part of unbounded).
	stampWaitEach bool
}

// rxBurst is how many received datagrams a worker steps through before it
// sends what they produced: with the engine's MaxBurst it bounds what one
// flush holds (rxBurst + MaxBurst datagrams and their Follow_Ups).
const rxBurst = 64

type worker struct {
	ev, gen  *net.UDPConn
	evStamps *hwts.Socket
	m        *engine.Master
	cnt      atomic.Pointer[engine.MasterCounters]
	writeErr atomic.Uint64
	// rxDrops is what the kernel dropped on the event and general sockets
	// (socketDrops), as of publish.
	rxDrops atomic.Uint64
	// maxQueued is the most datagrams one Ready held (tests read it once
	// Serve has returned).
	maxQueued int
	syncs     []sentSync // reused by flush
	evBase    int        // syncs[evBase:] are in evOut
	evOut     *batchSender
	genOut    *batchSender
}

// NewServer returns a grandmaster serving ts.
func NewServer(cfg ServerConfig, ts TimeSource, log *slog.Logger) *Server {
	def := func(p *uint16, v uint16) {
		if *p == 0 {
			*p = v
		}
	}
	def(&cfg.EventPort, EventPort)
	def(&cfg.GeneralPort, GeneralPort)
	def(&cfg.ClientEventPort, EventPort)
	def(&cfg.ClientGeneralPort, GeneralPort)
	cfg.Workers = max(cfg.Workers, 1)
	if cfg.TxTimeout <= 0 {
		cfg.TxTimeout = DefaultTxTimeout
	}
	if cfg.EstimateEvery <= 0 {
		cfg.EstimateEvery = time.Second
	}
	if !cfg.Listen.IsValid() {
		cfg.Listen = netip.IPv4Unspecified()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, ts: ts, log: log}
}

// Listen opens the workers' sockets.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range s.cfg.Workers {
		w := &worker{m: engine.NewMaster(s.cfg.Engine)}
		var err error
		w.ev, w.evStamps, err = listenUDP(netip.AddrPortFrom(s.cfg.Listen, s.cfg.EventPort), s.stamping(), true)
		if err == nil {
			w.gen, _, err = listenUDP(netip.AddrPortFrom(s.cfg.Listen, s.cfg.GeneralPort), s.stamping(), false)
		}
		if err == nil {
			err = w.batches(s.cfg.Listen.Is6() && !s.cfg.Listen.Is4In6())
		}
		if err != nil {
			if w.ev != nil {
				w.ev.Close()
			}
			if w.gen != nil {
				w.gen.Close()
			}
			s.closeLocked()
			return err
		}
		s.workers = append(s.workers, w)
	}
	if len(s.workers) > 1 && !s.noSteer {
		v6 := s.cfg.Listen.Is6() && !s.cfg.Listen.Is4In6()
		for _, c := range []*net.UDPConn{s.workers[0].ev, s.workers[0].gen} {
			if err := steerByAddress(c, len(s.workers), v6); err != nil {
				s.closeLocked()
				return fmt.Errorf("ptp: steer clients to workers: %w", err)
			}
		}
	}
	return nil
}

// Close closes the sockets.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked()
}

func (s *Server) closeLocked() {
	for _, w := range s.workers {
		w.ev.Close()
		w.gen.Close()
	}
}

// batches sets up the worker's batched senders.
func (w *worker) batches(v6 bool) error {
	erc, err := w.ev.SyscallConn()
	if err != nil {
		return err
	}
	grc, err := w.gen.SyscallConn()
	if err != nil {
		return err
	}
	w.evOut, w.genOut = newBatchSender(erc, v6), newBatchSender(grc, v6)
	return nil
}

// publish makes the engine's counters readable by Counters (a copy per
// call: done once per EstimateEvery, not per message).
func (w *worker) publish() {
	c := w.m.Counters()
	w.cnt.Store(&c)
	var drops uint64
	for _, conn := range []*net.UDPConn{w.ev, w.gen} {
		if n, err := socketDrops(conn); err == nil {
			drops += uint64(n)
		}
	}
	if drops > w.rxDrops.Load() { // a closed socket reads nothing: keep the last count
		w.rxDrops.Store(drops)
	}
}

// ShellCounters count what the grandmaster's socket shell dropped.
type ShellCounters struct {
	// RxDropped is datagrams the kernel dropped because the worker did
	// not read them in time (receive buffer full: a starved or overloaded
	// worker sheds Delay_Reqs and requests this way).
	RxDropped uint64
	// SendErrors is datagrams a send failed for.
	SendErrors uint64
}

// ShellCounters sums the workers' shell counters (live).
func (s *Server) ShellCounters() ShellCounters {
	s.mu.Lock()
	defer s.mu.Unlock()
	var t ShellCounters
	for _, w := range s.workers {
		t.RxDropped += w.rxDrops.Load()
		t.SendErrors += w.writeErr.Load()
	}
	return t
}

// Counters sums the workers' engine counters, as of their last
// EstimateEvery tick (and exactly once Serve has returned).
func (s *Server) Counters() engine.MasterCounters {
	s.mu.Lock()
	defer s.mu.Unlock()
	var t engine.MasterCounters
	for _, w := range s.workers {
		c := w.cnt.Load()
		if c == nil {
			continue
		}
		t.Clients += c.Clients
		t.Grants += c.Grants
		t.Renewals += c.Renewals
		t.DeniedRate += c.DeniedRate
		t.DeniedDuration += c.DeniedDuration
		t.DeniedClients += c.DeniedClients
		t.DeniedType += c.DeniedType
		t.Cancels += c.Cancels
		t.Announces += c.Announces
		t.Syncs += c.Syncs
		t.FollowUps += c.FollowUps
		t.DelayResps += c.DelayResps
		t.TxTimeouts += c.TxTimeouts
		t.ShedSyncs += c.ShedSyncs
		t.ShedAnnounces += c.ShedAnnounces
		t.DroppedShort += c.DroppedShort
		t.DroppedVersion += c.DroppedVersion
		t.DroppedDomain += c.DroppedDomain
		t.DroppedType += c.DroppedType
		t.DroppedTLV += c.DroppedTLV
		t.UnknownTLVs += c.UnknownTLVs
	}
	return t
}

// servedNS is the time served now: TrueTime's midpoint, or the clock's own
// reading while unsynchronized (the Announce then says clockClass 248).
func (s *Server) servedNS() int64 {
	if iv, err := s.ts.Now(); err == nil {
		return iv.MidNS()
	}
	return s.ts.LocalNS()
}

// Serve runs the workers until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	ws := append([]*worker(nil), s.workers...)
	s.mu.Unlock()
	if len(ws) == 0 {
		return errors.New("ptp: server: Serve before Listen")
	}
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.run(ctx, w)
		}()
	}
	<-ctx.Done()
	s.Close()
	wg.Wait()
	return nil
}

// rxPacket is a received datagram handed from a reader to its worker.
// run is one worker: two readers feed its engine; the engine's sends go
// out on the worker's sockets; Sync transmit stamps come from the event
// socket's error queue.
func (s *Server) run(ctx context.Context, w *worker) {
	const depth = 256
	rx := make(chan *rxPacket, depth)
	free := make(chan *rxPacket, depth)
	for range depth {
		free <- &rxPacket{}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, conn := range []*net.UDPConn{w.ev, w.gen} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st *hwts.Socket
			if conn == w.ev {
				st = w.evStamps
			}
			readLoop(conn, st, conn == w.ev, s.servedNS, free, rx, done)
		}()
	}
	defer func() {
		w.publish() // the drop counts, while the sockets are open
		close(done)
		w.ev.Close()
		w.gen.Close()
		wg.Wait()
		w.publish()
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	est := time.NewTicker(s.cfg.EstimateEvery)
	defer est.Stop()
	s.estimate(w)
	for {
		s.flush(ctx, w)
		if d := w.m.Ready().DeadlineNS; d != 1<<63-1 {
			timer.Reset(max(time.Duration(d-s.servedNS()), 0))
		}
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			w.m.Step(s.servedNS(), engine.Input{Kind: engine.InputTick})
		case <-est.C:
			s.estimate(w)
			w.publish()
		case p := <-rx:
			if !s.receive(w, p, free) {
				return
			}
			// Step what else has arrived, up to rxBurst, before sending:
			// replies go out in batches, and a worker behind on its
			// schedule still answers Delay_Reqs at the rate it reads them.
			for i := 1; i < rxBurst && !s.unbounded; i++ {
				var p *rxPacket
				select {
				case p = <-rx:
				default:
				}
				if p == nil {
					break
				}
				if !s.receive(w, p, free) {
					return
				}
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// receive steps one datagram from a reader and returns its buffer; false
// when the reader's socket closed.
func (s *Server) receive(w *worker, p *rxPacket, free chan<- *rxPacket) bool {
	if p.closed {
		return false
	}
	w.m.Step(s.servedNS(), engine.Input{Kind: engine.InputDatagram, Peer: peerOf(p.from), Event: p.event, Datagram: p.buf[:p.n], RxNS: p.rxNS})
	free <- p
	return true
}

func (s *Server) estimate(w *worker) {
	e := s.ts.Estimate()
	var eps int64
	if iv, err := s.ts.Now(); err == nil {
		eps = iv.EpsNS()
	}
	w.m.Step(s.servedNS(), engine.Input{Kind: engine.InputEstimate, Status: e.Status, EpsNS: eps, Leap: e.Leap, Stratum: e.Stratum})
}

// flush sends the engine's datagrams, batched per socket (sendmmsg);
// each Sync's transmit stamp is then read from the error queue (in send
// order) and fed back, which releases its Follow_Up, and the Follow_Ups
// are sent: two rounds at most, as a stamp report schedules nothing else.
// The Syncs of a round share one TxTimeout, counted from when the last
// was sent: a stamp not come by then, or a Sync that could not be sent,
// is reported as 0 (the engine counts it and sends no Follow_Up), so a
// round takes at most TxTimeout plus one error-queue read per Sync.
func (s *Server) flush(ctx context.Context, w *worker) {
	v6 := s.cfg.Listen.Is6() && !s.cfg.Listen.Is4In6()
	for ctx.Err() == nil {
		rd := w.m.Ready()
		w.maxQueued = max(w.maxQueued, len(rd.Send))
		w.syncs, w.evBase = w.syncs[:0], 0
		for _, d := range rd.Send {
			data := udp6Pad(d.Data, v6)
			if d.Event {
				if w.evOut.full() {
					s.sendBatch(w, w.evOut)
				}
				w.evOut.add(data, netip.AddrPortFrom(addrOf(d.Peer), s.cfg.ClientEventPort))
				w.syncs = append(w.syncs, sentSync{txID: d.TxID})
				continue
			}
			if w.genOut.full() {
				s.sendBatch(w, w.genOut)
			}
			w.genOut.add(data, netip.AddrPortFrom(addrOf(d.Peer), s.cfg.ClientGeneralPort))
		}
		s.sendBatch(w, w.genOut)
		s.sendBatch(w, w.evOut)
		w.m.Advance()
		if len(w.syncs) == 0 {
			return
		}
		deadline := time.Now().Add(s.cfg.TxTimeout)
		for _, p := range w.syncs {
			if ctx.Err() != nil {
				return // shutting down: the sockets close, no Follow_Up would go out
			}
			var tx int64
			wait := max(time.Until(deadline), 0) // 0: one look at the error queue
			if s.unbounded || s.stampWaitEach {
				wait = s.cfg.TxTimeout
			}
			if p.sent {
				if t, _, ok := w.evStamps.TxToClock(p.kernelID, wait, s.servedNS); ok {
					tx = t
				}
			}
			now := s.servedNS()
			w.m.Step(now, engine.Input{Kind: engine.InputTxStamp, TxID: p.txID, TxNS: tx})
			if s.unbounded {
				w.m.Step(now, engine.Input{Kind: engine.InputTick})
			}
		}
	}
}

// sendBatch sends b's queued datagrams and counts the failures; for the
// event socket it numbers the Syncs that went out as the kernel does
// (OPT_ID counts only the datagrams it took).
func (s *Server) sendBatch(w *worker, b *batchSender) {
	if err := b.flush(); err != nil {
		s.log.Debug("ptp server send", "err", err) // the socket is closing
	}
	for i := range b.n {
		if !b.sent[i] {
			w.writeErr.Add(1)
		}
		if b == w.evOut {
			p := &w.syncs[w.evBase+i]
			if p.sent = b.sent[i]; p.sent {
				p.kernelID = w.evStamps.NextTxID()
			}
		}
	}
	if b == w.evOut {
		w.evBase += b.n
	}
	b.reset()
}

// sentSync is a Sync waiting for its transmit stamp.
type sentSync struct {
	txID     uint64 // the engine's
	kernelID uint32 // the socket's OPT_ID
	sent     bool
}

// Addr is the bound event and general addresses of the first worker.
func (s *Server) Addr() (event, general netip.AddrPort, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.workers) == 0 {
		return event, general, fmt.Errorf("ptp: server not listening")
	}
	return s.workers[0].ev.LocalAddr().(*net.UDPAddr).AddrPort(), s.workers[0].gen.LocalAddr().(*net.UDPAddr).AddrPort(), nil
}
