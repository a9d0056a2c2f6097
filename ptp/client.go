package ptp

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/facebook/time/ptp/protocol"

	"github.com/meridiantime/meridian/clock"
	"github.com/meridiantime/meridian/discipline"
	"github.com/meridiantime/meridian/hwts"
	"github.com/meridiantime/meridian/ptp/engine"
)

// Sample is one measurement for the discipline, tagged with the clock's
// step generation when its Delay_Req left (the daemon drops samples that
// span a step).
type Sample struct {
	Name   string
	Sample discipline.Sample
	Gen    uint64
}

// ClientStats are a client port's counters, readable while it runs.
type ClientStats struct {
	Sent, Received, Samples, Rejected atomic.Uint64
	TxStampsMissing                   atomic.Uint64
	LastTxSource, LastRxSource        atomic.Int32 // hwts.Source of the last sample's t1 and t4
}

// ServerStats are one server's state as the client sees it, for metrics.
type ServerStats struct {
	Selected     atomic.Bool  // the BMCA chose it (always, with Independent)
	Granted      atomic.Bool  // Sync and Delay_Resp granted
	LastDelayNS  atomic.Int64 // mean path delay of its last sample (δ/2)
	LastOffsetNS atomic.Int64 // its last sample's offset (server minus local)
	Samples      atomic.Uint64
	Stratum      atomic.Uint32 // of its last sample (stepsRemoved + 1)
}

// ClientConfig is a client port: the servers, the ports and the engine.
type ClientConfig struct {
	Servers []netip.Addr
	// Independent runs one engine per server, each its own discipline
	// source (the discipline's selection then rejects a falseticker);
	// otherwise one engine chooses among them by the BMCA, as ptp4l does.
	Independent bool
	// Local is the address to bind ("" any, IPv4 or IPv6 by the servers).
	Local netip.Addr
	// LocalEventPort, LocalGeneralPort are our ports (0 → 319, 320):
	// ptp4l sends to 319/320 whatever port we used.
	LocalEventPort, LocalGeneralPort uint16
	// ServerEventPort, ServerGeneralPort are where servers listen (0 →
	// 319, 320).
	ServerEventPort, ServerGeneralPort uint16
	Interface                          string
	Timestamping                       hwts.Mode
	TxTimeout                          time.Duration // 0 → DefaultTxTimeout
	Engine                             engine.ClientConfig
	// TimestampSys and PHC reach the NIC (nil: the real system calls; no
	// PHC, so no hardware stamps): see hwts.Options.
	TimestampSys hwts.Sys
	PHC          func(index int) (hwts.HardwareClock, error)
}

func (c ClientConfig) stamping() hwts.Options {
	return hwts.Options{Interface: c.Interface, Mode: c.Timestamping, Sys: c.TimestampSys, PHC: c.PHC}
}

// Client is a unicast PTP client port on real sockets.
type Client struct {
	cfg     ClientConfig
	clk     clock.Reader
	gen     func() uint64
	log     *slog.Logger
	names   []string // "ptp:" + server address: the discipline's source names
	Stats   ClientStats
	Servers []ServerStats // per configured server
}

