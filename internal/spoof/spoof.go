// Package spoof sends UDP datagrams over IPv4 with any source address and
// port through a raw (IP_HDRINCL) socket, for the attack tests of the NTP
// server (spoofed victims, port-0 poisoning). It needs CAP_NET_RAW and is
// used on loopback only.
package spoof

import (
	"encoding/binary"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// Sender owns one raw socket.
type Sender struct{ fd int }

// New opens the raw socket (IPPROTO_RAW implies IP_HDRINCL).
func New() (*Sender, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err != nil {
		return nil, err
	}
	return &Sender{fd: fd}, nil
}

// Send sends one datagram claiming to come from from.
func (s *Sender) Send(from, to netip.AddrPort, payload []byte) error {
	return s.SendPacket(Datagram(from, to, payload), to)
}

// SendPacket sends a datagram built by Datagram (to reuse one in a loop).
func (s *Sender) SendPacket(pkt []byte, to netip.AddrPort) error {
	return unix.Sendto(s.fd, pkt, 0, &unix.SockaddrInet4{Addr: to.Addr().As4()})
}

// Stream sends pkt to to in bursts of 4 every 5 ms (at most 800/s) from a
// goroutine until the returned stop is called; stop waits for it and
// returns how many packets the kernel took.
func (s *Sender) Stream(pkt []byte, to netip.AddrPort) (stop func() int) {
	quit, sent := make(chan struct{}), make(chan int)
	go func() {
		n := 0
		defer func() { sent <- n }()
		for {
			select {
			case <-quit:
				return
			default:
			}
			for range 4 {
				if s.SendPacket(pkt, to) == nil {
					n++
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return func() int { close(quit); return <-sent }
}

// Close closes the socket.
func (s *Sender) Close() error { return unix.Close(s.fd) }

// Datagram builds an IPv4/UDP datagram. The kernel fills in the IP
// checksum; the UDP checksum is 0 (none, allowed over IPv4).
func Datagram(from, to netip.AddrPort, payload []byte) []byte {
	pkt := make([]byte, 20+8+len(payload))
	pkt[0] = 0x45 // IPv4, 20-byte header
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	pkt[8] = 64 // TTL
	pkt[9] = unix.IPPROTO_UDP
	src, dst := from.Addr().As4(), to.Addr().As4()
	copy(pkt[12:], src[:])
	copy(pkt[16:], dst[:])
	binary.BigEndian.PutUint16(pkt[20:], from.Port())
	binary.BigEndian.PutUint16(pkt[22:], to.Port())
	binary.BigEndian.PutUint16(pkt[24:], uint16(8+len(payload)))
	copy(pkt[28:], payload)
	return pkt
}
