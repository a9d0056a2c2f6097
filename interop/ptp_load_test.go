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

	"github.com/meridiantime/meridian/impair"
	"github.com/meridiantime/meridian/internal/mmsg"
)

// ptpLoadGen is a load generator of n unicast PTP clients on loopback:
// client i is the address 127.1.(i/256).(i%256), all served by two sockets
// bound to 0.0.0.0 on the PTP ports (the grandmaster binds 127.0.0.1, so
// what it sends to 127.1.x.y reaches these), each datagram sent from its
// client's address with IP_PKTINFO, in batches (sendmmsg/recvmmsg).
type ptpLoadGen struct {
	n        int
	base     [2]byte // client i is base.(i/256).(i%256)
	ev, gen  *net.UDPConn
	srvEv    unix.RawSockaddrInet4
	srvGen   unix.RawSockaddrInet4
	hdrs     [64]mmsg.Hdr
	iov      [64]unix.Iovec
	oob      [64][unix.SizeofCmsghdr + unix.SizeofInet4Pktinfo + 8]byte
	bufs     [64][128]byte
	received map[protocol.MessageType]int
	granted  map[protocol.MessageType]int // GRANT_UNICAST_TRANSMISSION TLVs with a duration
}

// countGrants counts the grants (duration > 0) in a Signaling message.
func (g *ptpLoadGen) countGrants(m []byte) {
	const grantTLV = 0x0005
	for off := 44; off+4 <= len(m); {
		typ, l := binary.BigEndian.Uint16(m[off:]), int(binary.BigEndian.Uint16(m[off+2:]))
		if off+4+l > len(m) {
			return
		}
		if typ == grantTLV && l >= 8 && binary.BigEndian.Uint32(m[off+6:]) > 0 {
			g.granted[protocol.MessageType(m[off+4]>>4)]++
		}
		off += 4 + l
	}
}

func (g *ptpLoadGen) clientAddr(i int) [4]byte {
	i++ // never base.0.0
	return [4]byte{g.base[0], g.base[1], byte(i >> 8), byte(i)}
}

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
			t := protocol.SdoIDAndMsgType(g.bufs[j][0]).MsgType()
			g.received[t]++
			if t == protocol.MessageSignaling {
				g.countGrants(g.bufs[j][:min(int(g.hdrs[j].Len), len(g.bufs[j]))])
			}
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

// ptpLoad is one run's outcome: what the clients received and what the
// server spent.
type ptpLoad struct {
	n, seconds          int
	elapsed             time.Duration
	cpuS                float64
	syncs, fus, drs     int
	syncGrants, drGrant int
	rss0, rss1          int64
}

// clientsPerCore is the client-seconds served (a Sync with its Follow_Up
// and a Delay_Resp each) per server CPU-second, as ran.
func (r ptpLoad) clientsPerCore() float64 {
	if r.cpuS <= 0 {
		return 0
	}
	return float64(min(r.fus, r.drs)) / r.cpuS
}

func (r ptpLoad) String() string {
	return fmt.Sprintf("%d clients (%d Sync and %d Delay_Resp grants), %v: %d Sync, %d Follow_Up, %d Delay_Resp received (want ≈ %d each); server CPU %.2f s → %.0f clients/core; RSS %d → %d kB",
		r.n, r.syncGrants, r.drGrant, r.elapsed.Round(time.Millisecond), r.syncs, r.fus, r.drs, r.n*r.seconds, r.cpuS, r.clientsPerCore(), r.rss0, r.rss1)
}

// prepare builds one Signaling request (Sync and Delay_Resp at 1/s for
// 300 s) and one Delay_Req per client.
func (g *ptpLoadGen) prepare() (reqs, dreqs [][]byte, from []int) {
	n := g.n
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
		binary.BigEndian.PutUint16(reqs[i][2:], uint16(k))
		reqs[i] = reqs[i][:k]
		dr := protocol.SyncDelayReq{Header: protocol.Header{SdoIDAndMsgType: protocol.NewSdoIDAndMsgType(protocol.MessageDelayReq, 0),
			Version: 2, MessageLength: 44, FlagField: protocol.FlagUnicast, SourcePortIdentity: id}}
		dreqs[i] = make([]byte, 44)
		_, _ = dr.MarshalBinaryTo(dreqs[i])
		from[i] = i
	}
	return reqs, dreqs, from
}

