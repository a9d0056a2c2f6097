package accuracy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
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
	"github.com/meridiantime/meridian/truetime/shm"
)

// proc is a peer or daemon we started: killed by PID on stop, and by the
// kernel if this process dies first (Pdeathsig).
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	started time.Time
	done    chan struct{} // closed when an output reader has finished
}

func (p *proc) stop() {
	_ = p.cmd.Process.Kill()
	if p.done != nil {
		<-p.done
	}
	_ = p.cmd.Wait()
}

// logTail is the end of the process's log (empty when it has none).
func (p *proc) logTail() string {
	if p.logPath == "" {
		return ""
	}
	b, _ := os.ReadFile(p.logPath)
	return string(b[max(0, len(b)-4096):])
}

// startLogged starts cmd in a namespace with its output in dir/name.log.
func startLogged(name, dir string, cmd *exec.Cmd) (*proc, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // ip (and setpriv) exec the program: this PID is its own
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("accuracy: %s: %w", name, err)
	}
	defer f.Close() // the child has its own descriptor
	cmd.Stdout, cmd.Stderr = f, f
	p := &proc{name: name, cmd: cmd, logPath: logPath, started: time.Now()}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("accuracy: start %s: %w", name, err)
	}
	return p, nil
}

// meridiandYAML is a daemon's configuration with its files in dir.
func writeMeridiand(dir, name, body string) (string, error) {
	cfg := filepath.Join(dir, name+".yaml")
	body += fmt.Sprintf("grpc: {listen: []}\nshm: {path: %s}\nstate_dir: %s\n",
		filepath.Join(dir, name+".shm"), filepath.Join(dir, name+"-state"))
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		return "", fmt.Errorf("accuracy: %s: %w", name, err)
	}
	return cfg, nil
}

// startMeridiand runs meridiand in side's namespace of p.
func startMeridiand(bin string, p *impair.Pair, side impair.Side, dir, name, body string) (*proc, string, error) {
	cfg, err := writeMeridiand(dir, name, body)
	if err != nil {
		return nil, "", err
	}
	pr, err := startLogged(name, dir, p.Command(side, bin, "--config", cfg))
	return pr, filepath.Join(dir, name+".shm"), err
}

