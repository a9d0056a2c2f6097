// Package etcdtest starts real etcd clusters for tests: in-process members
// through go.etcd.io/etcd/server/v3/embed (fast; most tests), and members as
// separate processes of the distribution's etcd binary (a test can kill one
// by its PID). Every member listens on loopback ports of its own, keeps its
// data in the test's temporary directory, and is stopped when the test
// ends.
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

// Cluster is a running etcd cluster.
type Cluster struct {
	// Endpoints are the members' client URLs, in member order.
	Endpoints []string

	mu      sync.Mutex
	embeds  []*embed.Etcd
	procs   []*exec.Cmd
	stopped []bool
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

type memberAddrs struct {
	name, peer, client string
}

func layout(n int) ([]memberAddrs, string, error) {
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, "", err
	}
	ms := make([]memberAddrs, n)
	var initial []string
	for i := range n {
		ms[i] = memberAddrs{
			name:   fmt.Sprintf("m%d", i),
			peer:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			client: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
		}
		initial = append(initial, ms[i].name+"="+ms[i].peer)
	}
	return ms, strings.Join(initial, ","), nil
}

// Embedded starts an n-member cluster inside the test process and closes
// it at the end of the test.
func Embedded(t testing.TB, n int) *Cluster {
	t.Helper()
	var lastErr error
	for range 3 { // a port taken between freePorts and Listen: try again
		c, err := startEmbedded(t.TempDir(), n)
		if err == nil {
			t.Cleanup(c.Close)
			return c
		}
		lastErr = err
	}
	t.Fatalf("etcdtest: start %d embedded members: %v", n, lastErr)
	return nil
}

func startEmbedded(dir string, n int) (*Cluster, error) {
	ms, initial, err := layout(n)
	if err != nil {
		return nil, err
	}
	c := &Cluster{stopped: make([]bool, n)}
	for _, m := range ms {
		cfg := embed.NewConfig()
		cfg.Name = m.name
		cfg.Dir = filepath.Join(dir, m.name)
		pu, _ := url.Parse(m.peer)
		cu, _ := url.Parse(m.client)
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
		cfg.InitialCluster = initial
		cfg.InitialClusterToken = "etcdtest"
		cfg.ClusterState = embed.ClusterStateFlagNew
		cfg.TickMs, cfg.ElectionMs = 50, 500
		cfg.UnsafeNoFsync = true // test data: no need to survive a host crash
		cfg.EnableGRPCGateway = false
		cfg.LogLevel = "error"
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("member %s: %w", m.name, err)
		}
		c.embeds = append(c.embeds, e)
		c.Endpoints = append(c.Endpoints, m.client)
	}
	timeout := time.After(30 * time.Second)
	for i, e := range c.embeds {
		select {
		case <-e.Server.ReadyNotify():
		case err := <-e.Err():
			c.Close()
			return nil, fmt.Errorf("member %s: %w", ms[i].name, err)
		case <-timeout:
			c.Close()
			return nil, fmt.Errorf("member %s: not ready after 30s", ms[i].name)
		}
	}
	return c, nil
}

// Binary is the path of the distribution's etcd server binary, or "" when
// it is not installed.
func Binary() string {
	p, err := exec.LookPath("etcd")
	if err != nil {
		return ""
	}
	return p
}

// RequireBinary skips the test when the etcd binary is missing, and fails
// it under CI=true (where .ci/run installs it).
func RequireBinary(t testing.TB) string {
	t.Helper()
	p := Binary()
	if p == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("etcdtest: the etcd binary (Debian package etcd-server) is missing under CI=true; .ci/run installs it")
		}
		t.Skip("etcdtest: the etcd binary (Debian package etcd-server) is not installed")
	}
	return p
}

// Processes starts an n-member cluster as separate etcd processes and
// kills them (by PID) at the end of the test.
func Processes(t testing.TB, n int) *Cluster {
	t.Helper()
	bin := RequireBinary(t)
	var lastErr error
	for range 3 {
		c, err := startProcesses(bin, t.TempDir(), n)
		if err == nil {
			t.Cleanup(c.Close)
			return c
		}
		lastErr = err
	}
	t.Fatalf("etcdtest: start %d etcd processes: %v", n, lastErr)
	return nil
}

func startProcesses(bin, dir string, n int) (*Cluster, error) {
	ms, initial, err := layout(n)
	if err != nil {
		return nil, err
	}
	c := &Cluster{stopped: make([]bool, n)}
	for _, m := range ms {
		logf, err := os.Create(filepath.Join(dir, m.name+".log"))
		if err != nil {
			c.Close()
			return nil, err
		}
		cmd := exec.Command(bin,
			"--name", m.name,
			"--data-dir", filepath.Join(dir, m.name),
			"--listen-peer-urls", m.peer,
			"--initial-advertise-peer-urls", m.peer,
			"--listen-client-urls", m.client,
			"--advertise-client-urls", m.client,
			"--initial-cluster", initial,
			"--initial-cluster-token", "etcdtest",
			"--initial-cluster-state", "new",
			"--heartbeat-interval", "50",
			"--election-timeout", "500",
			"--logger", "zap",
			"--log-level", "error",
		)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			_ = logf.Close()
			c.Close()
			return nil, fmt.Errorf("start %s: %w", m.name, err)
		}
		_ = logf.Close() // the child holds its own descriptor
		c.procs = append(c.procs, cmd)
		c.Endpoints = append(c.Endpoints, m.client)
	}
	// Ready when a linearizable read succeeds through every member.
	deadline := time.Now().Add(30 * time.Second)
	for i, ep := range c.Endpoints {
		for {
			if err := ping(ep); err == nil {
				break
			} else if time.Now().After(deadline) {
				c.Close()
				log, _ := os.ReadFile(filepath.Join(dir, ms[i].name+".log"))
				return nil, fmt.Errorf("member %s at %s not ready after 30s: %v\n%s", ms[i].name, ep, err, log)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c, nil
}

func ping(endpoint string) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = cli.Get(ctx, "etcdtest-ping")
	return err
}

// PID returns member i's process id (process clusters only).
func (c *Cluster) PID(i int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i >= len(c.procs) {
		return 0
	}
	return c.procs[i].Process.Pid
}

// Kill stops member i at once: SIGKILL to its PID for a process, Close for
// an embedded member.
func (c *Cluster) Kill(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopLocked(i)
}

func (c *Cluster) stopLocked(i int) {
	if c.stopped[i] {
		return
	}
	c.stopped[i] = true
	if i < len(c.procs) {
		_ = c.procs[i].Process.Kill()
		_ = c.procs[i].Wait()
	}
	if i < len(c.embeds) {
		c.embeds[i].Close()
	}
}

// Close stops every member that is still running.
func (c *Cluster) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.stopped {
		if i < len(c.procs) || i < len(c.embeds) {
			c.stopLocked(i)
		}
	}
}

// Client returns a client of the cluster (all endpoints), closed at the end
// of the test.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcdtest: client of %v: %v", c.Endpoints, err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// LeakOptions are the goleak options for packages that start embedded
// members. embed.Etcd.Close closes the members' listeners but not the
// keep-alive HTTP connections their raft transports opened to each other
// (the connections' reader goroutines in net/http, under cmux, outlive
// Close until the peer's idle timeout); those, and goroutines etcd's
// libraries keep for the process's lifetime, are not ours to stop. The
// packages that use this start no HTTP traffic of their own.
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("net/http.(*connReader).backgroundRead"),
		goleak.IgnoreAnyFunction("net/http.(*conn).serve"),
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun"),
	}
}
