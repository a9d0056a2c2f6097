// Package client gives applications Meridian's TrueTime through one
// interface, TimeSource, with three implementations chosen by
// configuration:
//
//   - Shm: the daemon's shared-memory segment, lock-free and without a
//     system call (the fast path for processes on the same host);
//   - GRPC: the daemon's TimeService over a unix socket or TCP (+TLS);
//   - Local: an in-process *truetime.Clock (tests, embedded use).
//
// All three return the same errors: truetime.ErrUnsynchronized when no
// interval can be promised (truetime.ErrDisrupted, which also matches
// ErrUnsynchronized, while the host's clocks are disrupted), the context's
// error when it ends. Shm and a unix-socket GRPC refuse files in a
// directory another local user controls.
//
// Invariants:
//   - An interval returned by any implementation was computed by
//     truetime.Bound from one estimate and one reading of the clock it was
//     published for; no implementation caches an interval.
//   - WaitUntilAfter returns nil only after After(t) was observed true; it
//     sleeps (timers, or the server's wait), never spins.
package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	timev1 "github.com/meridiantime/meridian/api/meridian/time/v1"
	"github.com/meridiantime/meridian/internal/addr"
	"github.com/meridiantime/meridian/internal/fsown"
	"github.com/meridiantime/meridian/internal/rundir"
	"github.com/meridiantime/meridian/truetime"
	"github.com/meridiantime/meridian/truetime/shm"
)

// TimeSource is TrueTime as an application sees it.
type TimeSource interface {
	// Now returns an interval that contains true time.
	Now(ctx context.Context) (truetime.Interval, error)
	// After reports whether tNS has definitely passed (tNS < earliest).
	After(ctx context.Context, tNS int64) (bool, error)
	// Before reports whether tNS has definitely not arrived (tNS > latest).
	Before(ctx context.Context, tNS int64) (bool, error)
	// WaitUntilAfter blocks until After(tNS) is true or ctx ends.
	WaitUntilAfter(ctx context.Context, tNS int64) error
	// Status reports the clock's synchronisation state (it answers while
	// unsynchronized too).
	Status(ctx context.Context) (Status, error)
	// Watch sends the Status at once and then at every change of status,
	// stratum or reference; the channel closes when ctx ends or the
	// transport fails.
	Watch(ctx context.Context) (<-chan Status, error)
	Close() error
}

// Status is what a TimeSource knows about the clock's synchronisation.
type Status struct {
	Status truetime.Status
	// Interval is set while synchronized or in holdover.
	Interval       truetime.Interval
	OffsetNS       float64 // estimated local minus true time
	FreqPPB        float64 // frequency correction applied
	Stratum        uint8
	Reference      string // upstream address, LOCL or a reference ID
	RootDelay      time.Duration
	RootDispersion time.Duration
	LastSampleAge  time.Duration // -1: no sample
	MaxError       time.Duration
	// Reason says why it is not synchronized (over gRPC; "" otherwise).
	Reason string
	// Transport names where the status came from: "shm:PATH",
	// "grpc:ADDRESS" or "local".
	Transport string
}

// statusOf builds a Status from an estimate and the interval at local
// reading localNS.
func statusOf(e truetime.Estimate, iv truetime.Interval, localNS int64, transport string) Status {
	s := Status{Status: iv.Status, OffsetNS: e.OffsetNS, FreqPPB: e.FreqPPB, Stratum: e.Stratum, Reference: e.Reference(),
		RootDelay: time.Duration(e.RootDelayNS), RootDispersion: time.Duration(e.RootDispersionNS),
		LastSampleAge: -1, MaxError: time.Duration(e.MaxErrorNS), Transport: transport}
	if iv.Status == truetime.Synchronized || iv.Status == truetime.Holdover {
		s.Interval = iv
	}
	if e.LastSampleNS != 0 {
		s.LastSampleAge = time.Duration(localNS - e.LastSampleNS)
	}
	return s
}

// WatchInterval is how often a Watch over shared memory or in-process
// polls for a change (they cannot be woken).
const WatchInterval = 100 * time.Millisecond

