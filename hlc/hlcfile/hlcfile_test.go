package hlcfile

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/meridiantime/meridian/hlc"
	"github.com/meridiantime/meridian/truetime"
)

type fixedPhys struct{ ns atomic.Int64 }

func (p *fixedPhys) Now() (truetime.Interval, error) {
	n := p.ns.Load()
	return truetime.Interval{EarliestNS: n, LatestNS: n, Status: truetime.Synchronized}, nil
}

func TestStoreLoad(t *testing.T) {
	p := Persister{Dir: filepath.Join(t.TempDir(), "state")}
	if _, ok, err := p.Load(); ok || err != nil {
		t.Fatalf("fresh: %v %v", ok, err)
	}
	for _, v := range []int64{0, 1_795_000_000_123_456_789, hlc.MaxWallNS} {
		if err := p.Store(v); err != nil {
			t.Fatal(err)
		}
		if got, ok, err := p.Load(); got != v || !ok || err != nil {
			t.Fatalf("stored %d, loaded %d %v %v", v, got, ok, err)
		}
	}
	if err := p.Store(-1); err == nil {
		t.Fatal("negative bound stored")
	}
	for _, bad := range []string{"12abc\n", "ns:\n", "ns:-5\n", "ns:012\n", "ns:9223372036854775808\n", "-3\n", "2251799813685248\n", ""} {
		if err := os.WriteFile(p.Path(), []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if v, ok, err := p.Load(); err == nil {
			t.Errorf("corrupt %q loaded as %d %v", bad, v, ok)
		} else if !strings.Contains(err.Error(), p.Path()) {
			t.Errorf("error does not name the file: %v", err)
		}
	}
}

// A bound written by the microsecond HLC (a bare decimal count of µs) is
// read as the last nanosecond of that microsecond, so the restarted
// nanosecond clock issues only timestamps above every old one; the next
// Store writes the new form, which the old parser refuses.
func TestMigratesMicrosecondBound(t *testing.T) {
	dir := t.TempDir()
	p := Persister{Dir: dir}
	const oldUS = 1_795_000_000_123_456
	if err := os.WriteFile(p.Path(), []byte(strconv.FormatInt(oldUS, 10)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	v, ok, err := p.Load()
	if err != nil || !ok || v != oldUS*1000+999 {
		t.Fatalf("old bound %d µs loaded as %d %v %v", int64(oldUS), v, ok, err)
	}
	// The largest old bound (2^51−1 µs, 2041-05-10) converts without overflow.
	if v, err := Parse("2251799813685247"); err != nil || v != 2251799813685247*1000+999 {
		t.Fatalf("largest old bound: %d %v", v, err)
	}
	ph := &fixedPhys{}
	ph.ns.Store(oldUS*1000 + 999) // physical time exactly at the converted bound
	c, err := hlc.New(ph, hlc.Options{Persist: p})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Now(); err == nil {
		t.Fatal("issued a timestamp at the converted bound")
	}
	ph.ns.Add(1)
	ts, err := c.Now()
	if err != nil || ts.WallNS <= oldUS*1000+999 || ts.WallNS/1000 <= oldUS {
		t.Fatalf("restarted clock issued %v %v, not above every old timestamp (µs %d)", ts, err, int64(oldUS))
	}
	b, err := os.ReadFile(p.Path())
	if err != nil || !strings.HasPrefix(string(b), "ns:") {
		t.Fatalf("not rewritten in the new form: %q %v", b, err)
	}
	if _, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
		t.Fatalf("the old parser would accept the new form %q", b)
	}
	if v, _, err := p.Load(); err != nil || v < ts.WallNS {
		t.Fatalf("new bound %d below the issued %v: %v", v, ts, err)
	}
}
