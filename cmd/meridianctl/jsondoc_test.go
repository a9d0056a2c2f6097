package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	timev1 "github.com/meridiantime/meridian/api/meridian/time/v1"
	"github.com/meridiantime/meridian/client"
	"github.com/meridiantime/meridian/config"
	"github.com/meridiantime/meridian/daemon"
	"github.com/meridiantime/meridian/hlc"
	"github.com/meridiantime/meridian/internal/testdaemon"
	"github.com/meridiantime/meridian/timeservice"
)

// The schema is the proto package the documents are messages of.
func TestJSONSchemaIsTheProtoPackage(t *testing.T) {
	pkg := string(timev1.File_meridian_time_v1_ctl_proto.Package())
	if JSONSchema != pkg || JSONSchema != "meridian.time.v1" {
		t.Fatalf("JSONSchema %q, ctl.proto's package %q: the documented value is meridian.time.v1", JSONSchema, pkg)
	}
}

// Negative controls of decodeDoc, the check every --json test relies on:
// documents that are not what the doc promises fail it, each for the
// reason named; the real printer's document passes.
func TestJSONCheckNegativeControls(t *testing.T) {
	msg := &timev1.CtlOutput{Body: &timev1.CtlOutput_Interval{Interval: &timev1.Interval{
		EarliestNs: 1_800_000_000_000_000_000, LatestNs: 1_800_000_000_000_010_000, Status: timev1.ClockStatus_CLOCK_STATUS_SYNCHRONIZED}}}
	var good strings.Builder
	if err := (&opts{stdout: &good}).printDoc(proto.Clone(msg).(*timev1.CtlOutput)); err != nil {
		t.Fatal(err)
	}
	if _, err := decodeDoc(good.String()); err != nil {
		t.Fatalf("the printer's own document fails the check: %v\n%s", err, good.String())
	}
	withSchema := proto.Clone(msg).(*timev1.CtlOutput)
	withSchema.Schema = JSONSchema
	camel, _ := protojson.Marshal(withSchema) // default options: lowerCamelCase keys, zero fields left out
	namesOnly, _ := protojson.MarshalOptions{UseProtoNames: true}.Marshal(&timev1.CtlOutput{Schema: JSONSchema,
		Body: &timev1.CtlOutput_Interval{Interval: &timev1.Interval{Status: timev1.ClockStatus_CLOCK_STATUS_UNSYNCHRONIZED}}})
	multi, _ := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true, Multiline: true}.Marshal(withSchema)
	g := good.String()
	for _, c := range []struct{ name, doc, why string }{
		{"renamed key", strings.Replace(g, `"earliest_ns"`, `"earliest"`, 1), "earliest"},
		{"the old hand-written mirror", `{"earliest_ns":1800000000000000000,"latest_ns":1800000000000010000,"status":"synchronized"}` + "\n", "unknown field"},
		{"camelCase, zeros omitted", compact(t, camel), "earliestNs"},
		{"zero fields omitted", compact(t, namesOnly), "missing"},
		{"int64 as a JSON number", strings.Replace(g, `"earliest_ns":"1800000000000000000"`, `"earliest_ns":1800000000000000000`, 1), "JSON string"},
		{"enum as a number", strings.Replace(g, `"CLOCK_STATUS_SYNCHRONIZED"`, `2`, 1), "enum"},
		{"no schema", strings.Replace(g, `"schema":"meridian.time.v1",`, ``, 1), "schema"},
		{"another schema", strings.Replace(g, `meridian.time.v1`, `meridian.time.v2`, 1), "schema"},
		{"two bodies", strings.Replace(g, `}}`, `},"hlc":{}}`, 1), "oneof"},
		{"multi-line", string(multi) + "\n", "one line"},
	} {
		if c.doc == g {
			t.Fatalf("%s: the control did not change the document", c.name)
		}
		_, err := decodeDoc(c.doc)
		if err == nil || !strings.Contains(err.Error(), c.why) {
			t.Errorf("%s: %q passed the check or failed for another reason: %v", c.name, c.doc, err)
		}
	}
}

