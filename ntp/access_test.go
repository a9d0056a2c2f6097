package ntp

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meridiantime/meridian/ntp/engine"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s).Masked())
	}
	return out
}

// chrony's rule: the longest prefix containing the address decides; with
// no match, served only when there is no allow at all.
func TestAccessLongestPrefix(t *testing.T) {
	a := NewAccess(prefixes("10.0.0.0/8", "10.1.2.3/32", "2001:db8::/32"), prefixes("10.1.0.0/16", "10.9.9.9/32"))
	for addr, want := range map[string]bool{
		"10.2.3.4":        true,  // allow /8
		"10.1.9.9":        false, // deny /16 inside allow /8
		"10.1.2.3":        true,  // allow /32 inside deny /16
		"10.9.9.9":        false, // deny /32
		"192.0.2.1":       false, // no match, allow list present
		"::ffff:10.2.3.4": true,  // mapped counts as IPv4
		"2001:db8::5":     true,
		"2001:db9::5":     false,
	} {
		if got := a.Allowed(netip.MustParseAddr(addr)); got != want {
			t.Errorf("%s: allowed %v, want %v", addr, got, want)
		}
	}
	d := NewAccess(nil, prefixes("192.0.2.0/24"))
	if !d.Allowed(netip.MustParseAddr("198.51.100.1")) || d.Allowed(netip.MustParseAddr("192.0.2.7")) {
		t.Fatal("deny-only list: others must be served, the denied not")
	}
	both := NewAccess(prefixes("192.0.2.0/24"), prefixes("192.0.2.0/24"))
	if both.Allowed(netip.MustParseAddr("192.0.2.7")) {
		t.Fatal("a prefix in both lists must be denied")
	}
	if n := testing.AllocsPerRun(100, func() { a.Allowed(netip.MustParseAddr("10.1.2.3")) }); n != 0 {
		t.Fatalf("%v allocations per check", n)
	}
}

// A denied client gets no reply and is counted; an allowed one, sending the
// same request to the same server, is answered.
func TestServerDeniesRefusedClients(t *testing.T) {
	s := NewServer(synced(), RateLimit{}, quietLog())
	s.SetAccess(NewAccess(prefixes("127.0.0.0/8"), prefixes("127.0.0.66/32")))
	if err := s.Listen("127.0.0.1:0", 1); err != nil {
		t.Fatal(err)
	}
	serve(t, s)
	srv, _ := net.ResolveUDPAddr("udp", s.Addr())
	ask := func(from string) bool {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(from)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.WriteToUDP(clientReq(4, engine.ModeClient, 42), srv); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, _, err = c.ReadFromUDP(make([]byte, 128))
		return err == nil
	}
	if !ask("127.0.0.65") {
		t.Fatal("allowed client not answered")
	}
	if ask("127.0.0.66") {
		t.Fatal("denied client answered")
	}
	if st := settled(s); st.DropDenied != 1 {
		t.Fatalf("denied count %d", st.DropDenied)
	}
}

// The client log (chronyc clients) counts each address's replies and
// drops, busiest first, whatever the rate limit says.
func TestClientLog(t *testing.T) {
	s := NewServer(synced(), RateLimit{}, quietLog())
	s.SetAccess(NewAccess(nil, prefixes("127.0.0.66/32")))
	if err := s.Listen("127.0.0.1:0", 1); err != nil {
		t.Fatal(err)
	}
	serve(t, s)
	srv, _ := net.ResolveUDPAddr("udp", s.Addr())
	send := func(from string, n int) {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(from)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for i := range n {
			_, _ = c.WriteToUDP(clientReq(4, engine.ModeClient, uint64(i+1)), srv)
			_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			_, _, _ = c.ReadFromUDP(make([]byte, 128))
		}
	}
	send("127.0.0.65", 3)
	send("127.0.0.66", 2)
	send("127.0.0.67", 1)
	got := s.Clients(0)
	if len(got) != 3 || got[0].Addr.String() != "127.0.0.65" || got[0].Replies != 3 ||
		got[1].Addr.String() != "127.0.0.66" || got[1].Dropped != 2 || got[1].Replies != 0 || got[2].Replies != 1 {
		t.Fatalf("clients %+v", got)
	}
	if l := s.Clients(1); len(l) != 1 {
		t.Fatalf("limit 1: %d", len(l))
	}
}

// Each socket keeps its own client log; a client whose source ports land on
// different SO_REUSEPORT sockets is listed once, with every socket's counts.
func TestClientLogMergesSockets(t *testing.T) {
	s := NewServer(synced(), RateLimit{}, quietLog())
	if err := s.Listen("127.0.0.1:0", 2); err != nil {
		t.Fatal(err)
	}
	serve(t, s)
	srv, _ := net.ResolveUDPAddr("udp", s.Addr())
	const ports = 32
	for i := range ports {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP("127.0.0.65")})
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.WriteToUDP(clientReq(4, engine.ModeClient, uint64(i+1)), srv)
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		if _, _, err := c.ReadFromUDP(make([]byte, 128)); err != nil {
			t.Fatalf("port %d: %v", i, err)
		}
		c.Close()
	}
	// The kernel spread the ports over both sockets (each gets one in two;
	// all 32 on one socket has odds of 2⁻³¹): without that the merge is
	// not exercised.
	per := map[*clientLog]uint64{}
	for _, c := range s.logs() {
		c.mu.Lock()
		for _, e := range c.e {
			if e.used() && e.addr.addr().String() == "127.0.0.65" {
				per[c] += e.replies
			}
		}
		c.mu.Unlock()
	}
	if len(per) != 2 {
		t.Fatalf("replies per log %v: want the client in both sockets' logs", per)
	}
	got := s.Clients(0)
	if len(got) != 1 || got[0].Addr.String() != "127.0.0.65" || got[0].Replies != ports || got[0].Dropped != 0 {
		t.Fatalf("clients %+v: want 127.0.0.65 once with %d replies", got, ports)
	}
}

