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
}

// NewSource prepares a source; Run starts it.
func NewSource(name, addr string, cfg ClientConfig, clk clock.Reader, gen func() uint64, log *slog.Logger) *Source {
	return &Source{Name: name, Addr: addr, cfg: cfg, clk: clk, gen: gen, log: log}
}

// Run polls until ctx ends or the server sends DENY/RSTR.
func (s *Source) Run(ctx context.Context, out chan<- SourceSample) error {
	raddr, err := net.ResolveUDPAddr("udp", s.Addr)
	if err != nil {
		return err
	}
	conn, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if rc, err := conn.SyscallConn(); err == nil {
		_ = enableRxTimestamps(rc) // best effort: without it t4 is a user-space stamp
	}
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
		n := c.Request(req, s.clk.NowNS())
		if _, err := conn.Write(req[:n]); err != nil {
			s.log.Debug("ntp send", "source", s.Name, "err", err)
			continue
		}
		s.Stats.Sent.Add(1)
		_ = conn.SetReadDeadline(time.Now().Add(min(2*time.Second, wait)))
		for {
			m, oobn, _, _, err := conn.ReadMsgUDPAddrPort(buf, oob)
			realtime := time.Now().UnixNano() // before the clock read: see rxAt
			t4 := rxAt(realtime, s.clk.NowNS(), oob[:oobn])
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
			s.Stats.Valid.Add(1)
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
