package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	timev1 "github.com/meridiantime/meridian/api/meridian/time/v1"
	"github.com/meridiantime/meridian/client"
	"github.com/meridiantime/meridian/daemon"
	"github.com/meridiantime/meridian/hlc"
	"github.com/meridiantime/meridian/internal/version"
	"github.com/meridiantime/meridian/timeservice"
	"github.com/meridiantime/meridian/truetime"
	"github.com/meridiantime/meridian/truetime/shm"
)

// exitError carries an exit code: 1 for "the clock cannot answer", 2 for
// usage, connection and access errors.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

var errUnsync = exitError{1, "clock is unsynchronized: no interval can be promised (meridianctl status shows why)"}

var errDisrupted = exitError{1, "clock is disrupted (suspend, VM pause or migration): no interval until the next good sample (meridianctl status)"}

// unsyncErr is the exit error for a read that promised no interval.
func unsyncErr(err error) exitError {
	if errors.Is(err, truetime.ErrDisrupted) {
		return errDisrupted
	}
	return errUnsync
}

type opts struct {
	addr, shm            string
	ca, cert, key, sname string
	timeout              time.Duration
	json                 bool
	stdout               io.Writer
}

func statusName(s timev1.ClockStatus) string {
	switch s {
	case timev1.ClockStatus_CLOCK_STATUS_SYNCHRONIZED:
		return truetime.Synchronized.String()
	case timev1.ClockStatus_CLOCK_STATUS_HOLDOVER:
		return truetime.Holdover.String()
	case timev1.ClockStatus_CLOCK_STATUS_DISRUPTED:
		return truetime.Disrupted.String()
	}
	return truetime.Unsynchronized.String()
}

func (o *opts) address() string {
	if o.addr != "" {
		return o.addr
	}
	return "unix://" + daemon.LocateRuntimeFile("grpc.sock")
}

func (o *opts) dial() (*client.GRPC, error) {
	g, err := client.DialGRPC(o.address(), client.TLS{CA: o.ca, Cert: o.cert, Key: o.key, ServerName: o.sname})
	if err != nil {
		return nil, exitError{2, err.Error()}
	}
	return g, nil
}

func (o *opts) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), o.timeout)
}

// session dials the daemon and gives a context bounded by --timeout; done
// releases both.
func (o *opts) session() (*client.GRPC, context.Context, func(), error) {
	g, err := o.dial()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := o.ctx()
	return g, ctx, func() { cancel(); g.Close() }, nil
}

// rpcErr turns a gRPC error into a message a newcomer can act on.
func (o *opts) rpcErr(err error) error {
	if err == nil {
		return nil
	}
	st := status.Convert(err)
	switch st.Code() {
	case codes.FailedPrecondition:
		if st.Message() == truetime.ErrDisrupted.Error() {
			return errDisrupted
		}
		return errUnsync
	case codes.Unavailable:
		hint := "is meridiand running, with grpc.listen set? (--addr)"
		if strings.Contains(st.Message(), "tls") || strings.Contains(st.Message(), "certificate") || strings.Contains(st.Message(), "handshake") {
			hint = "TLS failed: check --tls-ca/--tls-cert/--tls-key"
		}
		return exitError{2, fmt.Sprintf("cannot reach meridiand at %s: %s (%s)", o.address(), hint, st.Message())}
	case codes.DeadlineExceeded:
		return exitError{2, fmt.Sprintf("no answer from %s within --timeout %v", o.address(), o.timeout)}
	case codes.PermissionDenied:
		return exitError{2, fmt.Sprintf("%s: permission denied", o.address())}
	}
	return exitError{2, fmt.Sprintf("%s: %s", st.Code(), st.Message())}
}

// JSONSchema is the schema field of every --json document: the proto
// package whose messages the documents are (docs/meridianctl-json.md).
const JSONSchema = "meridian.time.v1"

// jsonOptions are the fixed rules of every --json document: the proto3 JSON
// mapping of timev1.CtlOutput with the .proto field names (snake_case),
// every field present (zero values and null messages included, so a
// document's keys do not depend on its values), enums by name. int64 and
// uint64 fields are JSON strings, as the mapping says: nanoseconds since
// 1970 need more than the 53 bits a JSON number keeps in many parsers.
var jsonOptions = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

// printDoc prints doc as one line of JSON with its schema set. protojson
// varies its whitespace on purpose; the document is compacted so that the
// output is the same bytes for the same message.
func (o *opts) printDoc(doc *timev1.CtlOutput) error {
	doc.Schema = JSONSchema
	b, err := jsonOptions.Marshal(doc)
	if err != nil {
		return exitError{2, "--json: " + err.Error()}
	}
	var line bytes.Buffer
	if err := json.Compact(&line, b); err != nil {
		return exitError{2, "--json: " + err.Error()}
	}
	line.WriteByte('\n')
	_, err = o.stdout.Write(line.Bytes())
	return err
}

func intervalDoc(iv *timev1.Interval) *timev1.CtlOutput {
	return &timev1.CtlOutput{Body: &timev1.CtlOutput_Interval{Interval: iv}}
}

func statusDoc(r *timev1.StatusResponse) *timev1.CtlOutput {
	return &timev1.CtlOutput{Body: &timev1.CtlOutput_Status{Status: r}}
}