// NewClient prepares a client port; Run starts it. The engine's Identity
// is derived from a random clock identity when unset.
func NewClient(cfg ClientConfig, clk clock.Reader, gen func() uint64, log *slog.Logger) (*Client, error) {
	if len(cfg.Servers) == 0 {
		return nil, errors.New("ptp: client has no servers")
	}
	def := func(p *uint16, v uint16) {
		if *p == 0 {
			*p = v
		}
	}
	def(&cfg.LocalEventPort, EventPort)
	def(&cfg.LocalGeneralPort, GeneralPort)
	def(&cfg.ServerEventPort, EventPort)
	def(&cfg.ServerGeneralPort, GeneralPort)
	if cfg.TxTimeout <= 0 {
		cfg.TxTimeout = DefaultTxTimeout
	}
	if cfg.Engine.Identity == (protocol.PortIdentity{}) {
		var b [8]byte
		_, _ = crand.Read(b[:])
		cfg.Engine.Identity = protocol.PortIdentity{ClockIdentity: protocol.ClockIdentity(binary.BigEndian.Uint64(b[:])), PortNumber: 1}
	}
	if gen == nil {
		gen = func() uint64 { return 0 }
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{cfg: cfg, clk: clk, gen: gen, log: log, Servers: make([]ServerStats, len(cfg.Servers))}
	for i, a := range cfg.Servers {
		cfg.Servers[i] = a.Unmap()
		c.names = append(c.names, Name(a))
	}
	return c, nil
}

// Name is the discipline's name for a PTP server.
func Name(a netip.Addr) string { return "ptp:" + a.Unmap().String() }

// Names are the discipline's source names of the configured servers.
func (c *Client) Names() []string { return c.names }

// rxPacket is one received datagram handed from a reader to the loop.
type rxPacket struct {
	n      int
	buf    [engine.MaxDatagram]byte
	from   netip.Addr
	rxNS   int64
	rxSrc  hwts.Source
	event  bool
	closed bool
}

// port is one engine and the configured servers it talks to (engine
// index i is c.cfg.Servers[servers[i]]).
type port struct {
	e       *engine.Client
	servers []int
	sendGen uint64      // step generation when its last Delay_Req left
	txSrc   hwts.Source // where its last Delay_Req's t1 came from
}

// Run drives the engines until ctx ends.
func (c *Client) Run(ctx context.Context, out chan<- Sample) error {
	local := c.cfg.Local
	if !local.IsValid() {
		local = netip.IPv4Unspecified()
		if c.cfg.Servers[0].Is6() {
			local = netip.IPv6Unspecified()
		}
	}
	v6 := local.Is6() && !local.Is4In6()
	ev, evStamps, err := listenUDP(netip.AddrPortFrom(local, c.cfg.LocalEventPort), c.cfg.stamping(), true)
	if err != nil {
		return err
	}
	defer ev.Close()
	gen, _, err := listenUDP(netip.AddrPortFrom(local, c.cfg.LocalGeneralPort), c.cfg.stamping(), false)
	if err != nil {
		return err
	}
	defer gen.Close()
	c.log.Debug("ptp client timestamping", "servers", c.names, "stamps", evStamps.Chosen().String())

	// Engines: one per server, or one for all.
	type route struct{ port, local int }
	routes := map[netip.Addr]route{}
	var ports []*port
	now := c.clk.NowNS()
	if c.cfg.Independent {
		for i, a := range c.cfg.Servers {
			ec := c.cfg.Engine
			ec.Servers = 1
			ports = append(ports, &port{e: engine.NewClient(ec, now), servers: []int{i}})
			routes[a] = route{i, 0}
		}
	} else {
		ec := c.cfg.Engine
		ec.Servers = len(c.cfg.Servers)
		p := &port{e: engine.NewClient(ec, now)}
		for i, a := range c.cfg.Servers {
			p.servers = append(p.servers, i)
			routes[a] = route{0, i}
		}
		ports = append(ports, p)
	}

	rx := make(chan *rxPacket, 64)
	free := make(chan *rxPacket, 64)
	for range cap(free) {
		free <- &rxPacket{}
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	for _, conn := range []*net.UDPConn{ev, gen} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st *hwts.Socket
			if conn == ev {
				st = evStamps
			}
			readLoop(conn, st, conn == ev, c.clk.NowNS, free, rx, done)
		}()
	}
	defer func() {
		close(done)
		ev.Close()
		gen.Close()
		wg.Wait()
	}()

	timer := time.NewTimer(0)
	defer timer.Stop()
	var samples []discipline.Sample
	flush := func(p *port) error {
		// Send what the engine wants sent; a Delay_Req's transmit stamp is
		// fed back, which may make more to do.
		for {
			rd := p.e.Ready()
			samples = append(samples[:0], rd.Samples...)
			c.Stats.Rejected.Add(uint64(len(rd.Rejected)))
			for _, err := range rd.Rejected {
				c.log.Debug("ptp message rejected", "servers", c.names, "err", err)
			}
			evID, evSent := uint32(0), false
			for _, d := range rd.Send {
				srv := c.cfg.Servers[p.servers[d.Server]]
				dst, conn := netip.AddrPortFrom(srv, c.cfg.ServerGeneralPort), gen
				if d.Event {
					dst, conn = netip.AddrPortFrom(srv, c.cfg.ServerEventPort), ev
					p.sendGen = c.gen()
				}
				if _, err := conn.WriteToUDPAddrPort(udp6Pad(d.Data, v6), dst); err != nil {
					c.log.Debug("ptp send", "to", dst, "err", err)
					continue
				}
				c.Stats.Sent.Add(1)
				if d.Event { // the kernel numbers only the datagrams it took (OPT_ID)
					evID, evSent = evStamps.NextTxID(), true
				}
			}
			p.e.Advance()
			if err := c.emit(ctx, out, p, samples); err != nil {
				return err
			}
			if !evSent {
				return nil
			}
			p.txSrc = hwts.SourceUser
			t1, src, ok := evStamps.TxToClock(evID, c.cfg.TxTimeout, c.clk.NowNS)
			if !ok {
				// TxNS 0 tells the engine none will come: its t1 stays the
				// pre-send reading, early and so never late.
				c.Stats.TxStampsMissing.Add(1)
				t1 = 0
			} else {
				p.txSrc = src
			}
			p.e.Step(c.clk.NowNS(), engine.Input{Kind: engine.InputTxStamp, TxNS: t1})
		}
	}
	for {
		deadline := int64(1<<63 - 1)
		for _, p := range ports {
			if err := flush(p); err != nil {
				return nil
			}
			c.observe(p)
			deadline = min(deadline, p.e.Ready().DeadlineNS)
		}
		timer.Reset(max(time.Duration(deadline-c.clk.NowNS()), 0))
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
			now := c.clk.NowNS()
			for _, p := range ports {
				p.e.Step(now, engine.Input{Kind: engine.InputTick})
			}
		case pk := <-rx:
			if pk.closed {
				return fmt.Errorf("ptp: client %v: socket closed", c.names)
			}
			c.Stats.Received.Add(1)
			if r, ok := routes[pk.from]; ok {
				if pk.event { // general messages carry no stamps
					c.Stats.LastRxSource.Store(int32(pk.rxSrc))
				}
				ports[r.port].e.Step(c.clk.NowNS(), engine.Input{Kind: engine.InputDatagram, Server: r.local, Event: pk.event, Datagram: pk.buf[:pk.n], RxNS: pk.rxNS})
			}
			free <- pk
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// observe publishes an engine's negotiation state per server.
func (c *Client) observe(p *port) {
	now := c.clk.NowNS()
	sel := p.e.Selected()
	for li, g := range p.servers {
		st := p.e.Server(li, now)
		c.Servers[g].Selected.Store(li == sel)
		c.Servers[g].Granted.Store(st.SyncGranted && st.DelayRespGranted)
	}
}

// emit hands an engine's samples to the daemon, named after the server
// that gave them; an error means ctx ended.
func (c *Client) emit(ctx context.Context, out chan<- Sample, p *port, samples []discipline.Sample) error {
	if len(samples) == 0 {
		return nil
	}
	sel := p.e.Selected()
	if sel < 0 {
		return nil // the master was dropped in the same step: its samples with it
	}
	g := p.servers[sel]
	for _, s := range samples {
		c.Stats.Samples.Add(1)
		c.Stats.LastTxSource.Store(int32(p.txSrc))
		st := &c.Servers[g]
		st.Samples.Add(1)
		st.LastDelayNS.Store(s.DelayNS() / 2)
		st.LastOffsetNS.Store(int64(s.OffsetNS()))
		st.Stratum.Store(uint32(s.Stratum))
		select {
		case out <- Sample{Name: c.names[g], Sample: s, Gen: p.sendGen}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// readLoop reads datagrams with their receive stamps, converted to the
// clock clockNS reads (the client's disciplined clock, the grandmaster's
// served time), and hands them over in preallocated packets until the
// socket closes or done is closed. Client ports and grandmaster workers
// both read with it.
func readLoop(conn *net.UDPConn, st *hwts.Socket, event bool, clockNS func() int64, free chan *rxPacket, rx chan<- *rxPacket, done <-chan struct{}) {
	oob := make([]byte, oobLen)
	for {
		var p *rxPacket
		select {
		case p = <-free:
		case <-done:
			return
		}
		n, oobn, _, from, err := conn.ReadMsgUDPAddrPort(p.buf[:], oob)
		realtime, now, _ := hwts.ClockPair(clockNS) // realtime before the clock read: late, never early
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				p.closed = true
				select {
				case rx <- p:
				case <-done:
				}
				return
			}
			free <- p
			continue
		}
		p.n, p.from, p.event = n, from.Addr().Unmap(), event
		p.rxNS, p.rxSrc = rxNS(st, oob[:oobn], realtime, now)
		select {
		case rx <- p:
		case <-done:
			return
		}
	}
}
