package ptpload

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/facebook/time/ptp/protocol"
	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/bench"
	"github.com/meridiantime/meridian/internal/mmsg"
)

// MaxClients is the most clients a Gen serves: one address each in a /16.
const MaxClients = 65000

// MaxSeconds bounds a run's load phase.
const MaxSeconds = 600

const (
	batch          = 64
	chunk          = 200              // clients negotiated at a time
	chunkWait      = 2 * time.Second  // per chunk, for its grants
	negotiateLimit = 60 * time.Second // for all chunks together
)

// Gen generates the load of Clients unicast PTP clients against the
// grandmaster at ServerEvent/ServerGeneral. Client i sends from the
// address Base[0].Base[1].(i+1)>>8.(i+1)&255, which must be local to the
// namespace where Listen runs and routed there from the server.
type Gen struct {
	Clients       int
	Base          [2]byte
	ServerEvent   netip.AddrPort
	ServerGeneral netip.AddrPort
	// Timer, when set, is reset as the load phase starts and stopped as it
	// ends (a *testing.B, so ns/op covers the load alone).
	Timer interface {
		ResetTimer()
		StopTimer()
	}
	// Progress, when set, is called as the run advances: phase
	// "negotiate" with clients asked so far, then "load" with seconds done.
	Progress func(phase string, done, total int)

	ev, gen        *net.UDPConn
	srvEv, srvGen  unix.RawSockaddrInet4
	hdrs           [batch]mmsg.Hdr
	iov            [batch]unix.Iovec
	oob            [batch][unix.SizeofCmsghdr + unix.SizeofInet4Pktinfo + 8]byte
	bufs           [batch][128]byte
	received       [16]int
	granted        [16]int // GRANT_UNICAST_TRANSMISSION TLVs with a duration, by message type
	grantsRejected int     // grants with duration 0 (refusals)
}

// Result is one run's outcome: what the clients received and what the
// server spent.
type Result struct {
	Server  string `json:"server"`
	Clients int    `json:"clients"`
	Seconds int    `json:"seconds"` // load phase asked for

	SyncGrants      int `json:"sync_grants"`
	DelayRespGrants int `json:"delay_resp_grants"`
	Refusals        int `json:"refusals"` // grants of duration 0

	Syncs      int `json:"syncs"`
	FollowUps  int `json:"follow_ups"`
	DelayResps int `json:"delay_resps"`

	ElapsedS   float64 `json:"elapsed_s"`
	CPUSeconds float64 `json:"cpu_s"` // server utime+stime during the load phase
	RSSStartKB int64   `json:"rss_start_kb"`
	RSSEndKB   int64   `json:"rss_end_kb"`

	// Derived (Derive): served fractions of clients × seconds, client-
	// seconds and replies (Sync + Follow_Up + Delay_Resp) per server
	// CPU-second, and the server's CPU use in % of one CPU.
	SyncServed                float64 `json:"sync_served"`
	DelayRespServed           float64 `json:"delay_resp_served"`
	ClientSecondsPerCPUSecond float64 `json:"client_seconds_per_cpu_second"`
	RepliesPerCPUSecond       float64 `json:"replies_per_cpu_second"`
	CPUPercent                float64 `json:"cpu_percent"`
}

// Derive fills the derived fields from the counts.
func (r *Result) Derive() {
	want := float64(r.Clients * r.Seconds)
	r.SyncServed, r.DelayRespServed = 0, 0
	if want > 0 {
		r.SyncServed = float64(min(r.Syncs, r.FollowUps)) / want
		r.DelayRespServed = float64(r.DelayResps) / want
	}
	r.ClientSecondsPerCPUSecond, r.RepliesPerCPUSecond, r.CPUPercent = 0, 0, 0
	if r.CPUSeconds > 0 {
		r.ClientSecondsPerCPUSecond = float64(min(r.FollowUps, r.DelayResps)) / r.CPUSeconds
		r.RepliesPerCPUSecond = float64(r.Syncs+r.FollowUps+r.DelayResps) / r.CPUSeconds
	}
	if r.ElapsedS > 0 {
		r.CPUPercent = 100 * r.CPUSeconds / r.ElapsedS
	}
}