// run negotiates every client (200 at a time, each chunk once its grants
// came back or 2 s passed), then for seconds sends each client's Delay_Req
// once a second (a hundredth of them every 10 ms) while counting what
// comes back; pid is the server, whose CPU time and memory it reads.
func (g *ptpLoadGen) run(b *testing.B, pid, seconds int) ptpLoad {
	g.received, g.granted = map[protocol.MessageType]int{}, map[protocol.MessageType]int{}
	n := g.n
	reqs, dreqs, from := g.prepare()
	for s := 0; s < n; s += 200 {
		e := min(s+200, n)
		if err := g.send(g.gen, &g.srvGen, reqs[s:e], from[s:e]); err != nil {
			b.Fatal(err)
		}
		for wait := time.Now().Add(2 * time.Second); g.granted[protocol.MessageDelayResp] < e && time.Now().Before(wait); {
			time.Sleep(2 * time.Millisecond)
			g.drain(g.gen)
			g.drain(g.ev)
		}
	}
	time.Sleep(100 * time.Millisecond)
	g.drain(g.gen)
	g.drain(g.ev)
	r := ptpLoad{n: n, seconds: seconds, syncGrants: g.granted[protocol.MessageSync], drGrant: g.granted[protocol.MessageDelayResp]}
	g.received = map[protocol.MessageType]int{}
	r.rss0 = rssKB(pid)
	cpu0, err := cpuTicks(pid)
	if err != nil {
		b.Fatal(err)
	}
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
	cpu1, _ := cpuTicks(pid)
	r.elapsed = time.Since(start)
	b.StopTimer()
	time.Sleep(200 * time.Millisecond)
	g.drain(g.gen)
	g.drain(g.ev)
	r.rss1 = rssKB(pid)
	r.cpuS = float64(cpu1-cpu0) / 100 // USER_HZ
	r.syncs, r.fus, r.drs = g.received[protocol.MessageSync], g.received[protocol.MessageFollowUp], g.received[protocol.MessageDelayResp]
	return r
}

// reusePortListener listens with SO_REUSEPORT (a server on the same host
// may hold the ports' numbers on another address).
var reusePortListener = net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
	var serr error
	_ = c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
	return serr
}}

func (g *ptpLoadGen) listen(b *testing.B, evPort, genPort int) {
	listen := func(port int) *net.UDPConn {
		pc, err := reusePortListener.ListenPacket(context.Background(), "udp4", fmt.Sprintf("0.0.0.0:%d", port))
		if err != nil {
			b.Fatal(err)
		}
		c := pc.(*net.UDPConn)
		_ = c.SetReadBuffer(8 << 20)
		return c
	}
	g.ev, g.gen = listen(evPort), listen(genPort)
	b.Cleanup(func() { g.ev.Close(); g.gen.Close() })
}

func pin(pid, cpu int) {
	_ = exec.Command("taskset", "-a", "-p", "-c", strconv.Itoa(cpu), strconv.Itoa(pid)).Run()
}

func loadClients(def int) int {
	if v, err := strconv.Atoi(os.Getenv("PTP_LOAD_CLIENTS")); err == nil && v > 0 && v <= 65000 {
		return v
	}
	return def
}

// BenchmarkPTPGrandmasterLoad: meridiand's grandmaster (one worker,
// pinned to CPU 1) serves PTP_LOAD_CLIENTS (default 20000) unicast clients
// at 1 Sync/s (with Follow_Up) and 1 Delay_Req/s for 10 s over loopback,
// generated here (pinned to CPU 0). It reports the client-seconds one
// server CPU-second serves (clients/core, as ran, every reply counted) and
// the server's resident memory before and after. Then the same clients
// are served by ptpfloor (testdata/ptpfloor: the same datagrams from
// recvmmsg/sendmmsg batches, no PTP logic, clocks or transmit stamps):
// the kernel's own cost on this path, the ceiling any grandmaster here
// could reach (floor-clients/core). On loopback the sender's CPU time
// includes delivering each datagram into the receiver's socket. Run:
//
//	go test -run '^$' -bench PTPGrandmasterLoad -benchtime 1x ./interop/
func BenchmarkPTPGrandmasterLoad(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("binds the PTP ports' numbers and pins CPUs: run as root")
	}
	n := loadClients(20000)
	const seconds = 10
	dir := b.TempDir()
	bin := buildMeridiand(b)
	floor := filepath.Join(dir, "ptpfloor")
	if out, err := exec.Command("go", "build", "-o", floor, "./testdata/ptpfloor").CombinedOutput(); err != nil {
		b.Fatalf("go build ptpfloor: %v\n%s", err, out)
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
	res := map[string]ptpLoad{}
	for _, server := range []string{"meridiand", "floor"} {
		d := exec.Command(bin, "--config", cfg)
		if server == "floor" {
			d = exec.Command(floor, "127.0.0.1", strconv.Itoa(evPort), strconv.Itoa(genPort), strconv.Itoa(evPort), strconv.Itoa(genPort))
		}
		d.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := d.Start(); err != nil {
			b.Fatal(err)
		}
		pin(d.Process.Pid, 1)
		pin(os.Getpid(), 0)
		time.Sleep(500 * time.Millisecond)
		g := &ptpLoadGen{n: n, base: [2]byte{127, 1},
			srvEv: sockaddr4([4]byte{127, 0, 0, 1}, evPort), srvGen: sockaddr4([4]byte{127, 0, 0, 1}, genPort)}
		g.listen(b, evPort, genPort)
		r := g.run(b, d.Process.Pid, seconds)
		_ = d.Process.Kill()
		_ = d.Wait()
		g.ev.Close()
		g.gen.Close()
		b.Logf("%s: %v", server, r)
		if r.drGrant != n || r.drs < n*seconds*95/100 || r.fus < r.syncs*95/100 || r.syncs < n*(seconds-1) {
			b.Fatalf("%s did not keep up: %v", server, r)
		}
		res[server] = r
	}
	m := res["meridiand"]
	b.ReportMetric(m.clientsPerCore(), "clients/core")
	b.ReportMetric(res["floor"].clientsPerCore(), "floor-clients/core")
	b.ReportMetric(float64(m.rss1-m.rss0), "rss-growth-kB")
}