func sourcesDoc(s []*timev1.Source) *timev1.CtlOutput {
	return &timev1.CtlOutput{Body: &timev1.CtlOutput_Sources{Sources: &timev1.SourcesResponse{Sources: s}}}
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	o := &opts{stdout: stdout}
	root := &cobra.Command{
		Use:   "meridianctl",
		Short: "Query a running meridiand: TrueTime, status, sources, HLC",
		Long: `meridianctl talks to meridiand's TimeService over gRPC (by default the unix
socket /run/meridian/grpc.sock, or a per-user runtime directory when the
daemon runs unprivileged). The interval [earliest, latest] contains true time
whenever the status is synchronized or holdover; when meridiand cannot
promise that, commands fail with "clock is unsynchronized" (or "clock is
disrupted" after a suspend, VM pause or migration; exit status 1)
instead of printing a number. Exit status 2: usage or connection errors.

With --shm, "now", "status" and "waitsync" read the shared-memory segment
instead (no daemon round trip; what applications on the same host use);
the other commands refuse it.

--json prints each answer as one line of JSON: the TimeService reply in a
meridian.time.v1.CtlOutput ("schema":"meridian.time.v1"), through protojson
with the .proto field names, every field present, 64-bit integers as
strings and enums by name; the same document over gRPC and --shm
(docs/meridianctl-json.md).`,
		Example: `  # start a daemon in one shell (unprivileged, virtual clock):
  make run
  # then, in another:
  meridianctl now                    # earliest, latest, ε and status
  meridianctl now --json             # {"schema":"meridian.time.v1","interval":{"earliest_ns":"…","latest_ns":"…","status":"CLOCK_STATUS_SYNCHRONIZED"}}
  meridianctl status                 # offset, frequency, error bound, stratum, reference
  meridianctl sources                # each source: state, reach, offset, delay, jitter
  meridianctl hlc                    # a hybrid logical clock timestamp
  meridianctl hlc update 2026-11-25T06:30:00.000000000Z+3   # merge a remote HLC timestamp
  meridianctl watch --count 5        # stream status changes and updates
  meridianctl wait-until +20ms       # commit wait: return once now+20ms has surely passed
  meridianctl --timeout 60s waitsync --max-error 1ms   # boot ordering: wait for good time
  meridianctl --addr 10.0.0.5:9393 --tls-ca ca.pem --tls-cert me.pem --tls-key me-key.pem status
  meridianctl --shm /tmp/x.shm now   # read a segment directly`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.Version = version.String("meridianctl")
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&o.addr, "addr", "", "daemon address: unix:///path or host:port (default: the daemon's unix socket)")
	pf.StringVar(&o.shm, "shm", "", "read now/status/waitsync from this shared-memory segment instead of gRPC (other commands refuse it)")
	pf.StringVar(&o.ca, "tls-ca", "", "TCP: CA that signed the daemon's certificate (enables TLS)")
	pf.StringVar(&o.cert, "tls-cert", "", "TCP: client certificate for mTLS")
	pf.StringVar(&o.key, "tls-key", "", "TCP: client key for mTLS")
	pf.StringVar(&o.sname, "tls-server-name", "", "TCP: name to verify in the daemon's certificate")
	pf.DurationVar(&o.timeout, "timeout", 5*time.Second, "deadline for each call (wait-until: for the whole wait)")
	pf.BoolVar(&o.json, "json", false, "print one line of JSON (a meridian.time.v1.CtlOutput through protojson) instead of a table")
	root.AddCommand(nowCmd(o), statusCmd(o), sourcesCmd(o), selectdataCmd(o), sourcestatsCmd(o), activityCmd(o), serverstatsCmd(o), ntpdataCmd(o), clientsCmd(o),
		hlcCmd(o), watchCmd(o), waitCmd(o), waitsyncCmd(o))
	// --shm serves only what the segment holds; every other command needs
	// the daemon and says so instead of ignoring the flag.
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		switch cmd.Name() {
		case "now", "status", "waitsync", "meridianctl":
			return nil
		}
		if o.shm != "" {
			return exitError{2, fmt.Sprintf("--shm: %s needs the daemon (the segment holds only the interval and its estimate): drop --shm, or use --addr", cmd.Name())}
		}
		return nil
	}
	return root
}

func openShm(p string) (*shm.Reader, error) {
	r, err := shm.Open(p)
	switch {
	case err == nil:
		return r, nil
	case errors.Is(err, os.ErrNotExist):
		return nil, exitError{2, fmt.Sprintf("cannot open %s: no such file: is meridiand running? (see --shm)", p)}
	case errors.Is(err, os.ErrPermission):
		return nil, exitError{2, fmt.Sprintf("cannot open %s: permission denied", p)}
	case errors.Is(err, shm.ErrUntrusted):
		return nil, exitError{2, fmt.Sprintf("refusing %s: %v", p, err)}
	default:
		return nil, exitError{2, err.Error()}
	}
}

func printInterval(o *opts, w *timev1.Interval) error {
	if o.json {
		return o.printDoc(intervalDoc(w))
	}
	iv := client.Interval(w)
	tw := tabwriter.NewWriter(o.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "earliest\t%s\t%d\n", fmtTime(iv.EarliestNS), iv.EarliestNS)
	fmt.Fprintf(tw, "latest\t%s\t%d\n", fmtTime(iv.LatestNS), iv.LatestNS)
	fmt.Fprintf(tw, "ε\t%v\t\n", time.Duration(iv.EpsNS()))
	fmt.Fprintf(tw, "status\t%s\t\n", iv.Status)
	return tw.Flush()
}