func (r Result) String() string {
	return fmt.Sprintf("%d clients (%d Sync and %d Delay_Resp grants, %d refusals), %.3f s: %d Sync, %d Follow_Up, %d Delay_Resp received (want ≈ %d each); server CPU %.2f s → %.0f client-seconds per CPU-second; RSS %d → %d kB",
		r.Clients, r.SyncGrants, r.DelayRespGrants, r.Refusals, r.ElapsedS, r.Syncs, r.FollowUps, r.DelayResps, r.Clients*r.Seconds, r.CPUSeconds, r.ClientSecondsPerCPUSecond, r.RSSStartKB, r.RSSEndKB)
}

// countGrants counts the GRANT_UNICAST_TRANSMISSION TLVs in a Signaling
// message m: by message type when their duration is > 0, as refusals
// otherwise. A malformed TLV ends the count.
func (g *Gen) countGrants(m []byte) {
	const grantTLV = 0x0005
	for off := 44; off+4 <= len(m); {
		typ, l := binary.BigEndian.Uint16(m[off:]), int(binary.BigEndian.Uint16(m[off+2:]))
		if off+4+l > len(m) {
			return
		}
		if typ == grantTLV && l >= 8 {
			if binary.BigEndian.Uint32(m[off+6:]) > 0 {
				g.granted[m[off+4]>>4]++
			} else {
				g.grantsRejected++
			}
		}
		off += 4 + l
	}
}

func (g *Gen) clientAddr(i int) [4]byte {
	i++ // never base.0.0
	return [4]byte{g.Base[0], g.Base[1], byte(i >> 8), byte(i)}
}

func sockaddr4(ap netip.AddrPort) unix.RawSockaddrInet4 {
	sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ap.Addr().As4()}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(ap.Port()>>8), byte(ap.Port())
	return sa
}

// send sends msgs[k] from client from[k] to dst, 64 per system call.
func (g *Gen) send(conn *net.UDPConn, dst *unix.RawSockaddrInet4, msgs [][]byte, from []int) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	for start := 0; start < len(msgs); start += len(g.hdrs) {
		k := min(len(g.hdrs), len(msgs)-start)
		for j := range k {
			m, src := msgs[start+j], g.clientAddr(from[start+j])
			g.iov[j].Base = &m[0]
			g.iov[j].SetLen(len(m))
			o := g.oob[j][:]
			h := (*unix.Cmsghdr)(unsafe.Pointer(&o[0]))
			h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
			h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
			pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&o[unix.CmsgLen(0)]))
			*pi = unix.Inet4Pktinfo{Spec_dst: src}
			mh := &g.hdrs[j].Msghdr
			mh.Name, mh.Namelen = (*byte)(unsafe.Pointer(dst)), unix.SizeofSockaddrInet4
			mh.Iov, mh.Iovlen = &g.iov[j], 1
			mh.Control = &o[0]
			mh.SetControllen(unix.CmsgSpace(unix.SizeofInet4Pktinfo))
		}
		sent := 0
		var serr syscall.Errno
		if err := rc.Write(func(fd uintptr) bool {
			for sent < k {
				n, e := mmsg.Send(fd, g.hdrs[sent:k], 0)
				if e == unix.EAGAIN {
					return false
				}
				if e != 0 {
					serr = e
					return true
				}
				sent += n
			}
			return true
		}); err != nil {
			return err
		}
		if serr != 0 {
			return fmt.Errorf("ptpload: sendmmsg to %v: %w", dst.Addr, serr)
		}
	}
	return nil
}

// drain receives what is waiting on conn (without blocking) and counts it
// by message type.
func (g *Gen) drain(conn *net.UDPConn) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return
	}
	for j := range g.hdrs {
		g.iov[j].Base = &g.bufs[j][0]
		g.iov[j].SetLen(len(g.bufs[j]))
		mh := &g.hdrs[j].Msghdr
		mh.Name, mh.Namelen, mh.Control, mh.Controllen = nil, 0, nil, 0
		mh.Iov, mh.Iovlen = &g.iov[j], 1
	}
	for {
		n := 0
		_ = rc.Read(func(fd uintptr) bool {
			k, e := mmsg.Recv(fd, g.hdrs[:], 0)
			if e == 0 {
				n = k
			}
			return true // never wait
		})
		for j := range n {
			t := protocol.SdoIDAndMsgType(g.bufs[j][0]).MsgType()
			g.received[t&15]++
			if t == protocol.MessageSignaling {
				g.countGrants(g.bufs[j][:min(int(g.hdrs[j].Len), len(g.bufs[j]))])
			}
		}
		if n < len(g.hdrs) {
			return
		}
	}
}

