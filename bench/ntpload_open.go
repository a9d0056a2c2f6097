package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/internal/mmsg"
)

// NTPOpenLoad is an open-loop load: requests leave on a fixed schedule
// whatever the server answers (unlike NTPLoad, whose window of requests in
// flight waits for replies), so a slow server sees the offered rate, as it
// would from many independent clients.
type NTPOpenLoad struct {
	Addr     string        // host:port, loopback or a private test address
	Rate     float64       // requests per second offered, over all clients (≤ 10⁶)
	Clients  int           // sockets (distinct source ports), each a sender and a receiver goroutine
	Duration time.Duration // the schedule's length (≤ 10 min)
}

// NTPOpenLoadResult is what an open-loop load achieved. Sent falls short of
// the schedule when the generator (or the socket's send buffer) could not
// keep up: Late counts the requests it gave up on, so Sent + Late is the
// schedule.
type NTPOpenLoadResult struct {
	Sent, Late, Received int64
	Elapsed              time.Duration
	SendRate, ReplyRate  float64 // per second of the schedule (Duration)
}

func (r NTPOpenLoadResult) String() string {
	return fmt.Sprintf("sent %d (%.0f/s; %d late, not sent), received %d (%.0f/s) in %v",
		r.Sent, r.SendRate, r.Late, r.Received, r.ReplyRate, r.Elapsed.Round(time.Millisecond))
}

// RunNTPLoadOpen offers cfg.Rate NTPv4 client requests per second for
// cfg.Duration, in batches (sendmmsg) every millisecond, and counts the
// replies (recvmmsg). A sender more than 10 ms behind its schedule drops
// the backlog (counted in Late) instead of bursting it. Replies still in
// flight 200 ms after the schedule ends are not waited for.
func RunNTPLoadOpen(ctx context.Context, cfg NTPOpenLoad) (NTPOpenLoadResult, error) {
	raddr, err := NTPLoad{Addr: cfg.Addr, Clients: cfg.Clients, InFlight: 1, Duration: cfg.Duration}.check(1)
	if err != nil {
		return NTPOpenLoadResult{}, err
	}
	if !(cfg.Rate > 0 && cfg.Rate <= 1e6) {
		return NTPOpenLoadResult{}, fmt.Errorf("bench: open-loop rate must be in (0, 10⁶] requests/s, got %v", cfg.Rate)
	}
	const (
		maxBatch = 64
		tick     = time.Millisecond
		maxLag   = 10 * time.Millisecond
		drain    = 200 * time.Millisecond
	)
	perClient := cfg.Rate / float64(cfg.Clients)
	conns := make([]*net.UDPConn, 0, cfg.Clients)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range cfg.Clients {
		c, err := net.DialUDP("udp", nil, raddr)
		if err != nil {
			return NTPOpenLoadResult{}, err
		}
		_ = c.SetReadBuffer(4 << 20)
		_ = c.SetWriteBuffer(4 << 20)
		conns = append(conns, c)
	}
	var sent, late, recv atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 2*cfg.Clients)
	start := time.Now()
	sendCtx, cancelSend := context.WithTimeout(ctx, cfg.Duration)
	defer cancelSend()
	for _, c := range conns {
		rc, err := c.SyscallConn()
		if err != nil {
			return NTPOpenLoadResult{}, err
		}
		wg.Add(2)
		go func() { // receiver: until the schedule ends plus the drain
			defer wg.Done()
			var (
				resps [maxBatch][128]byte
				iov   [maxBatch]unix.Iovec
				hdr   [maxBatch]mmsg.Hdr
			)
			for j := range maxBatch {
				iov[j].Base = &resps[j][0]
				iov[j].SetLen(len(resps[j]))
				hdr[j].Msghdr.Iov, hdr[j].Msghdr.Iovlen = &iov[j], 1
			}
			end := start.Add(cfg.Duration + drain)
			_ = c.SetReadDeadline(end)
			var n int
			read := func(fd uintptr) bool {
				k, e := mmsg.Recv(fd, hdr[:], 0)
				if e == unix.EAGAIN {
					return false
				}
				n = k
				return true
			}
			for {
				n = 0
				if err := rc.Read(read); err != nil {
					if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, net.ErrClosed) && !isTimeout(err) {
						errc <- err
					}
					return
				}
				for j := range n {
					if hdr[j].Len >= 48 {
						recv.Add(1)
					}
				}
			}
		}()
		go func() { // sender: on schedule until sendCtx ends
			defer wg.Done()
			var (
				req [48]byte
				iov [maxBatch]unix.Iovec
				hdr [maxBatch]mmsg.Hdr
			)
			req[0] = 4<<3 | 3 // LI 0, version 4, mode client
			for j := range maxBatch {
				iov[j].Base = &req[0]
				iov[j].SetLen(len(req))
				hdr[j].Msghdr.Iov, hdr[j].Msghdr.Iovlen = &iov[j], 1
			}
			var done int64 // requests sent or given up on
			var want, out int
			var full bool
			write := func(fd uintptr) bool {
				k, e := mmsg.Send(fd, hdr[:want], 0)
				if e == unix.EAGAIN || e == unix.ENOBUFS {
					full = true
					return true
				}
				if e != 0 {
					full = true // a refused datagram (ECONNREFUSED): try again next tick
					return true
				}
				out = k
				return true
			}
			t := time.NewTicker(tick)
			defer t.Stop()
			for {
				el := time.Since(start)
				due := int64(perClient * min(el, cfg.Duration).Seconds())
				if lag := due - done; lag > int64(perClient*maxLag.Seconds()) {
					give := lag - int64(perClient*maxLag.Seconds())
					late.Add(give)
					done += give
				}
				full = false
				for done < due && !full {
					want, out = int(min(due-done, maxBatch)), 0
					if err := rc.Write(write); err != nil {
						return
					}
					sent.Add(int64(out))
					done += int64(out)
				}
				if el >= cfg.Duration || sendCtx.Err() != nil {
					if due > done {
						late.Add(due - done)
					}
					return
				}
				select {
				case <-sendCtx.Done():
				case <-t.C:
				}
			}
		}()
	}
	wg.Wait()
	el := min(time.Since(start), cfg.Duration+drain)
	if err := ctx.Err(); err != nil {
		return NTPOpenLoadResult{}, err // cut short: the rates would mislead
	}
	select {
	case err := <-errc:
		return NTPOpenLoadResult{}, err
	default:
	}
	r := NTPOpenLoadResult{Sent: sent.Load(), Late: late.Load(), Received: recv.Load(), Elapsed: el}
	r.SendRate = float64(r.Sent) / cfg.Duration.Seconds()
	r.ReplyRate = float64(r.Received) / cfg.Duration.Seconds()
	return r, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
