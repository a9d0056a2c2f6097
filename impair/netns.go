package impair

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Side names one end of a Pair.
type Side int

const (
	// A is the first namespace: frames it sends travel Config.AtoB.
	A Side = iota
	// B is the second namespace.
	B
)

func (s Side) String() string { return [...]string{"a", "b"}[s] }

// Pair is two network namespaces joined by a Wire over TAP devices
// (NewPair) or by a veth pair (NewVethPair). Names and the /24 subnet are
// unique per process and pair; Close deletes both namespaces.
type Pair struct {
	NS     [2]string     // namespace names, by Side
	Iface  [2]string     // the interface inside each namespace
	Addr   [2]netip.Addr // its IPv4 address (10.203.N.1 and .2, /24)
	Wire   *Wire         // nil for a veth pair
	ipPath string
	once   sync.Once
	err    error
}

var pairSeq atomic.Uint32

// ipTool finds the ip(8) program.
func ipTool() (string, error) {
	p, err := exec.LookPath("ip")
	if err != nil {
		return "", fmt.Errorf("impair: the ip program (iproute2) is needed: %w", err)
	}
	return p, nil
}

func newNames() *Pair {
	n := pairSeq.Add(1)
	pid := os.Getpid()
	p := &Pair{}
	for i, s := range []string{"a", "b"} {
		p.NS[i] = fmt.Sprintf("mw%d-%d%s", pid, n, s)
		p.Iface[i] = fmt.Sprintf("mw%x.%d%s", pid, n%1000, s) // ≤ 15 bytes
		p.Addr[i] = netip.AddrFrom4([4]byte{10, 203, byte(n % 256), byte(i + 1)})
	}
	return p
}

func (p *Pair) ip(args ...string) error {
	out, err := exec.Command(p.ipPath, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("impair: ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// setup creates both namespaces and brings addresses and lo up once the
// interfaces are inside; move puts them there.
func (p *Pair) setup(move func() error) error {
	for _, ns := range p.NS {
		if err := p.ip("netns", "add", ns); err != nil {
			return err
		}
	}
	if err := move(); err != nil {
		return err
	}
	for i, ns := range p.NS {
		for _, args := range [][]string{
			{"-n", ns, "addr", "add", p.Addr[i].String() + "/24", "dev", p.Iface[i]},
			{"-n", ns, "link", "set", "lo", "up"},
			{"-n", ns, "link", "set", p.Iface[i], "up"},
		} {
			if err := p.ip(args...); err != nil {
				return err
			}
		}
	}
	return nil
}

// NewPair creates two namespaces joined by a Wire with impairment cfg. It
// needs root (CAP_NET_ADMIN), /dev/net/tun and ip(8). The wire stops when
// ctx ends; Close stops it and deletes the namespaces.
func NewPair(ctx context.Context, cfg Config) (*Pair, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ip, err := ipTool()
	if err != nil {
		return nil, err
	}
	p := newNames()
	p.ipPath = ip
	var taps [2]*os.File
	err = p.setup(func() error {
		for i := range taps {
			f, err := OpenTAP(p.Iface[i])
			if err != nil {
				return err
			}
			taps[i] = f
			if err := p.ip("link", "set", p.Iface[i], "netns", p.NS[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		p.Wire, err = New(ctx, taps[0], taps[1], cfg)
	}
	if err != nil {
		for _, f := range taps {
			if f != nil {
				_ = f.Close()
			}
		}
		return nil, errors.Join(err, p.Close())
	}
	return p, nil
}

// NewVethPair creates two namespaces joined by a plain veth pair: no
// impairment, the kernel's own path (a baseline for the wire).
func NewVethPair() (*Pair, error) {
	ip, err := ipTool()
	if err != nil {
		return nil, err
	}
	p := newNames()
	p.ipPath = ip
	err = p.setup(func() error {
		if err := p.ip("link", "add", p.Iface[0], "type", "veth", "peer", "name", p.Iface[1]); err != nil {
			return err
		}
		for i := range p.NS {
			if err := p.ip("link", "set", p.Iface[i], "netns", p.NS[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// A veth left in the root namespace goes with its peer.
		_ = exec.Command(ip, "link", "del", p.Iface[0]).Run()
		return nil, errors.Join(err, p.Close())
	}
	return p, nil
}

// Close stops the wire and deletes both namespaces (their interfaces go
// with them). It is safe to call more than once.
func (p *Pair) Close() error {
	p.once.Do(func() {
		if p.Wire != nil {
			_ = p.Wire.Close()
		}
		var errs []error
		for _, ns := range p.NS {
			if _, err := os.Stat(filepath.Join("/var/run/netns", ns)); err != nil {
				continue // never created
			}
			errs = append(errs, p.ip("netns", "del", ns))
		}
		p.err = errors.Join(errs...)
	})
	return p.err
}

// Command runs name inside side's namespace (ip netns exec): the returned
// command's PID is the program's own, as ip execs it.
func (p *Pair) Command(side Side, name string, args ...string) *exec.Cmd {
	return exec.Command(p.ipPath, append([]string{"netns", "exec", p.NS[side], name}, args...)...)
}

// InNS runs fn on a thread inside side's namespace. Sockets fn opens stay
// in that namespace after it returns. If the thread cannot return to its
// own namespace it is left locked, so the runtime retires it.
func (p *Pair) InNS(side Side, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- p.inNS(side, fn)
	}()
	return <-errc
}

func (p *Pair) inNS(side Side, fn func() error) error {
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return fmt.Errorf("impair: %w", err)
	}
	defer orig.Close()
	target, err := os.Open(filepath.Join("/var/run/netns", p.NS[side]))
	if err != nil {
		return fmt.Errorf("impair: namespace %s: %w", p.NS[side], err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("impair: setns %s: %w", p.NS[side], err)
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		return errors.Join(ferr, fmt.Errorf("impair: back from %s: %w", p.NS[side], err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// ListenUDP opens a UDP socket on side's address and port (0: any free
// port) inside its namespace.
func (p *Pair) ListenUDP(side Side, port int) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := p.InNS(side, func() error {
		var err error
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.Addr[side], uint16(port))))
		return err
	})
	return c, err
}