// BenchmarkPTPGrandmasterVsPtp4l puts the same unicast load on meridiand's
// grandmaster and on ptp4l 3.1.1 (masterOnly, unicast_listen, software
// stamps, free running, no CAP_SYS_TIME), each in turn alone in network
// namespace b on the standard ports 319/320 and pinned to CPU 1; the
// PTP_LOAD_CLIENTS (default 1000) clients live in namespace a (CPU 0), one
// address each in 10.210.0.0/16 (a local route makes them all ours), and
// the two namespaces are joined by a veth pair. Both servers get the same
// requests (Sync and Delay_Resp grants, one Delay_Req per client per
// second) for 10 s; each reports the client-seconds it served per
// CPU-second and how much of the load it served. Run:
//
//	go test -run '^$' -bench PTPGrandmasterVsPtp4l -benchtime 1x ./interop/
func BenchmarkPTPGrandmasterVsPtp4l(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("network namespaces and CPU pinning: run as root")
	}
	need(b, "ptp4l")
	n := loadClients(1000)
	const seconds = 10
	res := map[string]ptpLoad{}
	for _, server := range []string{"meridiand", "ptp4l"} {
		p := netnsPair(b)
		nsA, nsB := p.NS[impair.A], p.NS[impair.B]
		addrA, addrB := p.Addr[impair.A], p.Addr[impair.B]
		for _, args := range [][]string{
			{"-n", nsA, "route", "add", "local", "10.210.0.0/16", "dev", "lo"},
			{"-n", nsB, "route", "add", "10.210.0.0/16", "via", addrA.String()},
		} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				b.Fatalf("ip %v: %v: %s", args, err, out)
			}
		}
		var pid int
		switch server {
		case "meridiand":
			_, d := runMeridiandCmd(b, nsB, fmt.Sprintf(`local_stratum: 1
ptp_server: {listen: [%q], workers: 1, max_clients: 65536, timestamping: software}
metrics: {listen: ""}
grpc: {listen: []}
shm: {path: DIR/tt.shm}
state_dir: DIR/state
`, addrB))
			pid = d.Process.Pid
			time.Sleep(500 * time.Millisecond)
		case "ptp4l":
			lines, cmd := ptp4lCmd(b, nsB, ptp4lMasterConf(p.Iface[impair.B]))
			pid = cmd.Process.Pid
			// A master-only ptp4l grants nothing until it takes the
			// grandmaster role (after its announce receipt timeout).
			for deadline := time.After(30 * time.Second); ; {
				select {
				case l := <-lines:
					if !strings.Contains(l, "grand master") && !strings.Contains(l, "to MASTER") {
						continue
					}
				case <-deadline:
					b.Fatal("ptp4l did not become master in 30 s")
				}
				break
			}
		}
		pin(pid, 1)
		pin(os.Getpid(), 0)
		g := &ptpLoadGen{n: n, base: [2]byte{10, 210},
			srvEv: sockaddr4(addrB.As4(), 319), srvGen: sockaddr4(addrB.As4(), 320)}
		if err := p.InNS(impair.A, func() error { g.listen(b, 319, 320); return nil }); err != nil {
			b.Fatal(err)
		}
		r := g.run(b, pid, seconds)
		b.Logf("%s: %v", server, r)
		res[server] = r
	}
	b.ReportMetric(res["meridiand"].clientsPerCore(), "meridiand-clients/core")
	b.ReportMetric(res["ptp4l"].clientsPerCore(), "ptp4l-clients/core")
	for _, s := range []string{"meridiand", "ptp4l"} {
		r := res[s]
		b.ReportMetric(float64(min(r.fus, r.drs))/float64(r.n*r.seconds), s+"-served-fraction")
	}
}
