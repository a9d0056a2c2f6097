package timeservice

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	timev1 "github.com/meridiantime/meridian/api/meridian/time/v1"
	"github.com/meridiantime/meridian/hlc"
	"github.com/meridiantime/meridian/truetime"
)

// MaxWaitAheadNS is how far past the current latest bound WaitUntilAfter
// accepts a target: further is OUT_OF_RANGE (almost surely a unit mistake,
// and a call without deadline would hold a server goroutine for it).
const MaxWaitAheadNS = int64(time.Hour)

// Options configure a Service.
type Options struct {
	TT  *truetime.Clock // required
	HLC *hlc.Clock      // nil: the HLC calls answer UNIMPLEMENTED
	// Sources lists the configured sources for the Sources call (nil: none).
	Sources func() []*timev1.Source
	// ClockName is reported by Status (virtual | system | phc:...).
	ClockName string
	// Reason says why the status is not synchronized (nil: Status reports
	// none).
	Reason func() string
	// ServerStats fills the ServerStats call (nil: everything off), Clients
	// the Clients call (nil: no NTP server).
	ServerStats func() *timev1.ServerStatsResponse
	Clients     func(limit int) []*timev1.Client
	// MaxWatchers caps concurrent Watch streams (0 → 1024).
	MaxWatchers int
	// HLCRestartWait is how long an HLC call waits, right after a restart,
	// for physical time to pass the bound persisted by the previous run
	// (0 → DefaultHLCRestartWait). A longer wait, or one past the call's
	// deadline, is answered at once with UNAVAILABLE and a RetryInfo.
	HLCRestartWait time.Duration
	// MaxWaiters caps concurrent WaitUntilAfter calls (0 → 4096), and
	// MaxWaitersPerConn those of one client connection, Watch streams
	// included (0 → 256). Beyond: RESOURCE_EXHAUSTED.
	MaxWaiters, MaxWaitersPerConn int
}

// DefaultHLCRestartWait is Options.HLCRestartWait's default: ten times the
// HLC's default persisted window, so a restart whose host clock did not step
// back is always waited out.
const DefaultHLCRestartWait = time.Second

// MinTimestampNS is 2000-01-01T00:00:00Z: an earlier ts_ns is almost surely
// in the wrong unit (µs or ms where ns are expected) and is refused
// (truetime.CheckTimestamp, which the client library applies too).
const MinTimestampNS = truetime.MinTimestampNS

// Sources paging (AIP-158 style): page_size 0 → DefaultSourcesPage, at
// most MaxSourcesPage per reply.
const (
	DefaultSourcesPage = 256
	MaxSourcesPage     = 1000
)

// Service implements timev1.TimeServiceServer over an in-process TrueTime
// clock and HLC.
type Service struct {
	timev1.UnimplementedTimeServiceServer
	opt      Options
	started  time.Time
	watchers atomic.Int64
	waiters  atomic.Int64
	life     context.Context // cancelled by Shutdown: long calls end with UNAVAILABLE
	shutdown context.CancelFunc
}

// NewService returns a Service; it starts nothing.
func NewService(opt Options) (*Service, error) {
	if opt.TT == nil {
		return nil, errors.New("timeservice: Options.TT is required")
	}
	if opt.MaxWatchers == 0 {
		opt.MaxWatchers = 1024
	}
	if opt.HLCRestartWait == 0 {
		opt.HLCRestartWait = DefaultHLCRestartWait
	}
	if opt.MaxWaiters == 0 {
		opt.MaxWaiters = 4096
	}
	if opt.MaxWaitersPerConn == 0 {
		opt.MaxWaitersPerConn = 256
	}
	life, shutdown := context.WithCancel(context.Background())
	return &Service{opt: opt, started: time.Now(), life: life, shutdown: shutdown}, nil
}

// Shutdown ends every blocked WaitUntilAfter and Watch with UNAVAILABLE so
// that a graceful stop does not wait for them. Idempotent.
func (s *Service) Shutdown() { s.shutdown() }

// Watchers is the number of open Watch streams.
func (s *Service) Watchers() int64 { return s.watchers.Load() }

// Waiters is the number of blocked WaitUntilAfter calls.
func (s *Service) Waiters() int64 { return s.waiters.Load() }

// connKey tags a connection's context with its blocking-call counter (see
// connTagger in server.go); RPC contexts derive from it.
type connKey struct{}

// connCalls counts one connection's blocking calls.
type connCalls struct{ n atomic.Int64 }