// The rendering rules docs/meridianctl-json.md states, on one document of
// each kind of field.
func TestJSONRenderingRules(t *testing.T) {
	print := func(doc *timev1.CtlOutput) string {
		var out strings.Builder
		if err := (&opts{stdout: &out}).printDoc(doc); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	st := print(statusDoc(&timev1.StatusResponse{OffsetNs: math.NaN(), FrequencyPpb: math.Inf(1), DriftBoundPpb: math.Inf(-1), Stratum: 3, LastSampleAgeNs: -1}))
	stats := &timev1.ServerStatsResponse{NtpDropped: map[string]uint64{"version": 1, "denied": 2, "rate": 3, "mode": 4}}
	ss := print(&timev1.CtlOutput{Body: &timev1.CtlOutput_ServerStats{ServerStats: stats}})
	h := print(&timev1.CtlOutput{Body: &timev1.CtlOutput_Hlc{Hlc: &timev1.HLCTimestamp{Key: []byte{0x18, 0xee, 0x6e, 0x18, 0xf5, 0x1f, 0x92, 0x3c, 0, 0, 0, 0}}}})
	for _, c := range []struct{ doc, want string }{
		{st, `"offset_ns":"NaN"`}, {st, `"frequency_ppb":"Infinity"`}, {st, `"drift_bound_ppb":"-Infinity"`},
		{st, `"stratum":3`}, {st, `"last_sample_age_ns":"-1"`}, {st, `"interval":null`}, {st, `"reason":""`},
		{st, `"status":"CLOCK_STATUS_UNSPECIFIED","leap":"LEAP_INDICATOR_NONE"`},
		{ss, `"ntp_dropped":{"denied":"2","mode":"4","rate":"3","version":"1"}`},
		{h, `"key":"GO5uGPUfkjwAAAAA"`},
	} {
		if !strings.Contains(c.doc, c.want) {
			t.Errorf("%s lacks %s", c.doc, c.want)
		}
	}
	// Compact, whatever spaces this binary's protojson adds (it varies them
	// from build to build on purpose): the same message, the same bytes.
	for _, doc := range []string{st, ss, h} {
		if c := compact(t, []byte(doc)); c != doc {
			t.Errorf("not compact: %q", doc)
		}
	}
}

// compact is a document on one line, as printDoc writes it.
func compact(t *testing.T, b []byte) string {
	t.Helper()
	var line bytes.Buffer
	if err := json.Compact(&line, b); err != nil {
		t.Fatal(err)
	}
	return line.String() + "\n"
}

// ctlDoc runs meridianctl with args and checks its one --json document.
func ctlDoc(t *testing.T, args ...string) *timev1.CtlOutput {
	t.Helper()
	out, err := runCtl(args...)
	if err != nil {
		t.Fatalf("meridianctl %v: %v", args, err)
	}
	doc, err := decodeDoc(out)
	if err != nil {
		t.Fatalf("meridianctl %v: %v\n%s", args, err, out)
	}
	return doc
}

// withoutTimeVarying is a StatusResponse without the fields that change
// between two reads of one unchanged estimate.
func withoutTimeVarying(r *timev1.StatusResponse) *timev1.StatusResponse {
	c := proto.Clone(r).(*timev1.StatusResponse)
	c.Interval, c.ErrorBoundNs, c.LastSampleAgeNs, c.UptimeNs = nil, 0, 0, 0
	return c
}

// inOrder: readings a, b, c taken one after another never contradict
// TrueTime's promise (an earlier read's earliest ≤ a later read's latest),
// and on this server's fixed estimate both bounds only grow.
func inOrder(t *testing.T, what string, a, b, c *timev1.Interval) {
	t.Helper()
	if a.EarliestNs > b.EarliestNs || b.EarliestNs > c.EarliestNs || a.LatestNs > b.LatestNs || b.LatestNs > c.LatestNs ||
		b.Status != a.Status || b.Status != c.Status {
		t.Fatalf("%s: meridianctl's interval %v is not between the gRPC replies before (%v) and after (%v)", what, b, a, c)
	}
}

// Every command's --json is the TimeService reply it shows, as a message:
// protojson.Unmarshal of the output equals what the server returns to a
// gRPC client (the independent truth) — exactly where the reply does not
// move with time, bracketed by a reply before and after where it does.
func TestJSONEveryCommandIsTheGRPCReply(t *testing.T) {
	addr, tt := serve(t)
	g, err := client.DialGRPC(addr, client.TLS{})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	svc := g.Service()

	// Unsynchronized: the Now call fails; now --json still prints its
	// document (the status, no interval) and exits 1.
	if _, err := svc.Now(ctx, &timev1.NowRequest{}); err == nil {
		t.Fatal("Now answered while unsynchronized")
	}
	out, err := runCtl("--addr", addr, "now", "--json")
	if doc, derr := decodeDoc(out); exitCode(err) != 1 || derr != nil ||
		!proto.Equal(doc.GetInterval(), &timev1.Interval{Status: timev1.ClockStatus_CLOCK_STATUS_UNSYNCHRONIZED}) {
		t.Fatalf("now --json while unsynchronized: %q %v %v", out, err, derr)
	}
	st0, err := svc.Status(ctx, &timev1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ctlDoc(t, "--addr", addr, "status", "--json").GetStatus(); !proto.Equal(withoutTimeVarying(got), withoutTimeVarying(st0)) || got.Reason == "" {
		t.Fatalf("status --json while unsynchronized:\n%v\nthe Status call:\n%v", got, st0)
	}

	tt.SetEstimate(syncedEstimate(300 * time.Microsecond))

	// Replies that do not move with time: equal.
	srcs, err := svc.Sources(ctx, &timev1.SourcesRequest{PageSize: timeservice.MaxSourcesPage})
	if err != nil || len(srcs.Sources) != 2 {
		t.Fatal(srcs, err)
	}
	for _, cmd := range []string{"sources", "selectdata", "sourcestats", "ntpdata"} { // the fixture's sources are all NTP
		if got := ctlDoc(t, "--addr", addr, cmd, "--json").GetSources(); !proto.Equal(got, &timev1.SourcesResponse{Sources: srcs.Sources}) {
			t.Errorf("%s --json:\n%v\nthe Sources call:\n%v", cmd, got, srcs)
		}
	}
	stats, err := svc.ServerStats(ctx, &timev1.ServerStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ctlDoc(t, "--addr", addr, "serverstats", "--json").GetServerStats(); !proto.Equal(got, stats) {
		t.Errorf("serverstats --json:\n%v\nthe ServerStats call:\n%v", got, stats)
	}
	clients, err := svc.Clients(ctx, &timev1.ClientsRequest{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if got := ctlDoc(t, "--addr", addr, "clients", "--json").GetClients(); !proto.Equal(got, clients) {
		t.Errorf("clients --json:\n%v\nthe Clients call:\n%v", got, clients)
	}
	// The fixture has one source answering (reach 377) and one that was polled and never answered.
	if got := ctlDoc(t, "--addr", addr, "activity", "--json").GetActivity(); !proto.Equal(got, &timev1.SourceActivity{Online: 1, Offline: 1}) {
		t.Errorf("activity --json: %v", got)
	}

	// Readings: between a reply before and one after.
	nowRPC := func() *timev1.Interval {
		iv, err := svc.Now(ctx, &timev1.NowRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return iv
	}
	b := nowRPC()
	d := ctlDoc(t, "--addr", addr, "now", "--json").GetInterval()
	inOrder(t, "now", b, d, nowRPC())
	target := nowRPC().LatestNs + int64(20*time.Millisecond)
	b = nowRPC()
	d = ctlDoc(t, "--addr", addr, "wait-until", "+20ms", "--json").GetInterval()
	inOrder(t, "wait-until", b, d, nowRPC())
	if d.EarliestNs <= target {
		t.Fatalf("wait-until +20ms returned %v: earliest not past %d", d, target)
	}

	statusRPC := func() *timev1.StatusResponse {
		r, err := svc.Status(ctx, &timev1.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, args := range [][]string{{"status"}, {"waitsync", "--max-error", "1ms"}, {"watch", "--count", "1"}} {
		sb := statusRPC()
		out, err := runCtl(append([]string{"--addr", addr, "--json"}, args...)...)
		sa := statusRPC()
		docs, derr := splitDocs(out)
		if err != nil || derr != nil || len(docs) == 0 {
			t.Fatalf("%v: %q %v %v", args, out, err, derr)
		}
		for _, doc := range docs {
			got := doc.GetStatus()
			if !proto.Equal(withoutTimeVarying(got), withoutTimeVarying(sb)) {
				t.Fatalf("%v --json:\n%v\nthe Status call:\n%v", args, got, sb)
			}
			inOrder(t, args[0], sb.Interval, got.Interval, sa.Interval)
			if got.UptimeNs < sb.UptimeNs || got.UptimeNs > sa.UptimeNs || got.ErrorBoundNs < sb.ErrorBoundNs || got.ErrorBoundNs > sa.ErrorBoundNs {
				t.Fatalf("%v: uptime or ε outside the replies before and after: %v / %v / %v", args, sb, got, sa)
			}
		}
	}
	// watch streams one document per line as the daemon publishes estimates (here every 5 ms).
	stop := make(chan struct{})
	published := make(chan struct{})
	go func() {
		defer close(published)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
				tt.SetEstimate(syncedEstimate(300 * time.Microsecond))
			}
		}
	}()
	out, err = runCtl("--addr", addr, "--json", "watch", "--count", "3", "--interval", "10ms")
	close(stop)
	<-published
	if docs, derr := splitDocs(out); err != nil || derr != nil || len(docs) != 3 || docs[2].GetStatus().GetStatus() != timev1.ClockStatus_CLOCK_STATUS_SYNCHRONIZED {
		t.Fatalf("watch --count 3 --json: want 3 documents, one a line: %q %v %v", out, err, derr)
	}

	hb, err := svc.HLCNow(ctx, &timev1.HLCNowRequest{})
	if err != nil {
		t.Fatal(err)
	}
	h := ctlDoc(t, "--addr", addr, "hlc", "--json").GetHlc()
	ha, err := svc.HLCNow(ctx, &timev1.HLCNowRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ts := hlc.Timestamp{WallNS: h.WallNs, Logical: h.Logical}
	key := ts.Key()
	before, after := hlc.Timestamp{WallNS: hb.WallNs, Logical: hb.Logical}, hlc.Timestamp{WallNS: ha.WallNs, Logical: ha.Logical}
	if !before.Less(ts) || !ts.Less(after) || h.Text != ts.String() || !bytes.Equal(h.Key, key[:]) {
		t.Fatalf("hlc --json %v: not a timestamp between the HLCNow replies %v and %v", h, hb, ha)
	}
	if u := ctlDoc(t, "--addr", addr, "hlc", "update", ha.Text, "--json").GetHlc(); !after.Less(hlc.Timestamp{WallNS: u.WallNs, Logical: u.Logical}) {
		t.Fatalf("hlc update %s --json: %v is not after it", ha.Text, u)
	}
}

// jsonKeys lists every key path of a JSON document (arrays by element).
func jsonKeys(t *testing.T, doc string) []string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatal(err)
	}
	var keys []string
	var walk func(p string, v any)
	walk = func(p string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				keys = append(keys, p+"."+k)
				walk(p+"."+k, e)
			}
		case []any:
			for i, e := range v {
				walk(fmt.Sprintf("%s[%d]", p, i), e)
			}
		}
	}
	walk("$", v)
	slices.Sort(keys)
	return keys
}

// One running meridiand (its own local reference), read over gRPC and
// from its shared-memory segment: now, status and waitsync print the same
// documents — the same keys, the same values but for the fields that move
// with time (checked against each other instead: reads shm, gRPC, shm in
// turn never contradict TrueTime's promise) and the fields only the daemon
// knows, which the segment leaves unset (clock, uptime_ns).
func TestJSONSameOverShmAndGRPC(t *testing.T) {
	cfg := config.Default()
	testdaemon.TempPaths(t, cfg)
	cfg.Metrics.Listen = ""
	cfg.LocalStratum = 10
	d := testdaemon.Start(t, cfg, daemon.Options{Tick: 50 * time.Millisecond})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := d.Clock().Now(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("meridiand with a local reference did not synchronize within 10 s")
		}
	}
	viaGRPC := []string{"--addr", d.GRPCAddrs()[0], "--json"}
	viaShm := []string{"--shm", cfg.Shm.Path, "--json"}
	read := func(via []string, args ...string) (string, *timev1.CtlOutput) {
		t.Helper()
		out, err := runCtl(append(slices.Clone(via), args...)...)
		if err != nil {
			t.Fatalf("%v %v: %v", via, args, err)
		}
		doc, err := decodeDoc(out)
		if err != nil {
			t.Fatalf("%v %v: %v\n%s", via, args, err, out)
		}
		return out, doc
	}

	for _, args := range [][]string{{"now"}, {"status"}, {"waitsync", "--max-error", "1s"}} {
		o1, s1 := read(viaShm, args...)
		og, g := read(viaGRPC, args...)
		o2, s2 := read(viaShm, args...)
		if k1, kg, k2 := jsonKeys(t, o1), jsonKeys(t, og), jsonKeys(t, o2); !slices.Equal(k1, kg) || !slices.Equal(k2, kg) {
			t.Fatalf("%v: keys differ\nshm:  %v\ngRPC: %v", args, k1, kg)
		}
		if iv := g.GetInterval(); iv != nil {
			if iv.Status != timev1.ClockStatus_CLOCK_STATUS_SYNCHRONIZED || s1.GetInterval().Status != iv.Status || s2.GetInterval().Status != iv.Status {
				t.Fatalf("now: statuses differ: %v %v %v", s1, g, s2)
			}
			if s1.GetInterval().EarliestNs > iv.LatestNs || iv.EarliestNs > s2.GetInterval().LatestNs {
				t.Fatalf("now: shm %v, gRPC %v, shm %v contradict each other", s1, g, s2)
			}
			continue
		}
		gs := g.GetStatus()
		if gs.Clock != "virtual" || gs.UptimeNs <= 0 || s1.GetStatus().Clock != "" || s1.GetStatus().UptimeNs != 0 {
			t.Fatalf("%v: clock/uptime_ns: gRPC %q/%d, shm %q/%d: want the daemon's over gRPC, unset over shm",
				args, gs.Clock, gs.UptimeNs, s1.GetStatus().Clock, s1.GetStatus().UptimeNs)
		}
		daemonOnly := func(r *timev1.StatusResponse) *timev1.StatusResponse {
			c := withoutTimeVarying(r)
			c.Clock = ""
			return c
		}
		if !proto.Equal(daemonOnly(s1.GetStatus()), daemonOnly(gs)) || !proto.Equal(daemonOnly(s2.GetStatus()), daemonOnly(gs)) {
			t.Fatalf("%v: values differ\nshm:  %v\ngRPC: %v", args, s1.GetStatus(), gs)
		}
		if gs.Status != timev1.ClockStatus_CLOCK_STATUS_SYNCHRONIZED || gs.ReferenceId != "LOCL" || gs.Stratum != 10 || gs.DriftBoundPpb == 0 {
			t.Fatalf("%v: not the local reference's status: %v", args, gs)
		}
		if s1.GetStatus().Interval.EarliestNs > gs.Interval.LatestNs || gs.Interval.EarliestNs > s2.GetStatus().Interval.LatestNs {
			t.Fatalf("%v: shm %v, gRPC %v, shm %v contradict each other", args, s1, g, s2)
		}
	}
}

// --shm: the three commands the segment serves accept it (the control);
// every other command refuses it with exit status 2 and says why.
func TestShmRefusedWhereTheSegmentCannotServe(t *testing.T) {
	p := publish(t, testdaemon.WallEstimate(time.Millisecond))
	for _, args := range [][]string{{"now"}, {"status"}, {"waitsync"}} {
		if _, err := runCtl(append([]string{"--shm", p, "--timeout", "1s"}, args...)...); err != nil {
			t.Errorf("--shm %v: %v", args, err)
		}
	}
	for _, c := range []struct {
		name string
		args []string
	}{{"sources", nil}, {"selectdata", nil}, {"sourcestats", nil}, {"activity", nil}, {"serverstats", nil}, {"ntpdata", nil}, {"clients", nil},
		{"hlc", nil}, {"update", []string{"hlc", "update", "2026-11-25T06:30:00.000000000Z+3"}}, {"watch", []string{"watch", "--count", "1"}},
		{"wait-until", []string{"wait-until", "+1ms"}}} {
		args := c.args
		if args == nil {
			args = []string{c.name}
		}
		_, err := runCtl(append([]string{"--shm", p}, args...)...)
		var e exitError
		if !errors.As(err, &e) || e.code != 2 || !strings.Contains(e.msg, "--shm: "+c.name+" needs the daemon") {
			t.Errorf("--shm %v: %v", args, err)
		}
	}
}

// The same for a daemon that cannot promise an interval (no source, no
// local reference): now prints the same status-only document over both
// transports and exits 1; status is the same but for the daemon's reason,
// which the segment does not carry.
func TestJSONSameOverShmAndGRPCUnsynchronized(t *testing.T) {
	cfg := config.Default()
	testdaemon.TempPaths(t, cfg)
	cfg.Metrics.Listen = ""
	d := testdaemon.Start(t, cfg, daemon.Options{Tick: 50 * time.Millisecond})
	time.Sleep(200 * time.Millisecond) // a few ticks: the segment is published
	viaGRPC := []string{"--addr", d.GRPCAddrs()[0], "--json"}
	viaShm := []string{"--shm", cfg.Shm.Path, "--json"}
	og, errG := runCtl(slices.Concat(viaGRPC, []string{"now"})...)
	osh, errS := runCtl(slices.Concat(viaShm, []string{"now"})...)
	if og != osh || exitCode(errG) != 1 || exitCode(errS) != 1 {
		t.Fatalf("now --json: gRPC %q (%v), shm %q (%v)", og, errG, osh, errS)
	}
	if doc, err := decodeDoc(og); err != nil || !proto.Equal(doc.GetInterval(), &timev1.Interval{Status: timev1.ClockStatus_CLOCK_STATUS_UNSYNCHRONIZED}) {
		t.Fatalf("now --json: %q %v", og, err)
	}
	g := ctlDoc(t, slices.Concat(viaGRPC, []string{"status"})...).GetStatus()
	s := ctlDoc(t, slices.Concat(viaShm, []string{"status"})...).GetStatus()
	if g.Reason == "" || s.Reason != "" {
		t.Fatalf("reason: gRPC %q, shm %q: want the daemon's over gRPC, none over shm (its writer is live)", g.Reason, s.Reason)
	}
	g.Reason, g.Clock = "", ""
	if !proto.Equal(withoutTimeVarying(g), withoutTimeVarying(s)) || g.Status != timev1.ClockStatus_CLOCK_STATUS_UNSYNCHRONIZED || g.Interval != nil || s.Interval != nil {
		t.Fatalf("status --json:\nshm:  %v\ngRPC: %v", s, g)
	}
}

// Whatever a reply holds (any text, float or integer), printDoc writes one
// line that passes decodeDoc and unmarshals to the same message; text that
// is not UTF-8, which a protobuf string cannot carry, is an error naming
// --json instead of a broken document.
func FuzzJSONDocument(f *testing.F) {
	f.Add("LOCL", "no sample from any source yet", 1.5, -42.0, int64(-1), uint64(1<<63), uint32(10), uint8(2))
	f.Add("ntp:[::1]:123", "line\nbreak \"quoted\" \u2028 \x00", math.NaN(), math.Inf(-1), int64(math.MinInt64), uint64(math.MaxUint64), uint32(math.MaxUint32), uint8(4))
	f.Add("\xff", "ok", 0.0, 0.0, int64(0), uint64(0), uint32(0), uint8(0))
	f.Fuzz(func(t *testing.T, ref, reason string, off, freq float64, age int64, n uint64, stratum uint32, st uint8) {
		status := timev1.ClockStatus(st % 5) // the values the enum names; an unknown one would print as a number
		docs := []*timev1.CtlOutput{
			statusDoc(&timev1.StatusResponse{Status: status, Leap: timev1.LeapIndicator(st % 3), ReferenceId: ref, Reason: reason, OffsetNs: off,
				FrequencyPpb: freq, LastSampleAgeNs: age, Stratum: stratum, Interval: &timev1.Interval{EarliestNs: age, LatestNs: int64(n), Status: status}}),
			sourcesDoc([]*timev1.Source{{Name: ref, StateReason: reason, OffsetNs: off, JitterNs: freq, LastSampleAgeNs: age, Sent: n, Reach: stratum}, {}}),
			{Body: &timev1.CtlOutput_ServerStats{ServerStats: &timev1.ServerStatsResponse{NtpDropped: map[string]uint64{ref: n, reason: uint64(age)}}}},
			{Body: &timev1.CtlOutput_Hlc{Hlc: &timev1.HLCTimestamp{WallNs: age, Logical: stratum, Text: ref + reason, Key: []byte(ref)}}},
		}
		for i, doc := range docs {
			var out strings.Builder
			err := (&opts{stdout: &out}).printDoc(doc)
			valid := utf8.ValidString(ref) && utf8.ValidString(reason)
			if i == 3 { // its one string is ref+reason
				valid = utf8.ValidString(ref + reason)
			}
			if !valid {
				if err == nil || !strings.Contains(err.Error(), "--json") || out.Len() != 0 {
					t.Fatalf("doc %d with text that is not UTF-8: printed %q, error %v", i, out.String(), err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("doc %d: %v", i, err)
			}
			got, err := decodeDoc(out.String())
			if err != nil {
				t.Fatalf("doc %d: %v\n%s", i, err, out.String())
			}
			if !proto.Equal(got, doc) {
				t.Fatalf("doc %d does not round-trip:\nwant %v\ngot  %v\n%s", i, doc, got, out.String())
			}
		}
	})
}
