package timeservice_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	timev1 "github.com/meridiantime/meridian/api/meridian/time/v1"
	"github.com/meridiantime/meridian/client"
	"github.com/meridiantime/meridian/timeservice"
)

// Blocking calls are capped per connection and in total: beyond the caps a
// call is RESOURCE_EXHAUSTED at once (before: unlimited, 72 MB of RSS from
// one client). A freed slot is usable again.
func TestWaitUntilAfterCapped(t *testing.T) {
	const total, perConn = 6, 4
	f := start(t, timeservice.ServerConfig{}, timeservice.Options{MaxWaiters: total, MaxWaitersPerConn: perConn})
	f.tt.SetEstimate(synced(time.Millisecond))
	_, c1 := dial(t, f.addr[0], client.TLS{})
	_, c2 := dial(t, f.addr[0], client.TLS{})
	far := &timev1.TimestampRequest{TsNs: time.Now().UnixNano() + int64(30*time.Minute)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, 16)
	block := func(c timev1.TimeServiceClient, cctx context.Context) {
		go func() {
			_, err := c.WaitUntilAfter(cctx, far)
			errs <- err
		}()
	}
	waitFor := func(n int64) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); f.svc.Waiters() != n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d waiters, want %d", f.svc.Waiters(), n)
			}
		}
	}
	one, cancelOne := context.WithCancel(ctx)
	block(c1, one)
	for i := 1; i < perConn; i++ {
		block(c1, ctx)
	}
	waitFor(perConn)
	// The connection is full: refused at once, not queued.
	if _, err := c1.WaitUntilAfter(ctxT(t, 2*time.Second), far); code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "on this connection") {
		t.Fatalf("call %d on one connection: %v", perConn+1, err)
	}
	// Another connection still may, up to the total.
	for i := perConn; i < total; i++ {
		block(c2, ctx)
	}
	waitFor(total)
	if _, err := c2.WaitUntilAfter(ctxT(t, 2*time.Second), far); code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "limit 6") {
		t.Fatalf("call %d in total: %v", total+1, err)
	}
	// Watch streams count against the connection too.
	w, err := c1.Watch(ctxT(t, 2*time.Second), &timev1.WatchRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	if code(err) != codes.ResourceExhausted {
		t.Fatalf("Watch on a full connection: %v", err)
	}
	// A freed slot is reusable.
	cancelOne()
	if err := <-errs; code(err) != codes.Canceled {
		t.Fatalf("cancelled wait: %v", err)
	}
	waitFor(total - 1)
	soon := &timev1.TimestampRequest{TsNs: time.Now().UnixNano() + int64(5*time.Millisecond)}
	if _, err := c1.WaitUntilAfter(ctxT(t, 5*time.Second), soon); err != nil {
		t.Fatalf("after a slot was freed: %v", err)
	}
	cancel()
	for i := 0; i < total-1; i++ {
		<-errs
	}
	waitFor(0)
}

// A timestamp before 2000-01-01 is a unit mistake (µs or ms sent as ns):
// INVALID_ARGUMENT with a hint, on every call taking one (before: a µs
// value, a 1970 instant, returned OK). 2000-01-01 itself is accepted.
func TestTimestampUnits(t *testing.T) {
	f := start(t, timeservice.ServerConfig{}, timeservice.Options{})
	f.tt.SetEstimate(synced(time.Millisecond))
	_, c := dial(t, f.addr[0], client.TLS{})
	calls := map[string]func(ts int64) error{
		"After": func(ts int64) error {
			_, err := c.After(ctxT(t, 2*time.Second), &timev1.TimestampRequest{TsNs: ts})
			return err
		},
		"Before": func(ts int64) error {
			_, err := c.Before(ctxT(t, 2*time.Second), &timev1.TimestampRequest{TsNs: ts})
			return err
		},
		"WaitUntilAfter": func(ts int64) error {
			_, err := c.WaitUntilAfter(ctxT(t, 2*time.Second), &timev1.TimestampRequest{TsNs: ts})
			return err
		},
	}
	now := time.Now()
	for name, call := range calls {
		for _, ts := range []int64{now.UnixMicro(), now.UnixMilli(), now.Unix(), 1, 0, -5, timeservice.MinTimestampNS - 1} {
			err := call(ts)
			if code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "nanoseconds since the Unix epoch") {
				t.Errorf("%s(%d): %v", name, ts, err)
			}
		}
		for _, ts := range []int64{timeservice.MinTimestampNS, now.UnixNano()} {
			if err := call(ts); err != nil {
				t.Errorf("%s(%d): %v", name, ts, err)
			}
		}
	}
}

// Sources is paged: every source is listed once across the pages, no reply
// exceeds MaxSourcesPage (so 14k sources no longer exceed the 4 MB reply
// limit), and a bad token is INVALID_ARGUMENT.
func TestSourcesPaged(t *testing.T) {
	const n = 2500
	srcs := make([]*timev1.Source, n)
	for i := range srcs {
		srcs[i] = &timev1.Source{Name: fmt.Sprintf("ntp:%d", i), Address: strings.Repeat("a", 200)}
	}
	f := start(t, timeservice.ServerConfig{}, timeservice.Options{Sources: func() []*timev1.Source { return srcs }})
	_, c := dial(t, f.addr[0], client.TLS{})
	for _, size := range []int32{0, 1, 999, 1000, 5000} {
		want := int(size)
		switch {
		case size == 0:
			want = timeservice.DefaultSourcesPage
		case size > timeservice.MaxSourcesPage:
			want = timeservice.MaxSourcesPage
		}
		seen, token, pages := map[string]bool{}, "", 0
		for {
			r, err := c.Sources(ctxT(t, 5*time.Second), &timev1.SourcesRequest{PageSize: size, PageToken: token})
			if err != nil {
				t.Fatal(err)
			}
			pages++
			if len(r.Sources) > want || (r.NextPageToken != "" && len(r.Sources) != want) {
				t.Fatalf("page size %d: a page of %d", size, len(r.Sources))
			}
			for _, s := range r.Sources {
				if seen[s.Name] {
					t.Fatalf("page size %d: %s listed twice", size, s.Name)
				}
				seen[s.Name] = true
			}
			if token = r.NextPageToken; token == "" {
				break
			}
		}
		if len(seen) != n || pages != (n+want-1)/want {
			t.Fatalf("page size %d: %d sources in %d pages", size, len(seen), pages)
		}
	}
	for _, bad := range []string{"x", "-1", "1e3"} {
		if _, err := c.Sources(ctxT(t, 2*time.Second), &timev1.SourcesRequest{PageToken: bad}); code(err) != codes.InvalidArgument {
			t.Errorf("token %q: %v", bad, err)
		}
	}
	if _, err := c.Sources(ctxT(t, 2*time.Second), &timev1.SourcesRequest{PageSize: -1}); code(err) != codes.InvalidArgument {
		t.Errorf("page_size -1: %v", err)
	}
	if r, err := c.Sources(ctxT(t, 2*time.Second), &timev1.SourcesRequest{PageToken: "999999"}); err != nil || len(r.Sources) != 0 || r.NextPageToken != "" {
		t.Errorf("past the end: %v %v", r, err)
	}
}