func nowCmd(o *opts) *cobra.Command {
	return &cobra.Command{
		Use:   "now",
		Short: "Print the TrueTime interval [earliest, latest]",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			var iv *timev1.Interval
			var err error
			if o.shm != "" {
				iv, err = nowFromShm(o.shm)
			} else {
				iv, err = o.nowFromRPC()
			}
			if errors.Is(err, errUnsync) || errors.Is(err, errDisrupted) {
				if o.json {
					// The same document over either transport: no interval, the status only.
					st := timev1.ClockStatus_CLOCK_STATUS_UNSYNCHRONIZED
					if errors.Is(err, errDisrupted) {
						st = timev1.ClockStatus_CLOCK_STATUS_DISRUPTED
					}
					_ = o.printDoc(intervalDoc(&timev1.Interval{Status: st}))
				}
				return err
			}
			if err != nil {
				return err
			}
			return printInterval(o, iv)
		},
	}
}

// nowFromShm reads the interval from the segment at p, as the Now call
// would answer it: errUnsync or errDisrupted when it promises none.
func nowFromShm(p string) (*timev1.Interval, error) {
	r, err := openShm(p)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	iv, err := r.Now()
	if errors.Is(err, truetime.ErrUnsynchronized) {
		return nil, unsyncErr(err)
	}
	if err != nil {
		return nil, exitError{2, err.Error()}
	}
	return timeservice.IntervalOf(iv), nil
}

// nowFromRPC is the Now call's reply, unchanged.
func (o *opts) nowFromRPC() (*timev1.Interval, error) {
	g, ctx, done, err := o.session()
	if err != nil {
		return nil, err
	}
	defer done()
	iv, err := g.Service().Now(ctx, &timev1.NowRequest{})
	if err != nil {
		return nil, o.rpcErr(err)
	}
	return iv, nil
}

// statusView is a StatusResponse and, read from the segment (--shm), what
// the segment says about its writer: the table shows that; the JSON is the
// StatusResponse alone, the same message as over gRPC (a writer that is not
// live is named in its reason).
type statusView struct {
	r              *timev1.StatusResponse
	writer         string // --shm: live, stopped, void, disrupted or none
	heartbeatAgeNS int64
}

func statusFromShm(p string) (statusView, error) {
	r, err := openShm(p)
	if err != nil {
		return statusView{}, err
	}
	defer r.Close()
	in, err := r.Inspect()
	if err != nil {
		return statusView{}, exitError{2, err.Error()}
	}
	v := statusView{r: timeservice.StatusOfEstimate(in.Estimate, in.LocalNS, in.Interval)}
	switch {
	case in.Stamp.BootNS == 0 && in.Stamp.VoidAfterNS == 0:
		v.writer = "none" // never published
	case in.Stamp.VoidAfterNS == 0:
		v.writer = "stopped"
	default:
		v.writer = in.Verdict.String()
	}
	if in.Stamp.BootNS != 0 {
		v.heartbeatAgeNS = in.BootNS - in.Stamp.BootNS
	}
	if in.Interval.Status != truetime.Synchronized {
		v.r.Reason = shmReason(v.writer, v.heartbeatAgeNS)
	}
	return v, nil
}

// shmReason is why a segment's status is not synchronized as far as the
// segment can tell: its writer's state. The daemon's own reason is not in
// the segment ("" when the writer is live).
func shmReason(writer string, heartbeatAgeNS int64) string {
	switch writer {
	case "none":
		return "the segment was never published: meridiand is starting or not running"
	case "stopped":
		return "meridiand stopped and closed the segment"
	case truetime.Void.String():
		return fmt.Sprintf("no heartbeat from meridiand for %v: it died or hangs", time.Duration(heartbeatAgeNS).Round(time.Millisecond))
	case truetime.Gap.String():
		return "the host's clocks were disrupted (suspend, VM pause or migration) since the last publish"
	}
	return ""
}