// acquire takes one slot of the total counter (limit max) and of the
// connection's (limit s.opt.MaxWaitersPerConn); release gives them back.
func (s *Service) acquire(ctx context.Context, total *atomic.Int64, max int, what string) (release func(), err error) {
	if n := total.Add(1); n > int64(max) {
		total.Add(-1)
		return nil, status.Errorf(codes.ResourceExhausted, "too many concurrent %s calls (limit %d)", what, max)
	}
	cc, _ := ctx.Value(connKey{}).(*connCalls)
	if cc != nil {
		if n := cc.n.Add(1); n > int64(s.opt.MaxWaitersPerConn) {
			cc.n.Add(-1)
			total.Add(-1)
			return nil, status.Errorf(codes.ResourceExhausted,
				"too many concurrent blocking calls (WaitUntilAfter, Watch) on this connection (limit %d)", s.opt.MaxWaitersPerConn)
		}
	}
	return func() {
		if cc != nil {
			cc.n.Add(-1)
		}
		total.Add(-1)
	}, nil
}

var errShutdown = status.Error(codes.Unavailable, "meridiand is shutting down")

// StatusOf converts a truetime status to the wire enum.
func StatusOf(st truetime.Status) timev1.ClockStatus {
	switch st {
	case truetime.Synchronized:
		return timev1.ClockStatus_CLOCK_STATUS_SYNCHRONIZED
	case truetime.Holdover:
		return timev1.ClockStatus_CLOCK_STATUS_HOLDOVER
	case truetime.Disrupted:
		return timev1.ClockStatus_CLOCK_STATUS_DISRUPTED
	default:
		return timev1.ClockStatus_CLOCK_STATUS_UNSYNCHRONIZED
	}
}

// IntervalOf converts a TrueTime reading to the wire message.
func IntervalOf(iv truetime.Interval) *timev1.Interval {
	return &timev1.Interval{EarliestNs: iv.EarliestNS, LatestNs: iv.LatestNS, Status: StatusOf(iv.Status)}
}

// ttErr maps TrueTime and context errors to gRPC status codes.
func ttErr(err error) error {
	switch {
	case errors.Is(err, truetime.ErrDisrupted):
		return status.Error(codes.FailedPrecondition, truetime.ErrDisrupted.Error()) // clients map it back
	case errors.Is(err, truetime.ErrUnsynchronized):
		return status.Error(codes.FailedPrecondition, "clock is unsynchronized: no interval can be promised (see `meridianctl status`)")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	default:
		return status.Error(codes.Internal, err.Error())
	}
}

func checkTS(ts int64) error {
	if err := truetime.CheckTimestamp(ts); err != nil {
		return status.Error(codes.InvalidArgument, "ts_ns: "+err.Error())
	}
	return nil
}

// Now implements TimeService.Now.
func (s *Service) Now(context.Context, *timev1.NowRequest) (*timev1.Interval, error) {
	iv, err := s.opt.TT.Now()
	if err != nil {
		return nil, ttErr(err)
	}
	return IntervalOf(iv), nil
}

func (s *Service) compare(ts int64, after bool) (*timev1.BoolResponse, error) {
	if err := checkTS(ts); err != nil {
		return nil, err
	}
	iv, err := s.opt.TT.Now()
	if err != nil {
		return nil, ttErr(err)
	}
	v := iv.Before(ts)
	if after {
		v = iv.After(ts)
	}
	return &timev1.BoolResponse{Value: v, Interval: IntervalOf(iv)}, nil
}

// After implements TimeService.After: ts_ns < earliest.
func (s *Service) After(_ context.Context, r *timev1.TimestampRequest) (*timev1.BoolResponse, error) {
	return s.compare(r.GetTsNs(), true)
}

// Before implements TimeService.Before: ts_ns > latest.
func (s *Service) Before(_ context.Context, r *timev1.TimestampRequest) (*timev1.BoolResponse, error) {
	return s.compare(r.GetTsNs(), false)
}

// WaitUntilAfter implements TimeService.WaitUntilAfter on
// truetime.Clock.WaitUntilAfter (timer sleeps, woken by new estimates).
func (s *Service) WaitUntilAfter(ctx context.Context, r *timev1.TimestampRequest) (*timev1.Interval, error) {
	ts := r.GetTsNs()
	if err := checkTS(ts); err != nil {
		return nil, err
	}
	if iv, err := s.opt.TT.Now(); err == nil && ts-iv.LatestNS > MaxWaitAheadNS {
		return nil, status.Errorf(codes.OutOfRange, "ts_ns is %v past the latest bound (limit %v): check the units (nanoseconds)",
			time.Duration(ts-iv.LatestNS).Round(time.Second), time.Duration(MaxWaitAheadNS))
	}
	release, err := s.acquire(ctx, &s.waiters, s.opt.MaxWaiters, "WaitUntilAfter")
	if err != nil {
		return nil, err
	}
	defer release()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.life, cancel)() // Shutdown ends the wait
	if err := s.opt.TT.WaitUntilAfter(ctx, ts); err != nil {
		if s.life.Err() != nil {
			return nil, errShutdown
		}
		return nil, ttErr(err)
	}
	iv, err := s.opt.TT.Now()
	if err != nil {
		return nil, ttErr(err)
	}
	return IntervalOf(iv), nil
}

