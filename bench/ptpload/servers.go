package ptpload

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/meridiantime/meridian/impair"
)

var execCommand = exec.Command

// ClientNet is where the generator's clients live in a Netns: one address
// each in 10.210.0.0/16.
var ClientNet = [2]byte{10, 210}

// Netns is the generator's namespace (A, where every address of ClientNet
// is local) and a server's (B, routing ClientNet through A), joined by a
// veth pair. Close deletes both.
type Netns struct {
	*impair.Pair
}

// NewNetns creates the namespaces (root, ip(8)).
func NewNetns() (*Netns, error) {
	p, err := impair.NewVethPair()
	if err != nil {
		return nil, err
	}
	clients := fmt.Sprintf("%d.%d.0.0/16", ClientNet[0], ClientNet[1])
	for _, args := range [][]string{
		{"-n", p.NS[impair.A], "route", "add", "local", clients, "dev", "lo"},
		{"-n", p.NS[impair.B], "route", "add", clients, "via", p.Addr[impair.A].String()},
	} {
		if out, err := execCommand("ip", args...).CombinedOutput(); err != nil {
			return nil, errors.Join(fmt.Errorf("ptpload: ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out))), p.Close())
		}
	}
	return &Netns{p}, nil
}

// Server is a server process under load. Its output is kept (the last
// 64 kB) for Log.
type Server struct {
	Name string
	Cmd  *exec.Cmd
	out  *tail
	dir  string
	done chan struct{}
}

type tail struct {
	mu    sync.Mutex
	b     []byte
	lines chan string
}

func (t *tail) add(l string) {
	t.mu.Lock()
	t.b = append(t.b, l...)
	t.b = append(t.b, '\n')
	if len(t.b) > 64<<10 {
		t.b = t.b[len(t.b)-32<<10:]
	}
	t.mu.Unlock()
	select {
	case t.lines <- l:
	default:
	}
}

// Pid is the server's process id.
func (s *Server) Pid() int { return s.Cmd.Process.Pid }

// Log is the end of the server's output.
func (s *Server) Log() string {
	s.out.mu.Lock()
	defer s.out.mu.Unlock()
	return string(s.out.b)
}

// Stop kills the server by PID, waits for it and removes its directory.
func (s *Server) Stop() {
	_ = s.Cmd.Process.Kill()
	<-s.done // after Wait: see start
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

// start runs argv in namespace ns (ip netns exec: the PID is the program's
// own), or in ours when ns is ""; the process dies with the caller
// (Pdeathsig) and its output is kept.
func start(name, ns, dir string, argv ...string) (*Server, error) {
	if ns != "" {
		argv = append([]string{"ip", "netns", "exec", ns}, argv...)
	}
	cmd := execCommand(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("ptpload: start %s: %w", name, err)
	}
	s := &Server{Name: name, Cmd: cmd, out: &tail{lines: make(chan string, 256)}, dir: dir, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			s.out.add(sc.Text())
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		_ = cmd.Wait() // the only Wait
		pw.Close()
	}()
	return s, nil
}

// StartMeridiand runs meridiand (binary bin) in namespace B as a
// grandmaster on B's address, standard ports, one worker, software stamps,
// serving its own clock as a stratum-1 local reference.
func StartMeridiand(ns *Netns, bin string) (*Server, error) {
	return startMeridiand(ns.NS[impair.B], bin, ns.Addr[impair.B], 319, 320)
}

func startMeridiand(ns, bin string, addr netip.Addr, evPort, genPort int) (*Server, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("ptpload: meridiand binary: %w", err)
	}
	dir, err := os.MkdirTemp("", "ptpload-meridiand-")
	if err != nil {
		return nil, fmt.Errorf("ptpload: %w", err)
	}
	cfg := filepath.Join(dir, "m.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`local_stratum: 1
ptp_server: {listen: [%q], event_port: %d, general_port: %d, workers: 1, max_clients: 65536, timestamping: software}
metrics: {listen: ""}
grpc: {listen: []}
shm: {path: %s}
state_dir: %s
`, addr, evPort, genPort, filepath.Join(dir, "tt.shm"), filepath.Join(dir, "state"))), 0o644); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("ptpload: %w", err)
	}
	return start("meridiand", ns, dir, bin, "--config", cfg)
}

// Ptp4lConf is ptp4l as a unicast master on iface: master only,
// unicast_listen, clockClass 6, software stamps, UDPv4, E2E, free running
// (never touching a clock). DIR is replaced by a directory of its own.
func Ptp4lConf(iface string) string {
	return fmt.Sprintf(`[global]
free_running 1
masterOnly 1
unicast_listen 1
clockClass 6
time_stamping software
network_transport UDPv4
delay_mechanism E2E
uds_address DIR/master.sock
logging_level 6
[%s]
`, iface)
}

// StartPtp4l runs ptp4l (found on PATH) in namespace B as a unicast master
// (Ptp4lConf), always free running and under setpriv --bounding-set
// -sys_time, and waits until it takes the master role (it grants nothing
// before), 30 s at most.
func StartPtp4l(ctx context.Context, ns *Netns) (*Server, error) {
	bin, err := exec.LookPath("ptp4l")
	if err != nil {
		return nil, fmt.Errorf("ptpload: ptp4l (linuxptp) not installed: %w", err)
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		return nil, fmt.Errorf("ptpload: setpriv (util-linux) not installed, and ptp4l never runs without it: %w", err)
	}
	dir, err := os.MkdirTemp("", "ptpload-ptp4l-")
	if err != nil {
		return nil, fmt.Errorf("ptpload: %w", err)
	}
	conf := strings.ReplaceAll(Ptp4lConf(ns.Iface[impair.B]), "DIR", dir)
	if !strings.Contains(conf, "free_running 1\n") {
		return nil, errors.New("ptpload: ptp4l config without free_running 1")
	}
	cf := filepath.Join(dir, "ptp4l.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("ptpload: %w", err)
	}
	s, err := start("ptp4l", ns.NS[impair.B], dir, setpriv, "--bounding-set", "-sys_time", "--", bin, "-f", cf, "-m")
	if err != nil {
		return nil, err
	}
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case l := <-s.out.lines:
			if strings.Contains(l, "grand master") || strings.Contains(l, "to MASTER") {
				return s, nil
			}
		case <-s.done:
			s.Stop()
			return nil, fmt.Errorf("ptpload: ptp4l exited before becoming master:\n%s", s.Log())
		case <-deadline.C:
			s.Stop()
			return nil, fmt.Errorf("ptpload: ptp4l did not become master in 30 s:\n%s", s.Log())
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		}
	}
}

// waitListening waits until a UDP socket is bound to port in the network
// namespace inNS runs its function in (/proc/thread-self/net/udp is the
// reading thread's namespace's), up to limit.
func waitListening(ctx context.Context, inNS func(func() error) error, where string, port int, limit time.Duration) error {
	want := fmt.Sprintf(":%04X", port)
	end := time.Now().Add(limit)
	for {
		var found bool
		err := inNS(func() error {
			b, err := os.ReadFile("/proc/thread-self/net/udp")
			if err != nil {
				return err
			}
			for l := range strings.SplitSeq(string(b), "\n") {
				if f := strings.Fields(l); len(f) > 2 && strings.HasSuffix(f[1], want) {
					found = true
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("ptpload: %w", err)
		}
		if found {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("ptpload: nothing listens on UDP port %d %s after %v", port, where, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Servers Measure knows.
const (
	ServerMeridiand = "meridiand"
	ServerPtp4l     = "ptp4l"
	ServerFloor     = "floor"
)

// Spec is one measurement: a server alone under Clients clients for
// Seconds.
type Spec struct {
	Server  string // ServerMeridiand, ServerPtp4l or ServerFloor
	Clients int
	Seconds int
	// Loopback runs server and clients in this namespace over loopback
	// (server 127.0.0.1 on two free ports, client i at 127.1.x.y): no root
	// needed, no ptp4l (it only speaks to ports 319/320). Otherwise the
	// server runs alone in a Netns (root).
	Loopback bool
	// Meridiand is the meridiand binary (ServerMeridiand).
	Meridiand string
	// FloorArgv runs Floor (ServerFloor): a program and its leading
	// arguments, Floor's five appended.
	FloorArgv []string
	// ServerCPU and GenCPU are the CPUs the server and this process are
	// pinned to; negative: not pinned.
	ServerCPU, GenCPU int
	Progress          func(phase string, done, total int)
	Timer             interface {
		ResetTimer()
		StopTimer()
	}
}

// freePorts returns two distinct UDP ports free on 127.0.0.1 a moment ago.
func freePorts() (int, int, error) {
	var ports [2]int
	for i := range ports {
		for {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				return 0, 0, fmt.Errorf("ptpload: a free port: %w", err)
			}
			ports[i] = c.LocalAddr().(*net.UDPAddr).Port
			c.Close()
			if i == 0 || ports[1] != ports[0] {
				break
			}
		}
	}
	return ports[0], ports[1], nil
}

// Measure starts the server (in a Netns's B, or on loopback), pins it and
// this process, runs a Gen of s.Clients (in A, or on loopback) for
// s.Seconds, and tears it all down: the server killed by PID, the
// namespaces deleted.
func Measure(ctx context.Context, s Spec) (res Result, err error) {
	if s.Clients < 1 || s.Clients > MaxClients || s.Seconds < 1 || s.Seconds > MaxSeconds {
		return Result{}, fmt.Errorf("ptpload: %d clients for %d s: want 1…%d clients, 1…%d s", s.Clients, s.Seconds, MaxClients, MaxSeconds)
	}
	var (
		nsName, where    string
		addr             netip.Addr
		evPort, genPort  = 319, 320
		inNS, inClientNS = func(f func() error) error { return f() }, func(f func() error) error { return f() }
		base             = ClientNet
		ns               *Netns
	)
	if s.Loopback {
		if s.Server == ServerPtp4l {
			return Result{}, errors.New("ptpload: ptp4l cannot run on loopback (it sends only to ports 319/320): it needs a Netns")
		}
		if evPort, genPort, err = freePorts(); err != nil {
			return Result{}, err
		}
		addr, base, where = netip.AddrFrom4([4]byte{127, 0, 0, 1}), [2]byte{127, 1}, "on loopback"
	} else {
		if ns, err = NewNetns(); err != nil {
			return Result{}, err
		}
		defer func() { err = errors.Join(err, ns.Close()) }()
		nsName, addr, where = ns.NS[impair.B], ns.Addr[impair.B], "in namespace "+ns.NS[impair.B]
		inNS = func(f func() error) error { return ns.InNS(impair.B, f) }
		inClientNS = func(f func() error) error { return ns.InNS(impair.A, f) }
	}
	var srv *Server
	switch s.Server {
	case ServerMeridiand:
		srv, err = startMeridiand(nsName, s.Meridiand, addr, evPort, genPort)
	case ServerPtp4l:
		srv, err = StartPtp4l(ctx, ns)
	case ServerFloor:
		if len(s.FloorArgv) == 0 {
			return Result{}, errors.New("ptpload: floor: no FloorArgv")
		}
		p := []string{strconv.Itoa(evPort), strconv.Itoa(genPort)}
		srv, err = start("floor", nsName, "", append(s.FloorArgv, addr.String(), p[0], p[1], p[0], p[1])...)
	default:
		return Result{}, fmt.Errorf("ptpload: server %q: want %s, %s or %s", s.Server, ServerMeridiand, ServerPtp4l, ServerFloor)
	}
	if err != nil {
		return Result{}, err
	}
	defer func() {
		srv.Stop()
		if err != nil {
			err = fmt.Errorf("%w\n%s output (end):\n%s", err, s.Server, srv.Log())
		}
	}()
	for _, port := range []int{evPort, genPort} {
		if err := waitListening(ctx, inNS, where, port, 10*time.Second); err != nil {
			return Result{}, fmt.Errorf("%s: %w", s.Server, err)
		}
	}
	time.Sleep(200 * time.Millisecond) // the grandmaster's first tick
	if s.ServerCPU >= 0 {
		if err := Pin(srv.Pid(), s.ServerCPU); err != nil {
			return Result{}, err
		}
	}
	if s.GenCPU >= 0 {
		if err := Pin(os.Getpid(), s.GenCPU); err != nil {
			return Result{}, err
		}
	}
	g := &Gen{Clients: s.Clients, Base: base, ServerEvent: netip.AddrPortFrom(addr, uint16(evPort)),
		ServerGeneral: netip.AddrPortFrom(addr, uint16(genPort)), Progress: s.Progress, Timer: s.Timer}
	if err := inClientNS(func() error { return g.Listen(evPort, genPort) }); err != nil {
		return Result{}, err
	}
	defer g.Close()
	res, err = g.Run(ctx, srv.Pid(), s.Seconds)
	res.Server = s.Server
	return res, err
}
