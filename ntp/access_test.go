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
