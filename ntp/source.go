package ntp

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/meridiantime/meridian/clock"
	"github.com/meridiantime/meridian/discipline"
	"github.com/meridiantime/meridian/hwts"
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
}

// Source polls one NTP server over UDP with user-space timestamps: t1 is read
// just before the send and t4 just after the receive returns, so any local
// latency lies inside [t1, t4] and inside the bound's δ/2.
type Source struct {
	Name  string
	Addr  string
	Stats SourceStats

	cfg ClientConfig
	clk clock.Reader
	gen func() uint64
	log *slog.Logger

	// Interface and Timestamping select kernel/NIC stamps (package hwts).
	Interface    string
	Timestamping hwts.Mode
	// Dial opens the socket (tests use it to open one inside a network
	// namespace); nil dials normally.
	Dial func(raddr *net.UDPAddr) (*net.UDPConn, error)
}

// NewSource prepares a source; Run starts it.
func NewSource(name, addr string, cfg ClientConfig, clk clock.Reader, gen func() uint64, log *slog.Logger) *Source {
	return &Source{Name: name, Addr: addr, cfg: cfg, clk: clk, gen: gen, log: log}
}

// txAt converts a software TX stamp (CLOCK_REALTIME) to the clock: nowNS
// must be read BEFORE realtimeNS, so a delay between the reads makes the
// result early, never late — what a transmit stamp must be.
func txAt(nowNS, realtimeNS, stampNS int64) (int64, bool) {
	age := realtimeNS - stampNS
	if age < 0 || age > int64(time.Second) {
		return 0, false
	}
	return nowNS - age, true
}

// Run polls until ctx ends or the server sends DENY/RSTR.
func (s *Source) Run(ctx context.Context, out chan<- SourceSample) error {
	raddr, err := net.ResolveUDPAddr("udp", s.Addr)
	if err != nil {
		return err
	}
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
	stamps, err := hwts.Enable(rc, s.Interface, s.Timestamping, nil)
	if err != nil {
		return err
	}
	s.log.Debug("ntp source timestamping", "source", s.Name, "stamps", stamps.Chosen().String())
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	var seed [8]byte
	_, _ = crand.Read(seed[:])
	c := NewClient(s.cfg, binary.LittleEndian.Uint64(seed[:]))
	req := make([]byte, headerLen)
	buf := make([]byte, 1500)
	oob := make([]byte, oobLen)
	wait := time.Duration(0)
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		wait = c.NextInterval()
		gen := s.gen()
		id := stamps.NextTxID()
		n := c.Request(req, s.clk.NowNS()) // user-space t1: read before the send, so early
		if _, err := conn.Write(req[:n]); err != nil {
			s.log.Debug("ntp send", "source", s.Name, "err", err)
			continue
		}
		s.Stats.Sent.Add(1)
		txSrc := hwts.SourceUser
		if stamps.Chosen() == hwts.SourceSoftware {
			if st, ok := stamps.TxStamp(id, 2*time.Millisecond); ok && st.Source == hwts.SourceSoftware {
				now := s.clk.NowNS()
				if t1, ok := txAt(now, time.Now().UnixNano(), st.NS); ok {
					c.SetT1(t1)
					txSrc = hwts.SourceSoftware
				}
			} else {
				s.Stats.TxStampsMissing.Add(1)
			}
		}
		_ = conn.SetReadDeadline(time.Now().Add(min(2*time.Second, wait)))
		for {
			m, oobn, _, _, err := conn.ReadMsgUDPAddrPort(buf, oob)
			realtime := time.Now().UnixNano() // before the clock read: see rxAt
			t4 := s.clk.NowNS()
			rxSrc := hwts.SourceUser
			if st, ok := hwts.ParseRx(oob[:oobn]); ok && st.Source == hwts.SourceSoftware {
				if age := realtime - st.NS; age >= 0 && age < int64(time.Second) {
					t4 -= age
					rxSrc = hwts.SourceSoftware
				}
			}
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					s.Stats.Timeouts.Add(1)
				}
				break // ICMP unreachable or timeout: try at the next poll
			}
			smp, err := c.Response(buf[:m], t4)
			s.Stats.Reach.Store(uint32(c.Reach()))
			if err != nil {
				s.Stats.Rejected.Add(1)
				s.log.Debug("ntp reply rejected", "source", s.Name, "err", err)
				if errors.Is(err, ErrKissStop) {
					s.log.Warn("ntp source stopped by server", "source", s.Name, "err", err)
					return err
				}
				if errors.Is(err, ErrOrigin) || errors.Is(err, ErrNotPending) {
					continue // keep waiting for the real reply
				}
				break
			}
			if ip4 := raddr.IP.To4(); ip4 != nil {
				// For a stratum ≥ 2 server, NTP's reference ID is the IPv4
				// address of its upstream: us → this server.
				smp.RefID = binary.BigEndian.Uint32(ip4)
			}
			s.Stats.Valid.Add(1)
			s.Stats.LastTxSource.Store(int32(txSrc))
			s.Stats.LastRxSource.Store(int32(rxSrc))
			s.Stats.Stratum.Store(uint32(smp.Stratum))
			select {
			case out <- SourceSample{Name: s.Name, Sample: smp, Gen: gen}:
			case <-ctx.Done():
				return nil
			}
			break
		}
	}
}