func printStatus(o *opts, v statusView) error {
	if o.json {
		return o.printDoc(statusDoc(v.r))
	}
	r := v.r
	status := statusName(r.Status)
	tw := tabwriter.NewWriter(o.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "status\t%s\n", status)
	if r.Reason != "" {
		fmt.Fprintf(tw, "why\t%s\n", r.Reason)
	}
	if v.writer != "" {
		fmt.Fprintf(tw, "writer\t%s (last heartbeat %v ago)\n", v.writer, time.Duration(v.heartbeatAgeNS).Round(time.Millisecond))
	}
	if status == truetime.Synchronized.String() || status == truetime.Holdover.String() {
		fmt.Fprintf(tw, "error bound (ε)\t%v\n", time.Duration(r.ErrorBoundNs))
		fmt.Fprintf(tw, "interval\t[%s, %s]\n", fmtTime(r.GetInterval().GetEarliestNs()), fmtTime(r.GetInterval().GetLatestNs()))
	}
	fmt.Fprintf(tw, "offset (local − true)\t%.0f ns\n", r.OffsetNs)
	fmt.Fprintf(tw, "frequency\t%.3f ppb\n", r.FrequencyPpb)
	fmt.Fprintf(tw, "stratum\t%d\n", r.Stratum)
	if r.ReferenceId == "LOCL" {
		fmt.Fprintf(tw, "reference\t%s (local reference: this host's clock, not UTC)\n", r.ReferenceId)
	} else {
		fmt.Fprintf(tw, "reference\t%s\n", r.ReferenceId)
	}
	fmt.Fprintf(tw, "root delay / dispersion\t%v / %v\n", time.Duration(r.RootDelayNs), time.Duration(r.RootDispersionNs))
	if r.LastSampleAgeNs >= 0 {
		fmt.Fprintf(tw, "last sample\t%v ago\n", time.Duration(r.LastSampleAgeNs).Round(time.Millisecond))
	} else {
		fmt.Fprintf(tw, "last sample\tnone\n")
	}
	fmt.Fprintf(tw, "max error\t%v\n", time.Duration(r.MaxErrorNs))
	if r.Leap != timev1.LeapIndicator_LEAP_INDICATOR_NONE {
		fmt.Fprintf(tw, "leap second\t%s pending\n", strings.ToLower(strings.TrimPrefix(r.Leap.String(), "LEAP_INDICATOR_")))
	}
	if g := r.DriftBoundPpb + r.FrequencyUncertaintyPpb; g != 0 {
		fmt.Fprintf(tw, "ε growth\t%.0f ppb (drift bound %.0f + frequency uncertainty %.0f)\n", g, r.DriftBoundPpb, r.FrequencyUncertaintyPpb)
	}
	if r.Clock != "" {
		fmt.Fprintf(tw, "clock\t%s\n", r.Clock)
		fmt.Fprintf(tw, "uptime\t%v\n", time.Duration(r.UptimeNs).Round(time.Second))
	}
	return tw.Flush()
}

func statusCmd(o *opts) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Print the daemon's state: status, error bound, offset, frequency, stratum, reference",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if o.shm != "" {
				st, err := statusFromShm(o.shm)
				if err != nil {
					return err
				}
				return printStatus(o, st)
			}
			g, ctx, done, err := o.session()
			if err != nil {
				return err
			}
			defer done()
			r, err := g.Service().Status(ctx, &timev1.StatusRequest{})
			if err != nil {
				return o.rpcErr(err)
			}
			return printStatus(o, statusView{r: r})
		},
	}
}

// waitsyncCmd is chronyc waitsync: for boot ordering (a unit that needs
// good time runs `meridianctl waitsync` first).
func waitsyncCmd(o *opts) *cobra.Command {
	var maxErr, interval time.Duration
	c := &cobra.Command{
		Use:   "waitsync",
		Short: "Wait until the clock is synchronized with ε ≤ --max-error (like chronyc waitsync)",
		Long: `waitsync polls the daemon's status (or, with --shm, the segment) every
--interval until it is synchronized and its error bound ε is at most
--max-error (0: any ε), then prints the status and exits 0. --timeout bounds
the whole wait; when it passes, waitsync prints the last status (and why
it is not synchronized) and exits 1. A daemon that cannot be reached is
retried until the timeout too: waitsync may run before meridiand is up.`,
		Example: "  meridianctl --timeout 60s waitsync --max-error 1ms\n  meridianctl --shm /run/meridian/truetime.shm --timeout 2m waitsync",
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if maxErr < 0 || interval <= 0 {
				return exitError{2, "waitsync: --max-error must be ≥ 0 and --interval > 0"}
			}
			deadline := time.Now().Add(o.timeout)
			var last statusView
			var lastErr error
			for {
				last, lastErr = o.readStatus(min(time.Until(deadline), 5*time.Second))
				if lastErr == nil && last.r.Status == timev1.ClockStatus_CLOCK_STATUS_SYNCHRONIZED && (maxErr == 0 || last.r.ErrorBoundNs <= int64(maxErr)) {
					return printStatus(o, last)
				}
				left := time.Until(deadline)
				if left <= 0 {
					break
				}
				time.Sleep(min(interval, left))
			}
			if lastErr != nil {
				return exitError{1, fmt.Sprintf("not synchronized within %v: %v", o.timeout, lastErr)}
			}
			why := statusName(last.r.Status)
			if last.r.Status == timev1.ClockStatus_CLOCK_STATUS_SYNCHRONIZED {
				why = fmt.Sprintf("synchronized, but ε %v > --max-error %v", time.Duration(last.r.ErrorBoundNs), maxErr)
			} else if last.r.Reason != "" {
				why += ": " + last.r.Reason
			}
			return exitError{1, fmt.Sprintf("not synchronized within %v (%s)", o.timeout, why)}
		},
	}
	c.Flags().DurationVar(&maxErr, "max-error", 0, "largest acceptable error bound ε (0: any)")
	c.Flags().DurationVar(&interval, "interval", time.Second, "how often to check")
	return c
}

// readStatus reads the status once from the segment (--shm) or the
// daemon, each call bounded by d.
func (o *opts) readStatus(d time.Duration) (statusView, error) {
	if o.shm != "" {
		return statusFromShm(o.shm)
	}
	g, err := o.dial()
	if err != nil {
		return statusView{}, err
	}
	defer g.Close()
	ctx, cancel := context.WithTimeout(context.Background(), max(d, 100*time.Millisecond))
	defer cancel()
	r, err := g.Service().Status(ctx, &timev1.StatusRequest{})
	if err != nil {
		return statusView{}, o.rpcErr(err)
	}
	return statusView{r: r}, nil
}

