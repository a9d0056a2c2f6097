package bench

import (
	"context"
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/internal/mmsg"
)

// RunNTPLoadBatched is RunNTPLoad with sendmmsg/recvmmsg: each client keeps
// InFlight (≤ 64) requests outstanding and refills them in batches, so the
// generator is not the bottleneck of a 2-core measurement.
func RunNTPLoadBatched(ctx context.Context, cfg NTPLoad) (NTPLoadResult, error) {
	const maxBatch = 64
	raddr, err := cfg.check(maxBatch)
	if err != nil {
		return NTPLoadResult{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var sent, recv, bad, unsync atomic.Int64
	lats := make([][]time.Duration, cfg.Clients)
	start := time.Now()
	check := replyCheck{start: start}
	var wg sync.WaitGroup
	for i := 0; i < cfg.Clients; i++ {
		conn, err := net.DialUDP("udp", nil, raddr)
		if err != nil {
			cancel()
			wg.Wait()
			return NTPLoadResult{}, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
			defer stop()
			rc, err := conn.SyscallConn()
			if err != nil {
				return
			}
			var (
				reqs  [maxBatch][48]byte
				resps [maxBatch][128]byte
				txIov [maxBatch]unix.Iovec
				rxIov [maxBatch]unix.Iovec
				tx    [maxBatch]mmsg.Hdr
				rx    [maxBatch]mmsg.Hdr
			)
			for j := 0; j < maxBatch; j++ {
				reqs[j][0] = 4<<3 | 3
				txIov[j].Base, rxIov[j].Base = &reqs[j][0], &resps[j][0]
				txIov[j].SetLen(48)
				rxIov[j].SetLen(128)
				tx[j].Msghdr.Iov, tx[j].Msghdr.Iovlen = &txIov[j], 1
				rx[j].Msghdr.Iov, rx[j].Msghdr.Iovlen = &rxIov[j], 1
			}
			var nSend, nRecv int
			send := func(fd uintptr) bool {
				off := 0
				for off < nSend {
					n, e := mmsg.Send(fd, tx[off:nSend], 0)
					if e == unix.EAGAIN {
						return false
					}
					if e != 0 {
						return true
					}
					off += n
				}
				return true
			}
			recvf := func(fd uintptr) bool {
				n, e := mmsg.Recv(fd, rx[:], 0)
				if e == unix.EAGAIN {
					return false
				}
				nRecv = n
				return true
			}
			burst := func(k int) bool {
				if cfg.MaxRequests > 0 {
					if left := cfg.MaxRequests - sent.Add(int64(k)); left < 0 {
						k += int(left)
					}
				} else {
					sent.Add(int64(k))
				}
				if k <= 0 {
					return false
				}
				now := uint64(time.Since(start))
				for j := 0; j < k; j++ {
					binary.BigEndian.PutUint64(reqs[j][40:], now)
				}
				nSend = k
				return rc.Write(send) == nil
			}
			if !burst(cfg.InFlight) {
				return
			}
			for ctx.Err() == nil {
				_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				nRecv = 0
				if err := rc.Read(recvf); err != nil {
					if ctx.Err() != nil {
						return
					}
					if !burst(cfg.InFlight) { // replies lost: refill the window
						return
					}
					continue
				}
				el, wall := time.Since(start), time.Now().UnixNano()
				good, unsynced := 0, 0
				for j := 0; j < nRecv; j++ {
					reply := resps[j][:min(int(rx[j].Len), len(resps[j]))]
					if lat, ok := check.check(reply, el, wall); ok {
						lats[i] = append(lats[i], lat)
						good++
					} else if unsynchronized(reply) {
						unsynced++
					}
				}
				recv.Add(int64(good))
				unsync.Add(int64(unsynced))
				bad.Add(int64(nRecv - good - unsynced))
				if nRecv > 0 && !burst(nRecv) {
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	all := mergeLatencies(lats)
	r := NTPLoadResult{Sent: sent.Load(), Received: recv.Load(), Bad: bad.Load(), Unsynchronized: unsync.Load(), Elapsed: el}
	if cfg.MaxRequests > 0 {
		r.Sent = min(r.Sent, cfg.MaxRequests)
	}
	r.RepliesPerSecond = float64(r.Received) / el.Seconds()
	r.LatencyP50, r.LatP99 = all.q(500), all.q(990)
	return r, nil
}