// waitShm opens the segment a daemon just started will create, waiting up
// to 10 s for it.
func waitShm(ctx context.Context, path string, pr *proc) (*shm.Reader, error) {
	for i := 0; ; i++ {
		r, err := shm.Open(path)
		if err == nil {
			return r, nil
		}
		if i > 100 || ctx.Err() != nil {
			return nil, fmt.Errorf("accuracy: %s: its shm segment %s never appeared: %v\n%s", pr.name, path, err, pr.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startChronyd runs `chronyd -x` in side's namespace of p with directives,
// every file in dir (mode 0700: chronyd refuses a command socket in a group-
// or world-accessible directory). It returns the command socket.
func startChronyd(p *impair.Pair, side impair.Side, dir, name, directives string) (*proc, string, error) {
	cdir := filepath.Join(dir, name)
	if err := os.MkdirAll(cdir, 0o700); err != nil {
		return nil, "", fmt.Errorf("accuracy: %s: %w", name, err)
	}
	sock := filepath.Join(cdir, "chronyd.sock")
	conf := fmt.Sprintf("%s\ncmdport 0\nbindcmdaddress %s\npidfile %s\ndriftfile %s\n",
		directives, sock, filepath.Join(cdir, "chronyd.pid"), filepath.Join(cdir, "drift"))
	cf := filepath.Join(cdir, "chrony.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return nil, "", fmt.Errorf("accuracy: %s: %w", name, err)
	}
	setpriv, err := need("setpriv")
	if err != nil {
		return nil, "", err
	}
	chronyd, err := need("chronyd")
	if err != nil {
		return nil, "", err
	}
	pr, err := startLogged(name, dir, p.Command(side, setpriv, "--bounding-set", "-sys_time", "--",
		chronyd, "-x", "-d", "-u", "root", "-f", cf))
	if err != nil {
		return nil, "", err
	}
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(sock); err == nil {
			return pr, sock, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	pr.stop()
	return nil, "", fmt.Errorf("accuracy: %s did not open its command socket\n%s", name, pr.logTail())
}

// chronycLine runs one chronyc command in CSV mode and returns its first
// line (3 s at most: a busy machine may time one out).
func chronycLine(sock string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "chronyc", append([]string{"-h", sock, "-c"}, args...)...).Output()
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line, nil
}

// Ptp4lSlaveConf is ptp4l as a unicast client of master on iface: slave
// only, free running (never touching a clock), software stamps, UDPv4, E2E,
// 60 s grants, its command socket at uds.
func Ptp4lSlaveConf(uds, master, iface string) string {
	return fmt.Sprintf(`[global]
free_running 1
slaveOnly 1
time_stamping software
network_transport UDPv4
delay_mechanism E2E
uds_address %s
summary_interval 0
logging_level 6
unicast_req_duration 60
[unicast_master_table]
table_id 1
logQueryInterval 0
UDPv4 %s
[%s]
unicast_master_table 1
`, uds, master, iface)
}

// startPtp4l runs ptp4l (slave only, free running, software stamps,
// unicast UDPv4 to server) on iface in side's namespace; each output line
// goes to onLine with the instant it was read, and to dir/name.log.
func startPtp4l(p *impair.Pair, side impair.Side, dir, name string, server netip.Addr, onLine func(time.Time, string)) (*proc, error) {
	conf := Ptp4lSlaveConf(filepath.Join(dir, name+".sock"), server.String(), p.Iface[side])
	if !strings.Contains(conf, "free_running 1") {
		return nil, errors.New("accuracy: ptp4l config without free_running 1")
	}
	cf := filepath.Join(dir, name+".conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("accuracy: %s: %w", name, err)
	}
	setpriv, err := need("setpriv")
	if err != nil {
		return nil, err
	}
	ptp4l, err := need("ptp4l")
	if err != nil {
		return nil, err
	}
	cmd := p.Command(side, setpriv, "--bounding-set", "-sys_time", "--", ptp4l, "-f", cf, "-m")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("accuracy: %s: %w", name, err)
	}
	cmd.Stderr = cmd.Stdout
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("accuracy: %s: %w", name, err)
	}
	pr := &proc{name: name, cmd: cmd, logPath: logPath, started: time.Now(), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("accuracy: start %s: %w", name, err)
	}
	go func() {
		defer close(pr.done)
		defer logf.Close()
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			now := time.Now()
			fmt.Fprintln(logf, sc.Text())
			onLine(now, sc.Text())
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	return pr, nil
}

// nsHTTPClient dials from inside side's namespace.
func nsHTTPClient(p *impair.Pair, side impair.Side) *http.Client {
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			ierr := p.InNS(side, func() error {
				var d net.Dialer
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, ierr
		}}}
}

// scrapeSourceDelay reads meridian_source_delay_seconds and
// meridian_source_interleaved_samples (0 when absent) from a daemon's
// metrics.
func scrapeSourceDelay(c *http.Client, addr netip.AddrPort) (ns, interleaved int64, ok bool) {
	resp, err := c.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		return 0, 0, false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, 0, false
	}
	if v, ok, err := ParseSourceMetric(bytes.NewReader(body), "meridian_source_interleaved_samples"); ok && err == nil {
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			interleaved = int64(f)
		}
	}
	ns, ok, err = ParseSourceDelay(bytes.NewReader(body))
	return ns, interleaved, ok && err == nil && ns > 0
}

// closers runs cleanups in reverse order, once.
type closers struct {
	mu  sync.Mutex
	fns []func() error
}

func (c *closers) add(fn func() error) { c.mu.Lock(); c.fns = append(c.fns, fn); c.mu.Unlock() }

func (c *closers) close() error {
	c.mu.Lock()
	fns := c.fns
	c.fns = nil
	c.mu.Unlock()
	var errs []error
	for i := len(fns) - 1; i >= 0; i-- {
		errs = append(errs, fns[i]())
	}
	return errors.Join(errs...)
}