// fetchSources reads every page of the Sources call.
func (o *opts) fetchSources() ([]*timev1.Source, error) {
	g, ctx, done, err := o.session()
	if err != nil {
		return nil, err
	}
	defer done()
	out := []*timev1.Source{}
	for token, pages := "", 0; ; pages++ { // the reply is paged: follow next_page_token
		if pages > 100_000 {
			return nil, errors.New("sources: the server keeps returning pages")
		}
		r, err := g.Service().Sources(ctx, &timev1.SourcesRequest{PageSize: timeservice.MaxSourcesPage, PageToken: token})
		if err != nil {
			return nil, o.rpcErr(err)
		}
		out = append(out, r.Sources...)
		if token = r.NextPageToken; token == "" {
			return out, nil
		}
	}
}

// µs formats a duration in microseconds with one unit for the whole
// column.
func µs(ns float64) string { return strconv.FormatFloat(ns/1e3, 'f', 1, 64) }

// sourcesLegend is `sources -v`.
const sourcesLegend = `STATE    selected: agrees with the majority and is combined
         falseticker: its interval misses the majority's intersection
         too_few: agrees, but fewer sources than min_sources do
         unreachable: no reply to its last 8 polls   noselect: configured so
         too_far: its bound exceeds max_distance      unused: no fresh sample
REACH    the last 8 polls, octal, newest in the lowest bit (377: all answered)
POLL     interval between polls now
OFFSET   filtered local minus source, µs     DELAY   round trip of the filtered sample, µs
JITTER   RMS of the filter's offsets, µs     BOUND   half-width of the source's interval, µs
LAST     age of the newest sample            STAMPS  where t1/t4 came from: user, software, hardware
`

func sourcesCmd(o *opts) *cobra.Command {
	var verbose bool
	c := sourcesView(o, "sources", "List the time sources: state, reach, poll, offset, delay, jitter, bound", func(out []*timev1.Source) error {
		if verbose {
			fmt.Fprint(o.stdout, sourcesLegend)
		}
		if len(out) == 0 {
			fmt.Fprintln(o.stdout, "no sources configured (the daemon may be its own reference: see local_stratum)")
			return nil
		}
		tw := tabwriter.NewWriter(o.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSTATE\tSTRATUM\tREACH\tPOLL\tOFFSET µs\tDELAY µs\tJITTER µs\tBOUND µs\tLAST\tVALID/SENT\tSTAMPS(tx/rx)")
		for _, s := range out {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%03o\t%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%s/%s\n", s.Name, s.State, s.Stratum, s.Reach,
				fmtPoll(s.PollNs), µs(s.OffsetNs), µs(float64(s.DelayNs)), µs(s.JitterNs), µs(s.BoundNs),
				fmtAge(s.LastSampleAgeNs), s.Valid, s.Sent, s.TxTimestamping, s.RxTimestamping)
		}
		return tw.Flush()
	})
	c.Long = `State is what the last discipline update did with the source (-v explains
each, as chronyc sources -v does; selectdata says why). Reach is the 8-bit
register of the last polls, octal as in chronyc. Offset is local minus
source. Every offset, delay, jitter and bound column is in microseconds.`
	c.Flags().BoolVarP(&verbose, "verbose", "v", false, "print a legend of the columns and states first")
	return c
}

func fmtPoll(ns int64) string {
	if ns <= 0 {
		return "-"
	}
	return time.Duration(ns).String()
}

func fmtAge(ns int64) string {
	if ns < 0 {
		return "-"
	}
	return time.Duration(ns).Round(time.Millisecond).String()
}

// sourceTableCmd is a view of the Sources call: a table with header and
// one row per source, or the sources as JSON.
func sourceTableCmd(o *opts, use, short, header string, row func(s *timev1.Source) string) *cobra.Command {
	return sourcesView(o, use, short, func(out []*timev1.Source) error {
		tw := tabwriter.NewWriter(o.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, header)
		for _, s := range out {
			fmt.Fprintln(tw, row(s))
		}
		return tw.Flush()
	})
}

// selectdataCmd is chronyc selectdata: why each source is or is not used.
func selectdataCmd(o *opts) *cobra.Command {
	return sourceTableCmd(o, "selectdata", "Why each source is or is not selected", "NAME\tSTATE\tREACH\tBOUND µs\tWHY",
		func(s *timev1.Source) string {
			return fmt.Sprintf("%s\t%s\t%03o\t%s\t%s", s.Name, s.State, s.Reach, µs(s.BoundNs), s.StateReason)
		})
}

// sourcestatsCmd is chronyc sourcestats: each source's clock filter.
func sourcestatsCmd(o *opts) *cobra.Command {
	return sourceTableCmd(o, "sourcestats", "Each source's clock filter: samples, offset, jitter, bound, interleaved samples",
		"NAME\tSAMPLES\tOFFSET µs\tJITTER µs\tBOUND µs\tLAST\tVALID\tREJECTED\tTIMEOUTS\tINTERLEAVED",
		func(s *timev1.Source) string {
			return fmt.Sprintf("%s\t%d\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d", s.Name, s.Samples, µs(s.OffsetNs), µs(s.JitterNs), µs(s.BoundNs),
				fmtAge(s.LastSampleAgeNs), s.Valid, s.Rejected, s.Timeouts, s.Interleaved)
		})
}

