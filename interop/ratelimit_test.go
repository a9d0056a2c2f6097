package interop

import (
	"encoding/binary"
	"fmt"
	"github.com/meridiantime/meridian/internal/spoof"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

// Rate limiting under attack, meridiand and chronyd side by side on
// loopback, each limiting 16 requests/s with a burst of 8 and a leak of 1/4
// (chrony: ratelimit interval -4 burst 8 leak 2). Time is scaled 10× from
// the real-world case (a client polling every 1 s under a spoofed stream of
// 80 requests/s): the client polls every 100 ms while a raw socket sends
// 800 requests/s claiming the client's address from another port. Then a
// flood from one address: the share of its bytes each server reflects.
func TestRateLimitVsChrony(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root: the raw-socket spoofing test must not be skipped")
		}
		t.Skip("raw sockets need root")
	}
	mport := freeUDPPort(t)
	startMeridian(t, fmt.Sprintf("local_stratum: 1\nntp_server: {listen: [\"127.0.0.1:%d\"], rate_limit: {requests_per_second: 16, burst: 8, leak: 0.25}}\n", mport))
	cport := freeUDPPort(t)
	chronyd(t, fmt.Sprintf("local stratum 1\nport %d\nbindaddress 127.0.0.1\nallow 127.0.0.1\nratelimit interval -4 burst 8 leak 2", cport))
	time.Sleep(300 * time.Millisecond) // chronyd binds its NTP port after the command socket

	raw, err := spoof.New()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	share := map[string]float64{}
	for _, srv := range []struct {
		name string
		port int
	}{{"meridiand", mport}, {"chronyd", cport}} {
		to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(srv.port))
		answered, asked := spoofedClient(t, raw, to, 2*time.Second)
		share[srv.name] = float64(answered) / float64(asked)
		reflected, sent := flood(t, to, 1000)
		t.Logf("%-9s spoofed client answered %d/%d (%.0f %%); one-address flood: %.0f %% of %d bytes reflected",
			srv.name, answered, asked, 100*float64(answered)/float64(asked), 100*float64(reflected)/float64(sent), sent)
		if srv.name == "meridiand" {
			if 2*answered < asked {
				t.Errorf("meridiand answered the spoofed client %d of %d (< 50 %%)", answered, asked)
			}
			if 2*reflected > sent {
				t.Errorf("meridiand reflected %d of %d flood bytes (> 50 %%)", reflected, sent)
			}
		}
	}
	if share["meridiand"] < share["chronyd"] {
		t.Errorf("the spoofed client fares worse with meridiand (%.0f %%) than with chronyd (%.0f %%)", 100*share["meridiand"], 100*share["chronyd"])
	}
}

func ntpRequest(xmt uint64) []byte {
	b := make([]byte, 48)
	b[0] = 4<<3 | 3 // version 4, client
	binary.BigEndian.PutUint64(b[40:], xmt)
	return b
}

// spoofedClient polls to every 100 ms from a UDP socket while a raw socket
// sends 800 requests/s from the same address, another port; it returns how
// many polls got a real (non-KoD) answer.
func spoofedClient(t *testing.T, raw *spoof.Sender, to netip.AddrPort, dur time.Duration) (answered, asked int) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	from := netip.AddrPortFrom(to.Addr(), uint16(c.LocalAddr().(*net.UDPAddr).Port)+1)
	pkt := spoof.Datagram(from, to, ntpRequest(7))
	defer raw.Stream(pkt, to)()
	buf := make([]byte, 128)
	for end := time.Now().Add(dur); time.Now().Before(end); {
		start := time.Now()
		asked++
		xmt := uint64(0x1000 + asked)
		if _, err := c.WriteToUDPAddrPort(ntpRequest(xmt), to); err != nil {
			t.Fatal(err)
		}
		for {
			_ = c.SetReadDeadline(start.Add(90 * time.Millisecond))
			n, err := c.Read(buf)
			if err != nil {
				break
			}
			if n >= 48 && binary.BigEndian.Uint64(buf[24:]) == xmt && buf[1] != 0 { // origin echoed, not a KoD
				answered++
				break
			}
		}
		time.Sleep(time.Until(start.Add(100 * time.Millisecond)))
	}
	return answered, asked
}

// flood sends n requests from one socket as fast as the replies are read,
// after the bucket had time to refill; it returns bytes reflected and sent.
func flood(t *testing.T, to netip.AddrPort, n int) (reflected, sent int) {
	t.Helper()
	time.Sleep(time.Second)
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 128)
	for i := 0; i < n; i += 50 {
		for j := 0; j < 50; j++ {
			if k, err := c.WriteToUDPAddrPort(ntpRequest(uint64(i+j+1)), to); err == nil {
				sent += k
			}
		}
		for {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
			k, err := c.Read(buf)
			if err != nil {
				break
			}
			reflected += k
		}
	}
	return reflected, sent
}
