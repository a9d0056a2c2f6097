package interop

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/facebook/time/ptp/protocol"
	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/internal/mmsg"
)

// ptpLoadGen is a load generator of n unicast PTP clients on loopback:
// client i is the address 127.1.(i/256).(i%256), all served by two sockets
// bound to 0.0.0.0 on the PTP ports (the grandmaster binds 127.0.0.1, so
// what it sends to 127.1.x.y reaches these), each datagram sent from its
// client's address with IP_PKTINFO, in batches (sendmmsg/recvmmsg).
type ptpLoadGen struct {
	n        int
	ev, gen  *net.UDPConn
	srvEv    unix.RawSockaddrInet4
	srvGen   unix.RawSockaddrInet4
	hdrs     [64]mmsg.Hdr
	iov      [64]unix.Iovec
	oob      [64][unix.SizeofCmsghdr + unix.SizeofInet4Pktinfo + 8]byte
	bufs     [64][128]byte
	received map[protocol.MessageType]int
}

func clientAddr(i int) [4]byte { return [4]byte{127, 1, byte(i >> 8), byte(i)} }

func sockaddr4(a [4]byte, port int) unix.RawSockaddrInet4 {
	sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(port>>8), byte(port)
	return sa
}

// send sends msgs[k] from client from[k] to dst, 64 per system call.
func (g *ptpLoadGen) send(conn *net.UDPConn, dst *unix.RawSockaddrInet4, msgs [][]byte, from []int) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	for start := 0; start < len(msgs); start += len(g.hdrs) {
		k := min(len(g.hdrs), len(msgs)-start)
		for j := range k {
			m, src := msgs[start+j], clientAddr(from[start+j])
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
			return serr
		}
	}
	return nil
}

// drain receives what is waiting on conn (without blocking) and counts it
// by message type.
func (g *ptpLoadGen) drain(conn *net.UDPConn) {
	rc, _ := conn.SyscallConn()
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
			g.received[protocol.SdoIDAndMsgType(g.bufs[j][0]).MsgType()]++
		}
		if n < len(g.hdrs) {
			return
		}
	}
}

// cpuTicks is a process's utime+stime in clock ticks (/proc/PID/stat).
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s, nil
}

func rssKB(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}