// ntpdataCmd is chronyc ntpdata: what each NTP source's last valid reply
// said.
func ntpdataCmd(o *opts) *cobra.Command {
	ntpOnly := func() ([]*timev1.Source, error) {
		out, err := o.fetchSources()
		ntp := []*timev1.Source{}
		for _, s := range out {
			if s.Type == "ntp" {
				ntp = append(ntp, s)
			}
		}
		return ntp, err
	}
	return viewCmd(o, "ntpdata", "Each NTP source's last valid reply: stratum, leap, root delay and dispersion, offset, delay, stamps",
		ntpOnly, sourcesDoc, func(ntp []*timev1.Source) error {
			for i, s := range ntp {
				if i > 0 {
					fmt.Fprintln(o.stdout)
				}
				tw := tabwriter.NewWriter(o.stdout, 0, 0, 1, ' ', 0)
				fmt.Fprintf(tw, "Remote address\t: %s\n", s.Address)
				fmt.Fprintf(tw, "Stratum\t: %d\n", s.Stratum)
				fmt.Fprintf(tw, "Leap status\t: %s\n", s.Leap)
				fmt.Fprintf(tw, "Root delay\t: %s µs\n", µs(float64(s.RootDelayNs)))
				fmt.Fprintf(tw, "Root dispersion\t: %s µs\n", µs(float64(s.RootDispersionNs)))
				fmt.Fprintf(tw, "Poll interval\t: %s\n", fmtPoll(s.PollNs))
				fmt.Fprintf(tw, "Offset (source − local)\t: %s µs\n", µs(float64(s.LastOffsetNs)))
				fmt.Fprintf(tw, "Peer delay\t: %s µs\n", µs(float64(s.LastDelayNs)))
				fmt.Fprintf(tw, "Timestamping (tx/rx)\t: %s/%s\n", s.TxTimestamping, s.RxTimestamping)
				fmt.Fprintf(tw, "Interleaved samples\t: %d\n", s.Interleaved)
				fmt.Fprintf(tw, "Valid / sent / timeouts\t: %d / %d / %d\n", s.Valid, s.Sent, s.Timeouts)
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			return nil
		})
}

// serverstatsCmd is chronyc serverstats: the NTP server's and the PTP
// grandmaster's counters.
func serverstatsCmd(o *opts) *cobra.Command {
	return rpcCmd(o, "serverstats", "The NTP server's and the PTP grandmaster's counters since start",
		func(ctx context.Context, c timev1.TimeServiceClient) (*timev1.ServerStatsResponse, error) {
			return c.ServerStats(ctx, &timev1.ServerStatsRequest{})
		}, func(r *timev1.ServerStatsResponse) *timev1.CtlOutput {
			return &timev1.CtlOutput{Body: &timev1.CtlOutput_ServerStats{ServerStats: r}}
		},
		func(r *timev1.ServerStatsResponse) error {
			tw := tabwriter.NewWriter(o.stdout, 0, 0, 1, ' ', 0)
			if !r.NtpEnabled && !r.PtpEnabled {
				fmt.Fprintln(o.stdout, "no NTP server and no PTP grandmaster configured")
				return nil
			}
			if r.NtpEnabled {
				var dropped uint64
				reasons := make([]string, 0, len(r.NtpDropped))
				for k, v := range r.NtpDropped {
					dropped += v
					if v > 0 {
						reasons = append(reasons, fmt.Sprintf("%s %d", k, v))
					}
				}
				sort.Strings(reasons)
				fmt.Fprintf(tw, "NTP requests received\t: %d\n", r.NtpRequests)
				fmt.Fprintf(tw, "NTP replies sent\t: %d (interleaved %d, unsynchronized %d)\n", r.NtpReplies, r.NtpInterleavedReplies, r.NtpUnsynchronizedReplies)
				fmt.Fprintf(tw, "NTP kiss-o'-death RATE\t: %d\n", r.NtpKodRate)
				fmt.Fprintf(tw, "NTP requests dropped\t: %d %s\n", dropped, strings.Join(reasons, ", "))
			}
			if r.PtpEnabled {
				fmt.Fprintf(tw, "PTP clients\t: %d (grants %d, denied %d)\n", r.PtpClients, r.PtpGrants, r.PtpDenied)
				fmt.Fprintf(tw, "PTP Sync / Follow_Up / Delay_Resp\t: %d / %d / %d\n", r.PtpSyncs, r.PtpFollowUps, r.PtpDelayResps)
				fmt.Fprintf(tw, "PTP TX stamp timeouts\t: %d\n", r.PtpTxTimeouts)
				fmt.Fprintf(tw, "PTP messages dropped\t: %d\n", r.PtpDropped)
			}
			return tw.Flush()
		})
}

// viewCmd is a command that fetches one answer and prints it: as JSON
// (what asJSON picks of it), or through show.
func viewCmd[T any](o *opts, use, short string, fetch func() (T, error), asJSON func(T) *timev1.CtlOutput, show func(T) error) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			r, err := fetch()
			if err != nil {
				return err
			}
			if o.json {
				return o.printDoc(asJSON(r))
			}
			return show(r)
		},
	}
}