func (s *Service) status() *timev1.StatusResponse {
	e := s.opt.TT.Estimate()
	now := s.opt.TT.LocalNS()
	iv, _ := s.opt.TT.Now() // with the clock's check: a stalled publisher or a resume shows here too
	r := StatusOfEstimate(e, now, iv)
	r.Clock = s.opt.ClockName
	r.UptimeNs = int64(time.Since(s.started))
	if iv.Status != truetime.Synchronized && s.opt.Reason != nil {
		r.Reason = s.opt.Reason()
	}
	return r
}

// StatusOfEstimate is the part of a StatusResponse that an estimate, a
// local clock reading and the interval read at it determine: everything
// but clock, uptime_ns and reason, which only the daemon knows. The Status
// call and `meridianctl --shm status` (from the shared-memory segment)
// both build their answer here.
func StatusOfEstimate(e truetime.Estimate, localNS int64, iv truetime.Interval) *timev1.StatusResponse {
	r := &timev1.StatusResponse{
		Status:                  StatusOf(iv.Status),
		Leap:                    timev1.LeapIndicator(e.Leap),
		OffsetNs:                e.OffsetNS,
		FrequencyPpb:            e.FreqPPB,
		Stratum:                 uint32(e.Stratum),
		ReferenceId:             e.Reference(),
		RootDelayNs:             e.RootDelayNS,
		RootDispersionNs:        e.RootDispersionNS,
		LastSampleAgeNs:         -1,
		MaxErrorNs:              e.MaxErrorNS,
		DriftBoundPpb:           e.DriftBoundPPB,
		FrequencyUncertaintyPpb: e.FreqUncPPB,
	}
	if e.LastSampleNS != 0 {
		r.LastSampleAgeNs = localNS - e.LastSampleNS
	}
	if iv.Status == truetime.Synchronized || iv.Status == truetime.Holdover {
		r.Interval = IntervalOf(iv)
		r.ErrorBoundNs = iv.EpsNS()
	}
	return r
}

// Status implements TimeService.Status; it never fails.
func (s *Service) Status(context.Context, *timev1.StatusRequest) (*timev1.StatusResponse, error) {
	return s.status(), nil
}

// ServerStats implements TimeService.ServerStats; it never fails.
func (s *Service) ServerStats(context.Context, *timev1.ServerStatsRequest) (*timev1.ServerStatsResponse, error) {
	if s.opt.ServerStats == nil {
		return &timev1.ServerStatsResponse{}, nil
	}
	return s.opt.ServerStats(), nil
}

// Clients implements TimeService.Clients.
func (s *Service) Clients(_ context.Context, req *timev1.ClientsRequest) (*timev1.ClientsResponse, error) {
	limit := int(req.GetLimit())
	switch {
	case limit < 0:
		return nil, status.Errorf(codes.InvalidArgument, "limit must be ≥ 0, got %d", limit)
	case limit == 0:
		limit = 100
	case limit > 4096:
		limit = 4096
	}
	r := &timev1.ClientsResponse{}
	if s.opt.Clients != nil {
		r.Clients = s.opt.Clients(limit)
	}
	return r, nil
}

// Sources implements TimeService.Sources, a page at a time: page_token is
// the index of the first source of the page (opaque to clients).
func (s *Service) Sources(_ context.Context, req *timev1.SourcesRequest) (*timev1.SourcesResponse, error) {
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, status.Errorf(codes.InvalidArgument, "page_size must be ≥ 0, got %d", size)
	case size == 0:
		size = DefaultSourcesPage
	case size > MaxSourcesPage:
		size = MaxSourcesPage
	}
	start := 0
	if t := req.GetPageToken(); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			return nil, status.Errorf(codes.InvalidArgument, "bad page_token %q: pass next_page_token of the previous reply", t)
		}
		start = n
	}
	var all []*timev1.Source
	if s.opt.Sources != nil {
		all = s.opt.Sources()
	}
	r := &timev1.SourcesResponse{}
	if start < len(all) {
		end := min(len(all), start+size)
		r.Sources = all[start:end]
		if end < len(all) {
			r.NextPageToken = strconv.Itoa(end)
		}
	}
	return r, nil
}