// Server.BusyPoll sets SO_BUSY_POLL on every socket, read back from the
// kernel; without it the sockets keep the system default
// (net.core.busy_read: the control).
func TestServerBusyPoll(t *testing.T) {
	def := 0
	if b, err := os.ReadFile("/proc/sys/net/core/busy_read"); err == nil {
		def, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	set := 50
	if def == set {
		set = 51
	}
	for _, tc := range []struct {
		set  time.Duration
		want int
	}{{time.Duration(set) * time.Microsecond, set}, {0, def}} {
		s := NewServer(synced(), RateLimit{}, quietLog())
		s.BusyPoll = tc.set
		if err := s.Listen("127.0.0.1:0", 2); err != nil {
			t.Fatal(err)
		}
		for _, sk := range s.socks {
			if v, err := unix.GetsockoptInt(sk.fd, unix.SOL_SOCKET, unix.SO_BUSY_POLL); err != nil || v != tc.want {
				t.Errorf("BusyPoll %v: SO_BUSY_POLL %d (%v), want %d", tc.set, v, err, tc.want)
			}
		}
		s.Close()
	}
}

// Every server socket, IPv4 or IPv6 (which serves IPv4-mapped clients
// through the same IPv4 option), sends with DF (IP_PMTUDISC_DO), read back
// from the kernel; a socket Go opens keeps the default (the control).
func TestServerSocketsSetDF(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		s := NewServer(synced(), RateLimit{}, quietLog())
		if err := s.Listen(addr, 2); err != nil {
			t.Fatal(err)
		}
		for _, sk := range s.socks {
			if v, err := unix.GetsockoptInt(sk.fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER); err != nil || v != unix.IP_PMTUDISC_DO {
				t.Errorf("%s: IP_MTU_DISCOVER %d (%v), want IP_PMTUDISC_DO", addr, v, err)
			}
		}
		s.Close()
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		rc, _ := c.(*net.UDPConn).SyscallConn()
		_ = rc.Control(func(fd uintptr) {
			if v, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER); err != nil || v == unix.IP_PMTUDISC_DO {
				t.Errorf("%s: a plain socket has IP_MTU_DISCOVER %d (%v): the control does not tell", addr, v, err)
			}
		})
		c.Close()
	}
}

// On the wire: a reply to an IPv4 client carries DF and IP ID 0 (captured
// on loopback with a packet socket, as root), where a datagram from a
// plain socket gets an ID from the kernel's shared generator — the per
// datagram hash the option saves (the control: its IDs are not all 0).
func TestRepliesCarryDFAndNoID(t *testing.T) {
	ps, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IP)))
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("packet socket: %v (CI runs as root)", err)
		}
		t.Skipf("packet socket: %v (needs root)", err)
	}
	defer unix.Close(ps)
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(ps, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: lo.Index}); err != nil {
		t.Fatal(err)
	}
	tv := unix.NsecToTimeval(int64(2 * time.Second))
	_ = unix.SetsockoptTimeval(ps, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	// ids returns the IP ID and DF bit of the first n UDP datagrams from
	// source port from seen on lo.
	ids := func(from, n int) (id []uint16, df []bool) {
		buf := make([]byte, 2048)
		for len(id) < n {
			m, _, err := unix.Recvfrom(ps, buf, 0)
			if err != nil {
				t.Fatalf("capture: %v (have %d of %d)", err, len(id), n)
			}
			p := buf[:m]
			if len(p) < 28 || p[0]>>4 != 4 || p[9] != unix.IPPROTO_UDP {
				continue
			}
			ihl := int(p[0]&15) * 4
			if len(p) < ihl+8 || int(p[ihl])<<8|int(p[ihl+1]) != from {
				continue
			}
			id = append(id, uint16(p[4])<<8|uint16(p[5]))
			df = append(df, p[6]&0x40 != 0)
		}
		return id, df
	}
	s := NewServer(synced(), RateLimit{}, quietLog())
	if err := s.Listen("127.0.0.1:0", 1); err != nil {
		t.Fatal(err)
	}
	serve(t, s)
	cl := newXClient(t, "127.0.0.1:0", s.Addr())
	srvPort := netip.MustParseAddrPort(s.Addr()).Port()
	for i := range 8 {
		if _, err := cl.c.Write(xreq(0, 0, uint64(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	id, df := ids(int(srvPort), 8)
	for i := range id {
		if id[i] != 0 || !df[i] {
			t.Fatalf("reply %d: IP ID %d, DF %v: want 0 and DF", i, id[i], df[i])
		}
	}
	// The control: a plain socket's datagrams to the same client.
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for range 8 {
		if _, err := pc.WriteTo(make([]byte, engine.HeaderLen), cl.c.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	id, _ = ids(pc.LocalAddr().(*net.UDPAddr).Port, 8)
	nonzero := 0
	for _, v := range id {
		if v != 0 {
			nonzero++
		}
	}
	if nonzero == 0 {
		t.Fatalf("a plain socket's datagrams also had IP ID 0 (%v): the control does not tell", id)
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
