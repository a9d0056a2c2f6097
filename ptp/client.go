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
	Selected                          atomic.Int32 // index of the chosen server, -1 none
	LastDelayNS                       atomic.Int64
	LastOffsetNS                      atomic.Int64
	LastTxSource, LastRxSource        atomic.Int32 // hwts.Source of the last sample's t1 and t4
}

// ClientConfig is a client port: the servers, the ports and the engine.
type ClientConfig struct {
	Name    string
	Servers []netip.Addr
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
}

// Client is a unicast PTP client port on real sockets.
type Client struct {
	cfg   ClientConfig
	clk   clock.Reader
	gen   func() uint64
	log   *slog.Logger
	Stats ClientStats
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
	cfg.Engine.Servers = len(cfg.Servers)
	if gen == nil {
		gen = func() uint64 { return 0 }
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{cfg: cfg, clk: clk, gen: gen, log: log}
	c.Stats.Selected.Store(-1)
	return c, nil
}

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

// Run drives the engine until ctx ends.
func (c *Client) Run(ctx context.Context, out chan<- Sample) error {
	local := c.cfg.Local
	if !local.IsValid() {
		local = netip.IPv4Unspecified()
		if c.cfg.Servers[0].Is6() && !c.cfg.Servers[0].Is4In6() {
			local = netip.IPv6Unspecified()
		}
	}
	ev, evStamps, err := listenUDP(netip.AddrPortFrom(local, c.cfg.LocalEventPort), c.cfg.Interface, c.cfg.Timestamping)
	if err != nil {
		return err
	}
	defer ev.Close()
	gen, _, err := listenUDP(netip.AddrPortFrom(local, c.cfg.LocalGeneralPort), c.cfg.Interface, c.cfg.Timestamping)
	if err != nil {
		return err
	}
	defer gen.Close()
	c.log.Debug("ptp client timestamping", "port", c.cfg.Name, "stamps", evStamps.Chosen().String())

	v6 := local.Is6() && !local.Is4In6()
	index := map[netip.Addr]int{}
	for i, a := range c.cfg.Servers {
		index[a.Unmap()] = i
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
			readLoop(conn, conn == ev, c.clk, free, rx, done)
		}()
	}
	defer func() {
		close(done)
		ev.Close()
		gen.Close()
		wg.Wait()
	}()

	e := engine.NewClient(c.cfg.Engine, c.clk.NowNS())
	timer := time.NewTimer(0)
	defer timer.Stop()
	var sendGen uint64
	txSrc := hwts.SourceUser
	var samples []discipline.Sample
	for {
		// Send what the engine wants sent; a Delay_Req's transmit stamp is
		// fed back, which may make more to do.
		for {
			rd := e.Ready()
			samples = append(samples[:0], rd.Samples...)
			c.Stats.Rejected.Add(uint64(len(rd.Rejected)))
			for _, err := range rd.Rejected {
				c.log.Debug("ptp message rejected", "port", c.cfg.Name, "err", err)
			}
			evID, evSent := uint32(0), false
			for _, d := range rd.Send {
				dst, conn := netip.AddrPortFrom(c.cfg.Servers[d.Server], c.cfg.ServerGeneralPort), gen
				var id uint32
				if d.Event {
					dst, conn = netip.AddrPortFrom(c.cfg.Servers[d.Server], c.cfg.ServerEventPort), ev
					id = evStamps.NextTxID()
					sendGen = c.gen()
				}
				if _, err := conn.WriteToUDPAddrPort(udp6Pad(d.Data, v6), dst); err != nil {
					c.log.Debug("ptp send", "port", c.cfg.Name, "to", dst, "err", err)
					continue
				}
				c.Stats.Sent.Add(1)
				if d.Event {
					evID, evSent = id, true
				}
			}
			e.Advance()
			if err := c.emit(ctx, out, samples, sendGen, txSrc); err != nil {
				return nil
			}
			if !evSent {
				break
			}
			txSrc = hwts.SourceUser
			t1, ok := txStamp(evStamps, evID, c.cfg.TxTimeout, c.clk.NowNS)
			if !ok {
				c.Stats.TxStampsMissing.Add(1)
				break
			}
			txSrc = hwts.SourceSoftware
			e.Step(c.clk.NowNS(), engine.Input{Kind: engine.InputTxStamp, TxNS: t1})
		}
		c.Stats.Selected.Store(int32(e.Selected()))
		timer.Reset(max(time.Duration(e.Ready().DeadlineNS-c.clk.NowNS()), 0))
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
			e.Step(c.clk.NowNS(), engine.Input{Kind: engine.InputTick})
		case p := <-rx:
			if p.closed {
				return fmt.Errorf("ptp: client %s: socket closed", c.cfg.Name)
			}
			c.Stats.Received.Add(1)
			if i, ok := index[p.from]; ok {
				c.Stats.LastRxSource.Store(int32(p.rxSrc))
				e.Step(c.clk.NowNS(), engine.Input{Kind: engine.InputDatagram, Server: i, Event: p.event, Datagram: p.buf[:p.n], RxNS: p.rxNS})
			}
			free <- p
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// emit hands samples to the daemon; an error means ctx ended.
func (c *Client) emit(ctx context.Context, out chan<- Sample, samples []discipline.Sample, gen uint64, txSrc hwts.Source) error {
	for _, s := range samples {
		c.Stats.Samples.Add(1)
		c.Stats.LastDelayNS.Store(s.DelayNS() / 2)
		c.Stats.LastOffsetNS.Store(int64(s.OffsetNS()))
		c.Stats.LastTxSource.Store(int32(txSrc))
		select {
		case out <- Sample{Name: c.cfg.Name, Sample: s, Gen: gen}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// readLoop reads datagrams with their receive stamps (converted to clk)
// and hands them over in preallocated packets until the socket closes or
// done is closed.
func readLoop(conn *net.UDPConn, event bool, clk clock.Reader, free chan *rxPacket, rx chan<- *rxPacket, done <-chan struct{}) {
	oob := make([]byte, oobLen)
	for {
		var p *rxPacket
		select {
		case p = <-free:
		case <-done:
			return
		}
		n, oobn, _, from, err := conn.ReadMsgUDPAddrPort(p.buf[:], oob)
		realtime := time.Now().UnixNano() // before the clock read: late, never early
		now := clk.NowNS()
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
		p.rxNS, p.rxSrc = rxNS(oob[:oobn], realtime, now)
		select {
		case rx <- p:
		case <-done:
			return
		}
	}
}