// Watch implements TimeService.Watch: the status at once, then on every
// status change, and (unless changes_only) on estimate updates at most
// every min_interval_ms. Time-driven transitions (holdover, loss of
// synchronisation as ε grows) are caught by a timer at that interval.
func (s *Service) Watch(r *timev1.WatchRequest, stream grpc.ServerStreamingServer[timev1.StatusResponse]) error {
	minMS := r.GetMinIntervalMs()
	switch {
	case minMS == 0:
		minMS = 1000
	case minMS < 10 || minMS > 3_600_000:
		return status.Errorf(codes.InvalidArgument, "min_interval_ms must be 0 (1000) or within [10, 3600000], got %d", minMS)
	}
	release, err := s.acquire(stream.Context(), &s.watchers, s.opt.MaxWatchers, "Watch")
	if err != nil {
		return err
	}
	defer release()
	minIv := time.Duration(minMS) * time.Millisecond
	ctx := stream.Context()
	tick := time.NewTicker(minIv)
	defer tick.Stop()

	changed := s.opt.TT.Changed()
	cur := s.status()
	lastEst := s.opt.TT.Estimate().LocalNS
	if err := stream.Send(cur); err != nil {
		return err
	}
	lastStatus, lastSent := cur.Status, time.Now()
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.life.Done():
			return errShutdown
		case <-changed:
		case <-tick.C:
		}
		changed = s.opt.TT.Changed()
		cur = s.status()
		est := s.opt.TT.Estimate().LocalNS
		send := cur.Status != lastStatus ||
			(!r.GetChangesOnly() && est != lastEst && time.Since(lastSent) >= minIv)
		if !send {
			continue
		}
		if err := stream.Send(cur); err != nil {
			return err
		}
		lastStatus, lastSent, lastEst = cur.Status, time.Now(), est
	}
}

func hlcOf(t hlc.Timestamp) *timev1.HLCTimestamp {
	k := t.Key()
	return &timev1.HLCTimestamp{WallNs: t.WallNS, Logical: t.Logical, Text: t.String(), Key: k[:]}
}

func hlcErr(err error) error {
	var far *hlc.RemoteTooFarAheadError
	switch {
	case errors.As(err, &far):
		return status.Error(codes.OutOfRange, far.Error())
	case errors.Is(err, hlc.ErrInvalidTimestamp):
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return ttErr(err)
}

// restartUnavailable is the answer when the restart wait would outlast the
// call: UNAVAILABLE (retryable) with the remaining time as RetryInfo.
func restartUnavailable(rw *hlc.RestartWaitError) error {
	st, err := status.New(codes.Unavailable, rw.Error()).WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(rw.Remaining())})
	if err != nil {
		return status.Error(codes.Unavailable, rw.Error())
	}
	return st.Err()
}

// hlcCall runs an HLC operation; right after a restart it sleeps until
// physical time passes the persisted bound, if that is within
// HLCRestartWait and the call's deadline.
func (s *Service) hlcCall(ctx context.Context, op func() (hlc.Timestamp, error)) (*timev1.HLCTimestamp, error) {
	deadline := time.Now().Add(s.opt.HLCRestartWait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	for {
		t, err := op()
		var rw *hlc.RestartWaitError
		if !errors.As(err, &rw) {
			if err != nil {
				return nil, hlcErr(err)
			}
			return hlcOf(t), nil
		}
		wait := rw.Remaining()
		if time.Until(deadline) < wait {
			return nil, restartUnavailable(rw)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-s.life.Done():
			timer.Stop()
			return nil, errShutdown
		case <-timer.C:
		}
	}
}

// HLCNow implements TimeService.HLCNow.
func (s *Service) HLCNow(ctx context.Context, _ *timev1.HLCNowRequest) (*timev1.HLCTimestamp, error) {
	if s.opt.HLC == nil {
		return nil, status.Error(codes.Unimplemented, "this server has no hybrid logical clock")
	}
	return s.hlcCall(ctx, s.opt.HLC.Now)
}

// HLCUpdate implements TimeService.HLCUpdate.
func (s *Service) HLCUpdate(ctx context.Context, r *timev1.HLCUpdateRequest) (*timev1.HLCTimestamp, error) {
	if s.opt.HLC == nil {
		return nil, status.Error(codes.Unimplemented, "this server has no hybrid logical clock")
	}
	if r.GetRemoteWallNs() <= 0 {
		return nil, status.Errorf(codes.InvalidArgument, "remote_wall_ns must be a positive Unix time in nanoseconds, got %d", r.GetRemoteWallNs())
	}
	remote := hlc.Timestamp{WallNS: r.GetRemoteWallNs(), Logical: r.GetRemoteLogical()}
	return s.hlcCall(ctx, func() (hlc.Timestamp, error) { return s.opt.HLC.Update(remote) })
}

var _ timev1.TimeServiceServer = (*Service)(nil)

// methodName is the short name of a full gRPC method ("/pkg.Svc/Now" → "Now").
func methodName(full string) string {
	for i := len(full) - 1; i >= 0; i-- {
		if full[i] == '/' {
			return full[i+1:]
		}
	}
	return full
}
