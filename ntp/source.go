package ntp

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/meridiantime/meridian/clock"
	"github.com/meridiantime/meridian/discipline"
	"github.com/meridiantime/meridian/hwts"
	"github.com/meridiantime/meridian/ntp/engine"
)

// SourceSample is one validated exchange, tagged with the clock's step
// generation at send time: the daemon drops samples whose exchange spanned
// a step.
type SourceSample struct {
	Name   string
	Sample discipline.Sample
	Gen    uint64
}

// SourceStats are a source's counters.
type SourceStats struct {
	Sent, Valid, Rejected, Timeouts atomic.Uint64
	Reach                           atomic.Uint32
	Stratum                         atomic.Uint32
	// Where the last exchange's t1 and t4 came from (hwts.Source values).
	LastTxSource, LastRxSource atomic.Int32
	TxStampsMissing            atomic.Uint64
	// Interleaved counts samples from interleaved replies (xleave).
	Interleaved atomic.Uint64
	// PollNS is the interval to the next poll, as of the last one.
	PollNS atomic.Int64
	// The last valid reply (chronyc ntpdata): its root delay and
	// dispersion, leap indicator, and the exchange's raw offset and delay.
	LastRootDelayNS, LastRootDispersionNS atomic.Int64
	LastLeap                              atomic.Uint32
	LastOffsetNS, LastDelayNS             atomic.Int64
}

// Source polls one NTP server over UDP with user-space timestamps: t1 is read
// just before the send and t4 just after the receive returns, so any local
// latency lies inside [t1, t4] and inside the bound's δ/2.
type Source struct {
	Name  string
	Addr  string
	Stats SourceStats

	cfg    engine.ClientConfig
	clk    clock.Reader
	gen    func() uint64
	log    *slog.Logger
	advice atomic.Int64 // poll the discipline asks for (ns), see AdvisePoll

	// Interface and Timestamping select kernel/NIC stamps (package hwts).
	Interface    string
	Timestamping hwts.Mode
	// TimestampSys and PHC reach the NIC (nil: the real system calls; no
	// PHC, so no hardware stamps), see hwts.Options.
	TimestampSys hwts.Sys
	PHC          func(index int) (hwts.HardwareClock, error)
	// Resolve turns Addr into an address at every start (nil: the system
	// resolver); tests replace it.
	Resolve func(addr string) (*net.UDPAddr, error)
	// Dial opens the socket (tests use it to open one inside a network
	// namespace); nil dials normally.
	Dial func(raddr *net.UDPAddr) (*net.UDPConn, error)
}

// Errors Run ends with that the caller answers by running it again:
// ErrResolve after a backoff, ErrUnreachable at once (the name is resolved
// afresh). A DENY or RSTR from the server (engine.ErrKissStop) ends it for
// good.
var (
	ErrResolve     = errors.New("ntp source: cannot resolve the address")
	ErrUnreachable = errors.New("ntp source: a named server stopped answering; resolve it again")
)

// NewSource prepares a source; Run starts it.
func NewSource(name, addr string, cfg engine.ClientConfig, clk clock.Reader, gen func() uint64, log *slog.Logger) *Source {
	return &Source{Name: name, Addr: addr, cfg: cfg, clk: clk, gen: gen, log: log}
}