// BenchmarkPTPGrandmasterLoad: meridiand's grandmaster (one worker,
// pinned to CPU 1) serves PTP_LOAD_CLIENTS (default 20000) unicast clients
// at 1 Sync/s (with Follow_Up) and 1 Delay_Req/s for 10 s, generated here
// (pinned to CPU 0). It reports the clients one server CPU-second serves
// (clients/core: clients × seconds ÷ server CPU seconds, as ran, with every
// reply counted) and the server's resident memory before and after. Run:
//
//	go test -run '^$' -bench PTPGrandmasterLoad -benchtime 1x ./interop/
func BenchmarkPTPGrandmasterLoad(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("binds the PTP ports' numbers and pins CPUs: run as root")
	}
	n := 20000
	if v, err := strconv.Atoi(os.Getenv("PTP_LOAD_CLIENTS")); err == nil && v > 0 && v <= 65536 {
		n = v
	}
	const seconds = 10
	dir := b.TempDir()
	bin := filepath.Join(dir, "meridiand")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/meridiantime/meridian/cmd/meridiand").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	// Ports free a moment ago.
	free := func() int {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	var evPort, genPort int
	for evPort == genPort {
		evPort, genPort = free(), free()
	}
	cfg := filepath.Join(dir, "m.yaml")
	_ = os.WriteFile(cfg, []byte(fmt.Sprintf(`local_stratum: 1
ptp_server: {listen: ["127.0.0.1"], event_port: %d, general_port: %d, workers: 1, max_clients: 65536, timestamping: software}
metrics: {listen: ""}
grpc: {listen: []}
shm: {path: %s}
state_dir: %s
`, evPort, genPort, filepath.Join(dir, "tt.shm"), filepath.Join(dir, "state"))), 0o644)
	d := exec.Command(bin, "--config", cfg)
	d.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = d.Process.Kill(); _ = d.Wait() }()
	_ = exec.Command("taskset", "-a", "-p", "-c", "1", strconv.Itoa(d.Process.Pid)).Run()
	_ = exec.Command("taskset", "-a", "-p", "-c", "0", strconv.Itoa(os.Getpid())).Run()
	time.Sleep(500 * time.Millisecond)

	g := &ptpLoadGen{n: n, received: map[protocol.MessageType]int{},
		srvEv: sockaddr4([4]byte{127, 0, 0, 1}, evPort), srvGen: sockaddr4([4]byte{127, 0, 0, 1}, genPort)}
	// SO_REUSEPORT: the server's sockets on 127.0.0.1 hold the same ports.
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		_ = c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
		return serr
	}}
	listen := func(port int) *net.UDPConn {
		pc, err := lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf("0.0.0.0:%d", port))
		if err != nil {
			b.Fatal(err)
		}
		return pc.(*net.UDPConn)
	}
	g.ev, g.gen = listen(evPort), listen(genPort)
	defer g.ev.Close()
	defer g.gen.Close()
	for _, c := range []*net.UDPConn{g.ev, g.gen} {
		_ = c.SetReadBuffer(8 << 20)
	}
	// One Signaling request (Sync and Delay_Resp at 1/s for 300 s) and
	// one Delay_Req per client.
	reqs, dreqs, from := make([][]byte, n), make([][]byte, n), make([]int, n)
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
		binary.BigEndian.PutUint16(reqs[i][2:], uint16(k))
		reqs[i] = reqs[i][:k]
		dr := protocol.SyncDelayReq{Header: protocol.Header{SdoIDAndMsgType: protocol.NewSdoIDAndMsgType(protocol.MessageDelayReq, 0),
			Version: 2, MessageLength: 44, FlagField: protocol.FlagUnicast, SourcePortIdentity: id}}
		dreqs[i] = make([]byte, 44)
		_, _ = dr.MarshalBinaryTo(dreqs[i])
		from[i] = i
	}
	// Negotiate 200 clients at a time, each chunk once the previous one's
	// grants came back.
	for s := 0; s < n; s += 200 {
		e := min(s+200, n)
		if err := g.send(g.gen, &g.srvGen, reqs[s:e], from[s:e]); err != nil {
			b.Fatal(err)
		}
		for wait := time.Now().Add(2 * time.Second); g.received[protocol.MessageSignaling] < e && time.Now().Before(wait); {
			time.Sleep(2 * time.Millisecond)
			g.drain(g.gen)
			g.drain(g.ev)
		}
	}
	time.Sleep(100 * time.Millisecond)
	g.drain(g.gen)
	g.drain(g.ev)
	if grants := g.received[protocol.MessageSignaling]; grants != n {
		b.Fatalf("%d grant replies for %d clients", grants, n)
	}
	g.received = map[protocol.MessageType]int{}
	rss0 := rssKB(d.Process.Pid)
	cpu0, err := cpuTicks(d.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	// Every 10 ms a hundredth of the clients send their Delay_Req.
	b.ResetTimer()
	start := time.Now()
	for tick := 0; tick < seconds*100; tick++ {
		s, e := tick%100*n/100, (tick%100+1)*n/100
		if err := g.send(g.ev, &g.srvEv, dreqs[s:e], from[s:e]); err != nil {
			b.Fatal(err)
		}
		g.drain(g.gen)
		g.drain(g.ev)
		time.Sleep(time.Until(start.Add(time.Duration(tick+1) * 10 * time.Millisecond)))
	}
	cpu1, _ := cpuTicks(d.Process.Pid)
	elapsed := time.Since(start)
	b.StopTimer()
	time.Sleep(200 * time.Millisecond)
	g.drain(g.gen)
	g.drain(g.ev)
	rss1 := rssKB(d.Process.Pid)
	cpuS := float64(cpu1-cpu0) / 100 // USER_HZ
	syncs, fus, drs := g.received[protocol.MessageSync], g.received[protocol.MessageFollowUp], g.received[protocol.MessageDelayResp]
	b.Logf("%d clients, %v: %d Sync, %d Follow_Up, %d Delay_Resp received (want ≈ %d each); server CPU %.2f s; RSS %d → %d kB",
		n, elapsed.Round(time.Millisecond), syncs, fus, drs, n*seconds, cpuS, rss0, rss1)
	if drs < n*seconds*95/100 || fus < syncs*95/100 || syncs < n*(seconds-1) {
		b.Fatalf("the server did not keep up: %d Sync, %d Follow_Up, %d Delay_Resp for %d client-seconds", syncs, fus, drs, n*seconds)
	}
	if cpuS > 0 {
		b.ReportMetric(float64(n)*elapsed.Seconds()/cpuS, "clients/core")
	}
	b.ReportMetric(float64(rss1-rss0), "rss-growth-kB")
}