// rpcCmd is a viewCmd whose answer is one TimeService call.
func rpcCmd[T any](o *opts, use, short string, call func(context.Context, timev1.TimeServiceClient) (T, error),
	asJSON func(T) *timev1.CtlOutput, show func(T) error) *cobra.Command {
	return viewCmd(o, use, short, func() (T, error) {
		var zero T
		g, ctx, done, err := o.session()
		if err != nil {
			return zero, err
		}
		defer done()
		r, err := call(ctx, g.Service())
		if err != nil {
			return zero, o.rpcErr(err)
		}
		return r, nil
	}, asJSON, show)
}

// sourcesView is a viewCmd over the Sources call's list.
func sourcesView(o *opts, use, short string, show func([]*timev1.Source) error) *cobra.Command {
	return viewCmd(o, use, short, o.fetchSources, sourcesDoc, show)
}

// clientsCmd is chronyc clients: the NTP server's client log.
func clientsCmd(o *opts) *cobra.Command {
	var limit int
	c := rpcCmd(o, "clients", "The NTP server's clients, busiest first: replies, drops, kiss-o'-deaths, last request",
		func(ctx context.Context, c timev1.TimeServiceClient) (*timev1.ClientsResponse, error) {
			return c.Clients(ctx, &timev1.ClientsRequest{Limit: int32(limit)})
		}, func(r *timev1.ClientsResponse) *timev1.CtlOutput {
			return &timev1.CtlOutput{Body: &timev1.CtlOutput_Clients{Clients: r}}
		},
		func(r *timev1.ClientsResponse) error {
			if len(r.Clients) == 0 {
				fmt.Fprintln(o.stdout, "no clients (or no NTP server)")
				return nil
			}
			tw := tabwriter.NewWriter(o.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ADDRESS\tREPLIES\tDROPPED\tKOD\tLAST")
			for _, c := range r.Clients {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s ago\n", c.Address, c.Replies, c.Dropped, c.Kod, time.Duration(c.LastAgoNs).Round(time.Millisecond))
			}
			return tw.Flush()
		})
	c.Flags().IntVar(&limit, "limit", 100, "at most this many clients (≤ 4096)")
	return c
}

// activityCmd is chronyc activity: how many sources answer.
func activityCmd(o *opts) *cobra.Command {
	count := func() (*timev1.SourceActivity, error) {
		out, err := o.fetchSources()
		a := &timev1.SourceActivity{}
		for _, s := range out {
			switch {
			case s.Reach != 0:
				a.Online++
			case s.Sent > 0:
				a.Offline++
			default:
				a.Unpolled++
			}
		}
		return a, err
	}
	return viewCmd(o, "activity", "How many sources are online (answering), offline (unreachable) or not yet polled",
		count, func(a *timev1.SourceActivity) *timev1.CtlOutput {
			return &timev1.CtlOutput{Body: &timev1.CtlOutput_Activity{Activity: a}}
		}, func(a *timev1.SourceActivity) error {
			_, err := fmt.Fprintf(o.stdout, "%d sources online\n%d sources offline\n%d sources not yet polled\n", a.Online, a.Offline, a.Unpolled)
			return err
		})
}

func printHLC(o *opts, t *timev1.HLCTimestamp) error {
	if o.json {
		return o.printDoc(&timev1.CtlOutput{Body: &timev1.CtlOutput_Hlc{Hlc: t}})
	}
	fmt.Fprintf(o.stdout, "%s\t%x\n", t.Text, t.Key)
	return nil
}

// parseHLC accepts the text form or the 12-byte key in hex.
func parseHLC(s string) (hlc.Timestamp, error) {
	if b, err := hex.DecodeString(s); err == nil && len(b) == hlc.KeySize {
		return hlc.FromKey(b)
	}
	t, err := hlc.Parse(s)
	if err != nil {
		return hlc.Timestamp{}, fmt.Errorf("%q: want 2006-01-02T15:04:05.000000000Z+c or a 24-digit hex key", s)
	}
	return t, nil
}

func hlcCmd(o *opts) *cobra.Command {
	c := &cobra.Command{
		Use:   "hlc",
		Short: "Print a new hybrid logical clock timestamp (text and 12-byte key)",
		Long: `An HLC timestamp is (l, c): l is physical time in ns, never below the
daemon's TrueTime latest bound, c a logical counter. The 12-byte key (hex)
sorts like the timestamps. "hlc update TS" merges a timestamp received from
another node; one further ahead than max(hlc.max_offset_floor,
hlc.eps_factor·ε) is refused (exit status 1).`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			g, ctx, done, err := o.session()
			if err != nil {
				return err
			}
			defer done()
			t, err := g.Service().HLCNow(ctx, &timev1.HLCNowRequest{})
			if err != nil {
				return o.rpcErr(err)
			}
			return printHLC(o, t)
		},
	}
	c.AddCommand(&cobra.Command{
		Use:     "update TS",
		Short:   "Merge a remote HLC timestamp and print the local one after it",
		Example: "  meridianctl hlc update 18e9c1f4b2a3c00000000003\n  meridianctl hlc update 2026-11-25T06:30:00.000000000Z+3",
		Args:    cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			ts, err := parseHLC(args[0])
			if err != nil {
				return exitError{2, err.Error()}
			}
			g, ctx, done, err := o.session()
			if err != nil {
				return err
			}
			defer done()
			t, err := g.Service().HLCUpdate(ctx, &timev1.HLCUpdateRequest{RemoteWallNs: ts.WallNS, RemoteLogical: ts.Logical})
			if status.Code(err) == codes.OutOfRange {
				return exitError{1, "refused: " + status.Convert(err).Message()}
			}
			if err != nil {
				return o.rpcErr(err)
			}
			return printHLC(o, t)
		},
	})
	return c
}