// Run polls until ctx ends or the server sends DENY/RSTR.
func (s *Source) Run(ctx context.Context, out chan<- SourceSample) error {
	resolve := s.Resolve
	if resolve == nil {
		resolve = func(a string) (*net.UDPAddr, error) { return net.ResolveUDPAddr("udp", a) }
	}
	raddr, err := resolve(s.Addr)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrResolve, s.Addr, err)
	}
	host, _, _ := net.SplitHostPort(s.Addr)
	_, ipErr := netip.ParseAddr(host)
	byName := ipErr != nil
	polls := 0
	dial := s.Dial
	if dial == nil {
		dial = func(ra *net.UDPAddr) (*net.UDPConn, error) { return net.DialUDP("udp", nil, ra) }
	}
	conn, err := dial(raddr)
	if err != nil {
		return err
	}
	defer conn.Close()
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	stamps, err := hwts.EnableWith(rc, hwts.Options{Interface: s.Interface, Mode: s.Timestamping, Sys: s.TimestampSys, PHC: s.PHC})
	if err != nil {
		return err
	}
	s.log.Debug("ntp source timestamping", "source", s.Name, "stamps", stamps.Chosen().String())
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	var seed [8]byte
	_, _ = crand.Read(seed[:])
	e := engine.New(s.cfg, binary.LittleEndian.Uint64(seed[:]), s.clk.NowNS())
	var refID uint32
	if ip4 := raddr.IP.To4(); ip4 != nil {
		// For a stratum ≥ 2 server, NTP's reference ID is the IPv4 address
		// of its upstream: us → this server.
		refID = binary.BigEndian.Uint32(ip4)
	}
	buf := make([]byte, 1500)
	oob := make([]byte, oobLen)
	var sendGen, prevGen uint64 // step generations at this send and at the last answered one
	awaiting := false
	txSrc := hwts.SourceUser
	var txID uint32 // OPT_ID of the last request sent
	txPending := false
	collectTx := func() { // once per request sent
		if txPending {
			txPending = false
			txSrc = s.txStamp(e, stamps, txID)
		}
	}
	for {
		if ctx.Err() != nil {
			return nil
		}
		now := s.clk.NowNS()
		e.Step(now, engine.Input{Kind: engine.InputPollAdvice, PollNS: s.advice.Load()})
		e.Step(now, engine.Input{Kind: engine.InputTick})
		if rd := e.Ready(); rd.Send != nil {
			if awaiting {
				s.Stats.Timeouts.Add(1)
			}
			sendGen = s.gen()
			_, err := conn.Write(rd.Send)
			e.Advance()
			// The register shifted at this poll: a source that stopped
			// answering decays to 0 over 8 polls, answered or not.
			s.Stats.Reach.Store(uint32(e.Client().Reach()))
			s.Stats.PollNS.Store(int64(e.Client().Poll()))
			polls++
			if byName && polls > 8 && e.Client().Reach() == 0 {
				// The name may point elsewhere now: the caller resolves
				// it again (chrony does the same for unreachable names).
				return fmt.Errorf("%w: %s (%s)", ErrUnreachable, s.Addr, raddr)
			}
			if err != nil {
				s.log.Debug("ntp send", "source", s.Name, "err", err)
			} else {
				s.Stats.Sent.Add(1)
				awaiting = true
				// The kernel numbers only the datagrams it took (OPT_ID): a
				// failed send must not move the count.
				txID, txPending = stamps.NextTxID(), true
			}
		}
		// The transmit stamp is collected when the reply comes (or at the
		// timeout), not now, as chronyd does: the goroutine goes back to
		// waiting at once rather than working on the CPU that may have to
		// carry the datagram (a virtual NIC, a tunnel). The stamp is the
		// same either way.
		wait := time.Duration(e.Ready().DeadlineNS - s.clk.NowNS())
		_ = conn.SetReadDeadline(time.Now().Add(max(wait, time.Millisecond)))
		for {
			m, oobn, _, _, err := conn.ReadMsgUDPAddrPort(buf, oob)
			realtime, t4, _ := hwts.ClockPair(s.clk.NowNS) // realtime before the clock read: late, never early
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				// Unanswered: the stamp still belongs to the engine's
				// exchange (interleaved mode samples it later).
				collectTx()
				break // deadline (the next poll is due), or ICMP unreachable
			}
			t4, rxSrc := stamps.RxToClock(oob[:oobn], realtime, t4)
			collectTx()
			e.Step(t4, engine.Input{Kind: engine.InputDatagram, Datagram: buf[:m], RxNS: t4})
			rd := e.Ready()
			s.Stats.Reach.Store(uint32(e.Client().Reach()))
			for _, err := range rd.Rejected {
				s.Stats.Rejected.Add(1)
				s.log.Debug("ntp reply rejected", "source", s.Name, "err", err)
				if !errors.Is(err, engine.ErrOrigin) && !errors.Is(err, engine.ErrNotPending) {
					awaiting = false // answered, if uselessly
				}
			}
			samples := append([]discipline.Sample(nil), rd.Samples...)
			inter := append([]bool(nil), rd.Interleaved...)
			if rd.Unsampled > 0 {
				awaiting = false
				prevGen = sendGen
			}
			e.Advance()
			if rd.Stopped != nil {
				s.log.Warn("ntp source stopped by server", "source", s.Name, "err", rd.Stopped)
				return rd.Stopped
			}
			for i, smp := range samples {
				awaiting = false
				smp.RefID = refID
				gen := sendGen
				if inter[i] {
					// The exchange is the previous one: a step since its
					// send must drop it.
					gen = prevGen
					s.Stats.Interleaved.Add(1)
				}
				prevGen = sendGen
				s.Stats.Valid.Add(1)
				s.Stats.LastTxSource.Store(int32(txSrc))
				s.Stats.LastRxSource.Store(int32(rxSrc))
				s.Stats.Stratum.Store(uint32(smp.Stratum))
				s.Stats.LastRootDelayNS.Store(smp.RootDelayNS)
				s.Stats.LastRootDispersionNS.Store(smp.RootDispersionNS)
				s.Stats.LastLeap.Store(uint32(smp.Leap))
				s.Stats.LastOffsetNS.Store(int64(smp.OffsetNS()))
				s.Stats.LastDelayNS.Store(smp.DelayNS())
				select {
				case out <- SourceSample{Name: s.Name, Sample: smp, Gen: gen}:
				case <-ctx.Done():
					return nil
				}
			}
		}
	}
}

// AdvisePoll hands the discipline's poll advice for this source (its
// SourceReport.PollTargetNS) to the source's engine at its next poll. Safe
// to call from any goroutine.
func (s *Source) AdvisePoll(ns int64) { s.advice.Store(ns) }

// txStamp waits briefly for the kernel's transmit stamp of request id and
// hands it to the engine; it returns where t1 came from.
func (s *Source) txStamp(e *engine.Engine, stamps *hwts.Socket, id uint32) hwts.Source {
	if stamps.Chosen() == hwts.SourceUser {
		return hwts.SourceUser
	}
	t1, src, ok := stamps.TxToClock(id, 2*time.Millisecond, s.clk.NowNS)
	if !ok {
		s.Stats.TxStampsMissing.Add(1)
		return hwts.SourceUser
	}
	e.Step(s.clk.NowNS(), engine.Input{Kind: engine.InputTxStamp, TxNS: t1})
	e.Advance()
	return src
}
