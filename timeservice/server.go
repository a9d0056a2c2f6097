package timeservice

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	timev1 "github.com/meridiantime/meridian/api/meridian/time/v1"
	"github.com/meridiantime/meridian/internal/addr"
	"github.com/meridiantime/meridian/truetime"
)

// ServiceName is the health-check name of the TimeService.
const ServiceName = "meridian.time.v1.TimeService"

// TLSFiles name PEM files; CA set means clients must present a certificate
// signed by it (mTLS).
type TLSFiles struct{ Cert, Key, CA string }

// ServerConfig configures the listeners.
type ServerConfig struct {
	// Listen: "unix:///path/grpc.sock" (mode 0660, no TLS: the file mode is
	// the access control) or "host:port" (TCP, TLS when TLS.Cert is set).
	Listen []string
	TLS    TLSFiles
	// Registerer receives the gRPC metrics (nil: not exported).
	Registerer prometheus.Registerer
	Log        *slog.Logger
	// GracePeriod bounds the graceful stop (0 → 2s).
	GracePeriod time.Duration
}

// Server serves a Service on its listeners, with grpc.health.v1 and server
// reflection.
type Server struct {
	svc    *Service
	cfg    ServerConfig
	health *health.Server
	plain  *grpc.Server // unix sockets and TCP without TLS
	secure *grpc.Server // TCP with TLS
	lns    []listener
}

type listener struct {
	net.Listener
	secure bool
}

// listenUnix binds a unix socket with mode 0660, replacing a stale socket
// file but refusing when another process still accepts on it.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another process is serving on this socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// ServerTLS builds the server's TLS configuration (TLS 1.3 only; mTLS when
// a CA is set).
func ServerTLS(f TLSFiles) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("grpc.tls: %w", err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("grpc.tls.ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("grpc.tls.ca: %s holds no PEM certificate", f.CA)
		}
		c.ClientCAs = pool
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// NewServer opens every listener (so that errors surface before serving)
// and registers the services. Nothing is served until Serve.
func NewServer(svc *Service, cfg ServerConfig) (_ *Server, err error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.GracePeriod == 0 {
		cfg.GracePeriod = 2 * time.Second
	}
	s := &Server{svc: svc, cfg: cfg, health: health.NewServer()}
	defer func() {
		if err != nil {
			for _, l := range s.lns {
				l.Close()
			}
		}
	}()
	var tlsConf *tls.Config
	if cfg.TLS.Cert != "" {
		if tlsConf, err = ServerTLS(cfg.TLS); err != nil {
			return nil, err
		}
	}
	for _, a := range cfg.Listen {
		network, where, err := addr.Parse(a)
		if err != nil {
			return nil, fmt.Errorf("grpc.listen: %w", err)
		}
		var ln net.Listener
		if network == "unix" {
			ln, err = listenUnix(where)
		} else {
			ln, err = net.Listen("tcp", where)
		}
		if err != nil {
			return nil, fmt.Errorf("grpc.listen %s: %w", a, err)
		}
		secure := network == "tcp" && tlsConf != nil
		if network == "tcp" && !secure {
			if h, _, _ := net.SplitHostPort(where); !isLoopback(h) {
				cfg.Log.Warn("gRPC on TCP without TLS: anyone on the network can read and spoof time", "listen", a)
			}
		}
		s.lns = append(s.lns, listener{ln, secure})
	}
	m := newMetrics(cfg.Registerer, svc)
	build := func(creds credentials.TransportCredentials) *grpc.Server {
		g := grpc.NewServer(grpc.Creds(creds), grpc.StatsHandler(connTagger{}),
			grpc.ChainUnaryInterceptor(m.unary), grpc.ChainStreamInterceptor(m.stream),
			grpc.MaxRecvMsgSize(64<<10), grpc.MaxConcurrentStreams(4096), grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))))
		timev1.RegisterTimeServiceServer(g, svc)
		healthpb.RegisterHealthServer(g, s.health)
		reflection.Register(g)
		return g
	}
	s.plain = build(insecure.NewCredentials())
	if tlsConf != nil {
		s.secure = build(credentials.NewTLS(tlsConf))
	}
	return s, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Addrs are the bound listener addresses ("unix:///path" or "host:port").