func watchCmd(o *opts) *cobra.Command {
	var changesOnly bool
	var interval time.Duration
	var count int
	c := &cobra.Command{
		Use:   "watch",
		Short: "Stream status: at once, on every status change and on updates",
		Long: `watch prints the status when it starts, then whenever it changes
(unsynchronized, synchronized, holdover, disrupted) and, unless --changes-only, on
estimate updates at most every --interval. It runs until interrupted or
--count lines; --timeout does not apply.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if count < 0 {
				return exitError{2, "--count must be ≥ 0"}
			}
			g, err := o.dial()
			if err != nil {
				return err
			}
			defer g.Close()
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			s, err := g.Service().Watch(ctx, &timev1.WatchRequest{ChangesOnly: changesOnly, MinIntervalMs: interval.Milliseconds()})
			if err != nil {
				return o.rpcErr(err)
			}
			const row = "%-12s  %-14s  %10s  %12s  %12s  %7s  %s\n"
			if !o.json {
				fmt.Fprintf(o.stdout, row, "TIME", "STATUS", "ε", "OFFSET", "FREQ(ppb)", "STRATUM", "REFERENCE")
			}
			for n := 0; count == 0 || n < count; n++ {
				r, err := s.Recv()
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return o.rpcErr(err)
				}
				if o.json {
					if err := o.printDoc(statusDoc(r)); err != nil {
						return err
					}
					continue
				}
				fmt.Fprintf(o.stdout, row, time.Now().UTC().Format("15:04:05.000"), statusName(r.Status), time.Duration(r.ErrorBoundNs),
					fmt.Sprintf("%.0f ns", r.OffsetNs), fmt.Sprintf("%.3f", r.FrequencyPpb), fmt.Sprint(r.Stratum), r.ReferenceId)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&changesOnly, "changes-only", false, "only status changes")
	c.Flags().DurationVar(&interval, "interval", time.Second, "at most one update line per interval (≥ 10ms)")
	c.Flags().IntVar(&count, "count", 0, "stop after this many lines (0: run until interrupted)")
	return c
}

// parseWhen reads a target time: "+20ms" (after the current latest
// bound), an integer of Unix nanoseconds, or RFC 3339.
func parseWhen(ctx context.Context, g *client.GRPC, s string) (int64, error) {
	if strings.HasPrefix(s, "+") {
		d, err := time.ParseDuration(s[1:])
		if err != nil || d < 0 {
			return 0, exitError{2, fmt.Sprintf("%q: want +duration (e.g. +20ms), Unix nanoseconds or RFC 3339", s)}
		}
		iv, err := g.Now(ctx)
		if err != nil {
			return 0, err
		}
		return iv.LatestNS + int64(d), nil
	}
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		return v, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, exitError{2, fmt.Sprintf("%q: want +duration (e.g. +20ms), Unix nanoseconds or RFC 3339", s)}
	}
	return t.UnixNano(), nil
}

func waitCmd(o *opts) *cobra.Command {
	return &cobra.Command{
		Use:   "wait-until TIME",
		Short: "Block until TIME has definitely passed (TrueTime After), then print the interval",
		Long: `wait-until is Spanner's commit wait from the shell: it returns only once
the daemon's earliest bound is past TIME, so TIME is in the past on every
correct clock. TIME is +duration (from the current latest bound), Unix
nanoseconds, or RFC 3339. The whole wait is bounded by --timeout.`,
		Example: "  meridianctl wait-until +50ms\n  meridianctl --timeout 1m wait-until 2026-11-25T07:00:00Z",
		Args:    cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			g, ctx, done, err := o.session()
			if err != nil {
				return err
			}
			defer done()
			ts, err := parseWhen(ctx, g, args[0])
			if err != nil {
				return mapClientErr(o, err)
			}
			iv, err := g.Service().WaitUntilAfter(ctx, &timev1.TimestampRequest{TsNs: ts})
			if err != nil {
				return o.rpcErr(err)
			}
			return printInterval(o, iv)
		},
	}
}

// mapClientErr handles errors already converted by the client package.
func mapClientErr(o *opts, err error) error {
	var ee exitError
	switch {
	case errors.As(err, &ee):
		return ee
	case errors.Is(err, truetime.ErrUnsynchronized):
		return unsyncErr(err)
	case errors.Is(err, context.DeadlineExceeded):
		return exitError{2, fmt.Sprintf("no answer from %s within --timeout %v", o.address(), o.timeout)}
	}
	return o.rpcErr(err)
}

func fmtTime(ns int64) string { return time.Unix(0, ns).UTC().Format("2006-01-02T15:04:05.000000000Z") }