// PollWatch is Watch for a source that can only be polled: status is read
// every WatchInterval and sent when its status, stratum or reference
// changed (and once at the start). Sources other than this package's use
// it too.
func PollWatch(ctx context.Context, status func(context.Context) (Status, error)) (<-chan Status, error) {
	first, err := status(ctx)
	if err != nil {
		return nil, err
	}
	ch := make(chan Status, 1)
	ch <- first
	go func() {
		defer close(ch)
		last := first
		t := time.NewTicker(WatchInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			s, err := status(ctx)
			if err != nil {
				return
			}
			if s.Status == last.Status && s.Stratum == last.Stratum && s.Reference == last.Reference {
				continue
			}
			last = s
			select {
			case ch <- s:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, nil
}

// ---- time.Time helpers ----

// NowTime is Now as time.Time values.
func NowTime(ctx context.Context, ts TimeSource) (earliest, latest time.Time, err error) {
	iv, err := ts.Now(ctx)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	return time.Unix(0, iv.EarliestNS), time.Unix(0, iv.LatestNS), nil
}

// AfterTime reports whether t has definitely passed.
func AfterTime(ctx context.Context, ts TimeSource, t time.Time) (bool, error) {
	return ts.After(ctx, t.UnixNano())
}

// BeforeTime reports whether t has definitely not arrived.
func BeforeTime(ctx context.Context, ts TimeSource, t time.Time) (bool, error) {
	return ts.Before(ctx, t.UnixNano())
}

// WaitUntilAfterTime blocks until t has definitely passed (commit wait).
func WaitUntilAfterTime(ctx context.Context, ts TimeSource, t time.Time) error {
	return ts.WaitUntilAfter(ctx, t.UnixNano())
}

// Config selects and configures a TimeSource.
type Config struct {
	Kind    string // "shm" (default) | "grpc"
	ShmPath string // shm: the segment ("": the daemon's, found as meridianctl finds it)
	Address string // grpc: unix:///path or host:port ("": the daemon's unix socket)
	TLS     TLS    // grpc over TCP: zero value means plaintext
}

// Open returns the TimeSource that c names; Config{} is the local daemon's
// shared-memory segment. It creates nothing. Errors name the transport and
// the path or address that failed.
func Open(c Config) (TimeSource, error) {
	switch c.Kind {
	case "", "shm":
		if c.ShmPath == "" {
			c.ShmPath = rundir.Locate("truetime.shm")
		}
		return OpenShm(c.ShmPath)
	case "grpc":
		if c.Address == "" {
			c.Address = "unix://" + rundir.Locate("grpc.sock")
		}
		g, err := DialGRPC(c.Address, c.TLS)
		if err != nil {
			return nil, fmt.Errorf("client: grpc %s: %w", c.Address, err)
		}
		return g, nil
	default:
		return nil, fmt.Errorf("client: kind %q: want shm or grpc", c.Kind)
	}
}

// ---- in-process ----

// Local is a TimeSource over an in-process TrueTime clock.
type Local struct{ C *truetime.Clock }

// Now implements TimeSource.
func (l Local) Now(context.Context) (truetime.Interval, error) { return l.C.Now() }

// After implements TimeSource.
func (l Local) After(_ context.Context, tNS int64) (bool, error) {
	if err := truetime.CheckTimestamp(tNS); err != nil {
		return false, err
	}
	return l.C.After(tNS)
}

// Before implements TimeSource.
func (l Local) Before(_ context.Context, tNS int64) (bool, error) {
	if err := truetime.CheckTimestamp(tNS); err != nil {
		return false, err
	}
	return l.C.Before(tNS)
}

// WaitUntilAfter implements TimeSource.
func (l Local) WaitUntilAfter(ctx context.Context, tNS int64) error {
	if err := truetime.CheckTimestamp(tNS); err != nil {
		return err
	}
	return l.C.WaitUntilAfter(ctx, tNS)
}

// Status implements TimeSource.
func (l Local) Status(context.Context) (Status, error) {
	iv, _ := l.C.Now()
	return statusOf(l.C.Estimate(), iv, l.C.LocalNS(), "local"), nil
}

// Watch implements TimeSource (polled).
func (l Local) Watch(ctx context.Context) (<-chan Status, error) { return PollWatch(ctx, l.Status) }

// Close implements TimeSource.
func (Local) Close() error { return nil }

// ---- shared memory ----

// Shm is a TimeSource over the daemon's shared-memory segment.
type Shm struct {
	r    *shm.Reader
	path string
}

// OpenShm maps the segment at path.
func OpenShm(path string) (*Shm, error) {
	r, err := shm.Open(path)
	if err != nil {
		return nil, fmt.Errorf("client: shm %s: %w", path, err)
	}
	return &Shm{r: r, path: path}, nil
}

// Status implements TimeSource: the segment's estimate, judged as Now is.
func (s *Shm) Status(context.Context) (Status, error) {
	in, err := s.r.Inspect()
	if err != nil {
		return Status{}, fmt.Errorf("client: shm %s: %w", s.path, err)
	}
	return statusOf(in.Estimate, in.Interval, in.LocalNS, "shm:"+s.path), nil
}

// Watch implements TimeSource (polled: shared memory cannot wake a reader).
func (s *Shm) Watch(ctx context.Context) (<-chan Status, error) { return PollWatch(ctx, s.Status) }

// MaxShmSleep caps one sleep of Shm.WaitUntilAfter: shared memory cannot
// wake a waiter, so a new, narrower estimate is noticed within this time.
const MaxShmSleep = 10 * time.Millisecond

// Now implements TimeSource; it neither allocates nor enters the kernel.
func (s *Shm) Now(context.Context) (truetime.Interval, error) { return s.r.Now() }

// After implements TimeSource.
func (s *Shm) After(_ context.Context, tNS int64) (bool, error) {
	if err := truetime.CheckTimestamp(tNS); err != nil {
		return false, err
	}
	iv, err := s.r.Now()
	if err != nil {
		return false, err
	}
	return iv.After(tNS), nil
}

// Before implements TimeSource.
func (s *Shm) Before(_ context.Context, tNS int64) (bool, error) {
	if err := truetime.CheckTimestamp(tNS); err != nil {
		return false, err
	}
	iv, err := s.r.Now()
	if err != nil {
		return false, err
	}
	return iv.Before(tNS), nil
}

// WaitUntilAfter implements TimeSource: it sleeps for the remaining
// distance tNS − earliest (at most MaxShmSleep), re-reading after each
// sleep. While unsynchronized it keeps waiting, like truetime.Clock.
func (s *Shm) WaitUntilAfter(ctx context.Context, tNS int64) error {
	if err := truetime.CheckTimestamp(tNS); err != nil {
		return err
	}
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for {
		d := MaxShmSleep
		if iv, err := s.r.Now(); err == nil {
			if iv.After(tNS) {
				return nil
			}
			d = min(d, time.Duration(iv.UntilAfterNS(tNS)))
		}
		t.Reset(d)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Close unmaps the segment.
func (s *Shm) Close() error { return s.r.Close() }

// ---- gRPC ----

// TLS configures a gRPC client over TCP: CA verifies the server (empty: the
// system roots), Cert/Key present a client certificate (mTLS),
// ServerName overrides the name checked in the server's certificate.
type TLS struct {
	Enable                    bool
	CA, Cert, Key, ServerName string
}

func (t TLS) config() (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS13, ServerName: t.ServerName}
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, err
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", t.CA)
		}
	}
	if t.Cert != "" || t.Key != "" {
		cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, err
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// Dial connects to a TimeService address (unix:///path or host:port). The
// connection is made lazily; the first call reports an unreachable daemon.
func Dial(address string, t TLS) (*grpc.ClientConn, error) {
	network, where, err := addr.Parse(address)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	creds := insecure.NewCredentials()
	if t.Enable || t.CA != "" || t.Cert != "" {
		if network == "unix" {
			return nil, errors.New("client: TLS is for TCP; unix sockets are protected by their file mode")
		}
		c, err := t.config()
		if err != nil {
			return nil, fmt.Errorf("client: TLS: %w", err)
		}
		creds = credentials.NewTLS(c)
	}
	target := "unix://" + where
	if network == "tcp" {
		target = "passthrough:///" + where
	}
	return grpc.NewClient(target, grpc.WithTransportCredentials(creds))
}

// GRPC is a TimeSource over the daemon's TimeService.
type GRPC struct {
	conn *grpc.ClientConn
	c    timev1.TimeServiceClient
}

// statusFromRPC converts the Status call's answer.
func statusFromRPC(r *timev1.StatusResponse, transport string) Status {
	s := Status{Stratum: uint8(r.GetStratum()), Reference: r.GetReferenceId(), OffsetNS: r.GetOffsetNs(), FreqPPB: r.GetFrequencyPpb(),
		RootDelay: time.Duration(r.GetRootDelayNs()), RootDispersion: time.Duration(r.GetRootDispersionNs()),
		LastSampleAge: time.Duration(r.GetLastSampleAgeNs()), MaxError: time.Duration(r.GetMaxErrorNs()),
		Reason: r.GetReason(), Transport: transport}
	switch r.GetStatus() {
	case timev1.ClockStatus_CLOCK_STATUS_SYNCHRONIZED:
		s.Status = truetime.Synchronized
	case timev1.ClockStatus_CLOCK_STATUS_HOLDOVER:
		s.Status = truetime.Holdover
	case timev1.ClockStatus_CLOCK_STATUS_DISRUPTED:
		s.Status = truetime.Disrupted
	default:
		s.Status = truetime.Unsynchronized
	}
	if r.GetLastSampleAgeNs() < 0 {
		s.LastSampleAge = -1
	}
	if iv := r.GetInterval(); iv != nil {
		s.Interval = Interval(iv)
		s.Interval.Status = s.Status
	}
	return s
}

// fail converts a call's error: the clock's own answers (unsynchronized,
// disrupted) and the context's errors as FromStatus does; anything else
// (the daemon unreachable, a refused call) named with the transport and
// the address.
func (g *GRPC) fail(err error) error {
	if err == nil {
		return nil
	}
	if e := FromStatus(err); e != err {
		return e
	}
	return fmt.Errorf("client: grpc %s: %w", g.conn.Target(), err)
}

// Status implements TimeSource.
func (g *GRPC) Status(ctx context.Context) (Status, error) {
	r, err := g.c.Status(ctx, &timev1.StatusRequest{})
	if err != nil {
		return Status{}, g.fail(err)
	}
	return statusFromRPC(r, "grpc:"+g.conn.Target()), nil
}

// Watch implements TimeSource over the server's Watch stream (status
// changes only).
func (g *GRPC) Watch(ctx context.Context) (<-chan Status, error) {
	stream, err := g.c.Watch(ctx, &timev1.WatchRequest{ChangesOnly: true})
	if err != nil {
		return nil, g.fail(err)
	}
	ch := make(chan Status, 1)
	go func() {
		defer close(ch)
		for {
			r, err := stream.Recv()
			if err != nil {
				return
			}
			select {
			case ch <- statusFromRPC(r, "grpc:"+g.conn.Target()):
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, nil
}

// DialGRPC returns a TimeSource over a new connection to address.
//
// A unix socket must sit in a directory only root, this user or a user root
// handed the directory to can write (the rule shm.Open applies to
// the segment): a socket another local user planted would answer with any
// time it likes.
func DialGRPC(address string, t TLS) (*GRPC, error) {
	if p, ok := strings.CutPrefix(address, "unix://"); ok {
		if err := checkSocket(p); err != nil {
			return nil, err
		}
	}
	conn, err := Dial(address, t)
	if err != nil {
		return nil, err
	}
	return &GRPC{conn: conn, c: timev1.NewTimeServiceClient(conn)}, nil
}

func checkSocket(p string) error {
	owner, err := fsown.CheckTrustedDir(filepath.Dir(p))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // nothing to trust or distrust: the dial reports it
		}
		return fmt.Errorf("client: refusing %s: %w", p, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return nil
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return fmt.Errorf("client: refusing %s: it is a symlink (another user may have planted it): use the real path", p)
	}
	if euid := uint32(os.Geteuid()); st.Uid != 0 && st.Uid != euid && st.Uid != owner {
		return fmt.Errorf("client: refusing %s: owned by uid %d, neither root, this user (uid %d) nor the directory's owner (uid %d)", p, st.Uid, euid, owner)
	}
	return nil
}

// NewGRPC wraps an existing connection (Close then closes it).
func NewGRPC(conn *grpc.ClientConn) *GRPC {
	return &GRPC{conn: conn, c: timev1.NewTimeServiceClient(conn)}
}

// Conn is the underlying connection (for health checks and reflection).
func (g *GRPC) Conn() *grpc.ClientConn { return g.conn }

// Service is the generated client, for the calls TimeSource does not cover
// (Status, Sources, Watch, HLC).
func (g *GRPC) Service() timev1.TimeServiceClient { return g.c }

// FromStatus converts a TimeService error: FAILED_PRECONDITION becomes
// truetime.ErrUnsynchronized, cancellation and deadlines the context
// errors; everything else is returned unchanged (a *status.Status error).
func FromStatus(err error) error {
	switch status.Code(err) {
	case codes.OK:
		return err
	case codes.FailedPrecondition:
		if status.Convert(err).Message() == truetime.ErrDisrupted.Error() {
			return truetime.ErrDisrupted
		}
		return truetime.ErrUnsynchronized
	case codes.DeadlineExceeded:
		return context.DeadlineExceeded
	case codes.Canceled:
		return context.Canceled
	}
	return err
}

// Interval converts the wire interval.
func Interval(iv *timev1.Interval) truetime.Interval {
	st := truetime.Unsynchronized
	switch iv.GetStatus() {
	case timev1.ClockStatus_CLOCK_STATUS_SYNCHRONIZED:
		st = truetime.Synchronized
	case timev1.ClockStatus_CLOCK_STATUS_HOLDOVER:
		st = truetime.Holdover
	case timev1.ClockStatus_CLOCK_STATUS_DISRUPTED:
		st = truetime.Disrupted
	}
	return truetime.Interval{EarliestNS: iv.GetEarliestNs(), LatestNS: iv.GetLatestNs(), Status: st}
}

// Now implements TimeSource.
func (g *GRPC) Now(ctx context.Context) (truetime.Interval, error) {
	iv, err := g.c.Now(ctx, &timev1.NowRequest{})
	if err != nil {
		return truetime.Interval{}, g.fail(err)
	}
	return Interval(iv), nil
}

// ErrInconsistentAnswer is returned when a server's After/Before value
// contradicts the interval it sent with it (truetime.Interval.After/Before
// applied to that interval): a server bug, never a true or false answer.
var ErrInconsistentAnswer = errors.New("client: server's answer contradicts its own interval")

// checked returns the server's answer after verifying it against the
// interval it came from.
func checked(r *timev1.BoolResponse, tNS int64, after bool) (bool, error) {
	iv := Interval(r.GetInterval())
	want := iv.Before(tNS)
	if after {
		want = iv.After(tNS)
	}
	if r.GetInterval() == nil || r.GetValue() != want {
		return false, fmt.Errorf("%w: ts %d, value %v, interval [%d, %d]", ErrInconsistentAnswer, tNS, r.GetValue(), iv.EarliestNS, iv.LatestNS)
	}
	return want, nil
}

// After implements TimeSource.
func (g *GRPC) After(ctx context.Context, tNS int64) (bool, error) {
	if err := truetime.CheckTimestamp(tNS); err != nil {
		return false, err
	}
	r, err := g.c.After(ctx, &timev1.TimestampRequest{TsNs: tNS})
	if err != nil {
		return false, g.fail(err)
	}
	return checked(r, tNS, true)
}

// Before implements TimeSource.
func (g *GRPC) Before(ctx context.Context, tNS int64) (bool, error) {
	if err := truetime.CheckTimestamp(tNS); err != nil {
		return false, err
	}
	r, err := g.c.Before(ctx, &timev1.TimestampRequest{TsNs: tNS})
	if err != nil {
		return false, g.fail(err)
	}
	return checked(r, tNS, false)
}

// WaitUntilAfter implements TimeSource with the server's wait.
func (g *GRPC) WaitUntilAfter(ctx context.Context, tNS int64) error {
	if err := truetime.CheckTimestamp(tNS); err != nil {
		return err
	}
	_, err := g.c.WaitUntilAfter(ctx, &timev1.TimestampRequest{TsNs: tNS})
	return g.fail(err)
}

// Close closes the connection.
func (g *GRPC) Close() error { return g.conn.Close() }

var (
	_ TimeSource = Local{}
	_ TimeSource = (*Shm)(nil)
	_ TimeSource = (*GRPC)(nil)
)