func (g *Gen) drainBoth() {
	g.drain(g.gen)
	g.drain(g.ev)
}

// prepare builds one Signaling request (Sync and Delay_Resp at 1/s for
// 300 s) and one Delay_Req per client.
func (g *Gen) prepare() (reqs, dreqs [][]byte, from []int) {
	n := g.Clients
	reqs, dreqs, from = make([][]byte, n), make([][]byte, n), make([]int, n)
	for i := range n {
		id := protocol.PortIdentity{ClockIdentity: protocol.ClockIdentity(i + 1), PortNumber: 1}
		sig := protocol.Signaling{
			Header: protocol.Header{SdoIDAndMsgType: protocol.NewSdoIDAndMsgType(protocol.MessageSignaling, 0), Version: 2,
				FlagField: protocol.FlagUnicast, SourcePortIdentity: id, LogMessageInterval: 0x7f},
			TargetPortIdentity: protocol.DefaultTargetPortIdentity,
			TLVs: []protocol.TLV{
				&protocol.RequestUnicastTransmissionTLV{TLVHead: protocol.TLVHead{TLVType: protocol.TLVRequestUnicastTransmission, LengthField: 6},
					MsgTypeAndReserved: protocol.NewUnicastMsgTypeAndFlags(protocol.MessageSync, 0), DurationField: 300},
				&protocol.RequestUnicastTransmissionTLV{TLVHead: protocol.TLVHead{TLVType: protocol.TLVRequestUnicastTransmission, LengthField: 6},
					MsgTypeAndReserved: protocol.NewUnicastMsgTypeAndFlags(protocol.MessageDelayResp, 0), DurationField: 300}},
		}
		reqs[i] = make([]byte, 128)
		k, _ := sig.MarshalBinaryTo(reqs[i])
		binary.BigEndian.PutUint16(reqs[i][2:], uint16(k)) // messageLength: facebook/time leaves it unset
		reqs[i] = reqs[i][:k]
		dr := protocol.SyncDelayReq{Header: protocol.Header{SdoIDAndMsgType: protocol.NewSdoIDAndMsgType(protocol.MessageDelayReq, 0),
			Version: 2, MessageLength: 44, FlagField: protocol.FlagUnicast, SourcePortIdentity: id}}
		dreqs[i] = make([]byte, 44)
		_, _ = dr.MarshalBinaryTo(dreqs[i])
		from[i] = i
	}
	return reqs, dreqs, from
}

// reusePortListener listens with SO_REUSEPORT (a server on the same host
// may hold the ports' numbers on another address).
var reusePortListener = net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) }); err != nil {
		return err
	}
	return serr
}}

// Listen opens the clients' two sockets on 0.0.0.0:evPort and
// 0.0.0.0:genPort in the calling thread's network namespace.
func (g *Gen) Listen(evPort, genPort int) error {
	listen := func(port int) (*net.UDPConn, error) {
		pc, err := reusePortListener.ListenPacket(context.Background(), "udp4", fmt.Sprintf("0.0.0.0:%d", port))
		if err != nil {
			return nil, fmt.Errorf("ptpload: clients' socket: %w", err)
		}
		c := pc.(*net.UDPConn)
		_ = c.SetReadBuffer(8 << 20)
		return c, nil
	}
	var err error
	if g.ev, err = listen(evPort); err != nil {
		return err
	}
	if g.gen, err = listen(genPort); err != nil {
		g.ev.Close()
		return err
	}
	return nil
}

// Close closes the clients' sockets.
func (g *Gen) Close() {
	if g.ev != nil {
		g.ev.Close()
		g.gen.Close()
	}
}

func (g *Gen) validate(seconds int) error {
	switch {
	case g.Clients < 1 || g.Clients > MaxClients:
		return fmt.Errorf("ptpload: clients = %d: want 1…%d", g.Clients, MaxClients)
	case seconds < 1 || seconds > MaxSeconds:
		return fmt.Errorf("ptpload: seconds = %d: want 1…%d", seconds, MaxSeconds)
	case !g.ServerEvent.Addr().Is4() || !g.ServerGeneral.Addr().Is4():
		return fmt.Errorf("ptpload: server %v/%v: want IPv4 addresses", g.ServerEvent, g.ServerGeneral)
	case g.ev == nil:
		return errors.New("ptpload: Run before Listen")
	}
	return nil
}