func (s *Server) Addrs() []string {
	var out []string
	for _, l := range s.lns {
		if l.Addr().Network() == "unix" {
			out = append(out, "unix://"+l.Addr().String())
		} else {
			out = append(out, l.Addr().String())
		}
	}
	return out
}

// Serve serves until ctx ends, keeping the TimeService health status in
// step with synchronisation (SERVING unless unsynchronized; the overall
// server status "" is SERVING while running). Then it ends long calls,
// stops gracefully within the grace period and returns when every
// goroutine it started has stopped.
func (s *Server) Serve(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(s.lns))
	for _, l := range s.lns {
		g := s.plain
		if l.secure {
			g = s.secure
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				errs <- err
			}
		}()
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	tt := s.svc.opt.TT
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var err error
	for done := false; !done; {
		changed := tt.Changed()
		st := healthpb.HealthCheckResponse_SERVING
		if truetime.Bound(tt.LocalNS(), tt.Estimate()).Status == truetime.Unsynchronized {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		s.health.SetServingStatus(ServiceName, st)
		select {
		case <-ctx.Done():
			done = true
		case err = <-errs:
			done = true
		case <-changed:
		case <-tick.C:
		}
	}
	s.health.Shutdown()
	s.svc.Shutdown()
	stopped := make(chan struct{})
	go func() {
		s.plain.GracefulStop()
		if s.secure != nil {
			s.secure.GracefulStop()
		}
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(s.cfg.GracePeriod):
		s.plain.Stop()
		if s.secure != nil {
			s.secure.Stop()
		}
		<-stopped
	}
	wg.Wait()
	return err
}

// metrics: gRPC latency by method and code, and open Watch streams.
type metrics struct {
	dur *prometheus.HistogramVec
	ok  map[string]prometheus.Observer // pre-resolved "OK" children: no lookup on the hot path
}

func newMetrics(reg prometheus.Registerer, svc *Service) *metrics {
	m := &metrics{
		dur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "meridian_grpc_request_duration_seconds",
			Help:    "Time to handle a TimeService call (a Watch stream: its lifetime), by method and status code.",
			Buckets: []float64{5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.025, 0.1, 1, 10},
		}, []string{"method", "code"}),
		ok: map[string]prometheus.Observer{},
	}
	for _, md := range timev1.TimeService_ServiceDesc.Methods {
		m.ok[md.MethodName] = m.dur.WithLabelValues(md.MethodName, "OK")
	}
	for _, sd := range timev1.TimeService_ServiceDesc.Streams {
		m.ok[sd.StreamName] = m.dur.WithLabelValues(sd.StreamName, "OK")
	}
	if reg != nil {
		reg.MustRegister(m.dur, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "meridian_grpc_watch_streams", Help: "Open TimeService Watch streams.",
		}, func() float64 { return float64(svc.Watchers()) }), prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "meridian_grpc_wait_calls", Help: "Blocked TimeService WaitUntilAfter calls.",
		}, func() float64 { return float64(svc.Waiters()) }))
	}
	return m
}

func (m *metrics) observe(full string, start time.Time, err error) {
	name := methodName(full)
	d := time.Since(start).Seconds()
	if err == nil {
		if o, ok := m.ok[name]; ok {
			o.Observe(d)
			return
		}
	}
	if _, known := m.ok[name]; !known {
		return // health and reflection calls are not TimeService latency
	}
	m.dur.WithLabelValues(name, status.Code(err).String()).Observe(d)
}

func (m *metrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	m.observe(info.FullMethod, start, err)
	return resp, err
}

func (m *metrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	start := time.Now()
	err := h(srv, ss)
	m.observe(info.FullMethod, start, err)
	return err
}

// connTagger gives each connection its blocking-call counter (Service.acquire).
type connTagger struct{}

func (connTagger) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return context.WithValue(ctx, connKey{}, &connCalls{})
}
func (connTagger) HandleConn(context.Context, stats.ConnStats)                     {}
func (connTagger) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (connTagger) HandleRPC(context.Context, stats.RPCStats)                       {}