// Run negotiates every client (200 at a time, each chunk once its grants
// came back or 2 s passed, 60 s at most for all), then for seconds sends
// each client's Delay_Req once a second (a hundredth of them every 10 ms)
// while counting what comes back; pid is the server, whose CPU time and
// memory it reads. It stops early, with ctx's error, when ctx ends.
func (g *Gen) Run(ctx context.Context, pid, seconds int) (Result, error) {
	if err := g.validate(seconds); err != nil {
		return Result{}, err
	}
	g.srvEv, g.srvGen = sockaddr4(g.ServerEvent), sockaddr4(g.ServerGeneral)
	g.received, g.granted, g.grantsRejected = [16]int{}, [16]int{}, 0
	progress := func(phase string, done, total int) {
		if g.Progress != nil {
			g.Progress(phase, done, total)
		}
	}
	n := g.Clients
	reqs, dreqs, from := g.prepare()
	negotiateEnd := time.Now().Add(negotiateLimit)
	for s := 0; s < n; s += chunk {
		e := min(s+chunk, n)
		if err := g.send(g.gen, &g.srvGen, reqs[s:e], from[s:e]); err != nil {
			return Result{}, err
		}
		for wait := time.Now().Add(chunkWait); g.granted[protocol.MessageDelayResp] < e && time.Now().Before(wait) && time.Now().Before(negotiateEnd); {
			time.Sleep(2 * time.Millisecond)
			g.drainBoth()
		}
		progress("negotiate", e, n)
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
	}
	time.Sleep(100 * time.Millisecond)
	g.drainBoth()
	r := Result{Clients: n, Seconds: seconds, SyncGrants: g.granted[protocol.MessageSync],
		DelayRespGrants: g.granted[protocol.MessageDelayResp], Refusals: g.grantsRejected}
	g.received = [16]int{}
	r.RSSStartKB, _ = RSSKB(pid)
	cpu0, err := bench.ProcessCPU(pid)
	if err != nil {
		return Result{}, fmt.Errorf("ptpload: server CPU time: %w", err)
	}
	if g.Timer != nil {
		g.Timer.ResetTimer()
	}
	start := time.Now()
	for tick := 0; tick < seconds*100; tick++ {
		s, e := tick%100*n/100, (tick%100+1)*n/100
		if err := g.send(g.ev, &g.srvEv, dreqs[s:e], from[s:e]); err != nil {
			return Result{}, err
		}
		g.drainBoth()
		if tick%100 == 99 {
			progress("load", tick/100+1, seconds)
			if err := ctx.Err(); err != nil {
				return Result{}, err
			}
		}
		time.Sleep(time.Until(start.Add(time.Duration(tick+1) * 10 * time.Millisecond)))
	}
	cpu1, err := bench.ProcessCPU(pid)
	r.ElapsedS = time.Since(start).Seconds()
	if g.Timer != nil {
		g.Timer.StopTimer()
	}
	if err != nil {
		return Result{}, fmt.Errorf("ptpload: server CPU time (did it exit?): %w", err)
	}
	time.Sleep(200 * time.Millisecond)
	g.drainBoth()
	r.RSSEndKB, _ = RSSKB(pid)
	r.CPUSeconds = (cpu1 - cpu0).Seconds()
	r.Syncs, r.FollowUps, r.DelayResps = g.received[protocol.MessageSync], g.received[protocol.MessageFollowUp], g.received[protocol.MessageDelayResp]
	r.Derive()
	return r, nil
}

// RSSKB is a process's resident set (VmRSS in /proc/PID/status), kB.
func RSSKB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("ptpload: %w", err)
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("ptpload: /proc/%d/status: VmRSS %q: %w", pid, v, err)
			}
			return kb, nil
		}
	}
	return 0, fmt.Errorf("ptpload: /proc/%d/status has no VmRSS (a kernel thread or a zombie)", pid)
}

// Pin binds every thread of process pid to cpu (taskset -a -p -c).
func Pin(pid, cpu int) error {
	out, err := execCommand("taskset", "-a", "-p", "-c", strconv.Itoa(cpu), strconv.Itoa(pid)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ptpload: taskset -a -p -c %d %d: %v: %s", cpu, pid, err, strings.TrimSpace(string(out)))
	}
	return nil
}
