package report

import (
	"bytes"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"gonum.org/v1/plot/plotter"

	"github.com/meridiantime/meridian/bench/stability"
)

// synthetic builds a results set with every section from seeded noise: no
// measurement, only shapes like a real run's.
func synthetic(t testing.TB) *Results {
	rng := rand.New(rand.NewPCG(14, 1))
	r := &Results{Title: "meridian-bench: synthetic results", Run: "synthetic data for the renderer's tests"}
	r.Offsets = &Offsets{}
	r.Errors = &Errors{}
	r.Stability = &Stability{}
	r.EpsVsError = &EpsVsError{}
	for i, c := range []struct {
		name      string
		noise, wd float64
	}{{"meridian", 20e-6, 5e-6}, {"chrony", 40e-6, 10e-6}, {"ptp4l", 2e-6, 1e-6}} {
		const n = 3000
		ts := make([]float64, n)
		off := make([]float64, n)
		eps := make([]float64, n)
		w := 0.0
		for j := range n {
			w += c.wd * rng.NormFloat64() / 10
			ts[j] = float64(j)
			off[j] = w + c.noise*rng.NormFloat64() + 30e-6*math.Sin(float64(j)/300+float64(i))
			eps[j] = 4*c.noise + math.Abs(w) + 40e-6
		}
		r.Offsets.Series = append(r.Offsets.Series, OffsetSeries{Name: c.name, TS: ts, OffsetS: off})
		r.Errors.Contestants = append(r.Errors.Contestants, ErrorSamples{Name: c.name, ErrorS: off})
		curves, err := stability.Analyze(off, 1)
		if err != nil {
			t.Fatal(err)
		}
		r.Stability.Contestants = append(r.Stability.Contestants, StabilityCurves{Name: c.name, Curves: curves})
		r.EpsVsError.Contestants = append(r.EpsVsError.Contestants, EpsErr{Name: c.name, EpsS: eps[:500], ErrS: off[:500]})
	}
	r.Coverage = &Coverage{Rows: []CoverageRow{
		{Name: "meridian", Scenario: "clean", Reads: 100000, Violations: 0},
		{Name: "chrony", Scenario: "clean", Reads: 100000, Violations: 12},
	}}
	lat := &LatencySeries{Name: "memory"}
	for range 400 {
		e := 1e-3 + 9e-3*rng.Float64()
		lat.EpsS = append(lat.EpsS, e)
		lat.LatencyS = append(lat.LatencyS, 2*e+50e-6*rng.ExpFloat64())
	}
	r.CommitLatency = &CommitLatency{Backends: []LatencySeries{*lat}}
	r.ServerEfficiency = &ServerEfficiency{Rows: []EfficiencyRow{
		{Name: "meridiand", RepliesPerCPUSecond: 310000, SocketLimitPerCPUSecond: 400000, PairedRatio: 0.8125},
		{Name: "chronyd", RepliesPerCPUSecond: 190000, SocketLimitPerCPUSecond: 400000},
	}}
	return r
}

func render(t testing.TB, r *Results) string {
	var b bytes.Buffer
	if err := Render(&b, r); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

var (
	hrefRe = regexp.MustCompile(`(?i)\bhref\s*=\s*"([^"]*)"`)
	// Anything by which a page can make the browser fetch: a URL scheme, a
	// src or srcset, CSS url() or @import, a script, a frame or an object.
	fetchRe = regexp.MustCompile(`(?i)https?:|ftp:|\bsrc\s*=|srcset|url\(|@import|<script|<iframe|<object|<embed|<link|<base|<meta\s+http-equiv|xlink:href`)
)

// selfContained reports why page could make a browser fetch anything.
func selfContained(page string) []string {
	why := fetchRe.FindAllString(page, -1)
	for _, m := range hrefRe.FindAllStringSubmatch(page, -1) {
		if !strings.HasPrefix(m[1], "#") {
			why = append(why, "href="+m[1])
		}
	}
	return why
}

func TestRenderEverySectionSelfContained(t *testing.T) {
	page := render(t, synthetic(t))
	if why := selfContained(page); len(why) > 0 {
		t.Fatalf("the page can fetch: %q", why)
	}
	for _, s := range Sections {
		if !strings.Contains(page, `<section id="`+s.ID+`">`) {
			t.Errorf("section %s missing", s.ID)
		}
		if !strings.Contains(page, "<h2>"+htmlEscape(s.Heading)+"</h2>") {
			t.Errorf("heading %q missing", s.Heading)
		}
	}
	if strings.Contains(page, "Not measured") {
		t.Error("a measured section says it was not measured")
	}
	// offsets 1, errors 2, stability 3, ε 1, commit latency 1, efficiency 1.
	if n := strings.Count(page, "<svg"); n != 9 {
		t.Errorf("%d plots, want 9", n)
	}
	// The log-log plots carry decade ticks (LogTicks labels powers of ten).
	if !strings.Contains(page, "Maximum time interval error") || !strings.Contains(page, ">1e-05<") && !strings.Contains(page, ">1e-06<") {
		t.Error("no decade tick labels in the stability plots")
	}
	if len(page) > 4<<20 {
		t.Errorf("page is %d bytes: decimation failed", len(page))
	}
	t.Logf("page: %d bytes", len(page))
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// Negative control: the self-containment check catches what vgsvg emits
// before svgOf strips it, and the usual ways to fetch.
func TestSelfContainedCheckCatches(t *testing.T) {
	for _, bad := range []string{
		`<svg xmlns="http://www.w3.org/2000/svg"></svg>`,
		`<img src="data:image/png;base64,AAAA">`,
		`<a href="https://example.invalid/">x</a>`,
		`<style>body{background:url(x.png)}</style>`,
		`<script>fetch("/x")</script>`,
		`<link rel="stylesheet" href="s.css">`,
	} {
		if why := selfContained("<html><body>" + bad + "</body></html>"); len(why) == 0 {
			t.Errorf("not caught: %s", bad)
		}
	}
}

func TestMissingSectionsSayWhy(t *testing.T) {
	r := &Results{
		Title:    "partial",
		Coverage: &Coverage{Rows: []CoverageRow{{Name: "meridian", Scenario: "clean", Reads: 10, Violations: 1}}},
		NotMeasured: map[string]string{
			SectionStability:        "ptp4l needs a PTP hardware clock, none on this host",
			SectionServerEfficiency: "--skip-server",
		},
	}
	page := render(t, r)
	for _, want := range []string{
		"Not measured in this run: ptp4l needs a PTP hardware clock, none on this host",
		"Not measured in this run: --skip-server",
		"Not measured in this run: no reason recorded",
		"<td>90 %</td>",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if n := strings.Count(page, "Not measured in this run"); n != 6 {
		t.Errorf("%d sections not measured, want 6", n)
	}
	if strings.Contains(page, "<svg") {
		t.Error("a plot drawn for a section with no data")
	}
	if why := selfContained(page); len(why) > 0 {
		t.Errorf("the page can fetch: %q", why)
	}
}

func TestNamesEscaped(t *testing.T) {
	r := synthetic(t)
	evil := `<script>alert("x")</script>&`
	r.Offsets.Series[0].Name = evil
	r.Coverage.Rows[0].Name = evil
	page := render(t, r)
	if strings.Contains(page, "<script") {
		t.Fatal("a name reached the page unescaped")
	}
	if why := selfContained(page); len(why) > 0 {
		t.Errorf("the page can fetch: %q", why)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	dir := t.TempDir()
	r := synthetic(t)
	r.Offsets = nil
	r.NotMeasured = map[string]string{SectionOffsets: "no truth source"}
	if err := Save(dir, r); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Fatal("results.json does not round-trip")
	}
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), ResultsFile) {
		t.Errorf("missing file: %v", err)
	}
}

// The paired ratio gets its own column; a row without one shows a dash.
func TestEfficiencyPairedColumn(t *testing.T) {
	page := render(t, synthetic(t))
	for _, want := range []string{"ratio in the same round (median)", "0.775", "0.812", "—"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func TestDecodeErrorsNameTheField(t *testing.T) {
	for _, c := range []struct{ json, want string }{
		{`{"title":"x","offsets":{"series":[{"name":"a","t_s":[1,2],"offset_s":[1]}]}}`, "offsets.series[0]: 2 times for 1 offsets"},
		{`{"title":"x","colour":"red"}`, `unknown field "colour"`},
		{`{"title":"x","coverage":{"rows":[{"name":"a","reads":3,"violations":4}]}}`, "coverage.rows[0]: 4 violations in 3 reads"},
		{`{"title":"x","server_efficiency":{"rows":[{"name":"a","replies_per_cpu_second":1,"socket_limit_per_cpu_second":0}]}}`, "server_efficiency.rows[0].socket_limit_per_cpu_second = 0"},
		{`{"title":"x","server_efficiency":{"rows":[{"name":"a","replies_per_cpu_second":1,"socket_limit_per_cpu_second":2,"paired_ratio":-1}]}}`, "server_efficiency.rows[0].paired_ratio = -1"},
		{`{"title":"x","not_measured":{"bogus":"y"}}`, `not_measured["bogus"]: no such section`},
		{`{"title":"x","coverage":{"rows":[]},"not_measured":{"coverage":"y"}}`, `not_measured["coverage"]: the section is present`},
		{`{"title":"x","errors":{"contestants":[{"name":"","error_s":[]}]}}`, "errors.contestants[0].name: empty"},
		{`{"title":"x","eps_vs_error":{"contestants":[{"name":"a","eps_s":[-1],"err_s":[0]}]}}`, "eps_vs_error.contestants[0].eps_s[0] = -1: must be ≥ 0"},
		{`{"title":"x","stability":{"contestants":[{"name":"a","curves":{"adev":[{"m":1,"tau_s":0,"value":1,"n":1}]}}]}}`, "stability.contestants[0].curves.adev[0]"},
		{`{"title":"x"} {}`, "data after the results object"},
	} {
		_, err := Decode(strings.NewReader(c.json))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.json, err, c.want)
		}
	}
}

func TestDecimateKeepsExcursions(t *testing.T) {
	xys := make(plotter.XYs, 100000)
	for i := range xys {
		xys[i] = plotter.XY{X: float64(i), Y: math.Sin(float64(i) / 1000)}
	}
	xys[31337].Y = 50
	xys[77777].Y = -50
	d := decimate(xys)
	if len(d) > maxDrawn {
		t.Fatalf("%d points drawn, at most %d", len(d), maxDrawn)
	}
	var hi, lo plotter.XY
	for i, p := range d {
		if i > 0 && p.X <= d[i-1].X {
			t.Fatalf("out of order at %d", i)
		}
		if p.Y > hi.Y {
			hi = p
		}
		if p.Y < lo.Y {
			lo = p
		}
	}
	if hi != xys[31337] || lo != xys[77777] {
		t.Errorf("extremes lost: %v %v", hi, lo)
	}
}

func TestRenderFromResultsDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := Save(dir, synthetic(t)); err != nil {
		t.Fatal(err)
	}
	r, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "report.html")
	if err := WriteFile(out, r); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil || !bytes.Contains(b, []byte(`<section id="server-efficiency">`)) {
		t.Fatalf("report.html: %v", err)
	}
}

// Any results.json that decodes renders a self-contained page with every
// section, and encodes back to the same results.
func FuzzDecode(f *testing.F) {
	var b bytes.Buffer
	small := &Results{Title: "f", Coverage: &Coverage{Rows: []CoverageRow{{Name: "a", Scenario: "s", Reads: 2, Violations: 1}}},
		Offsets:     &Offsets{Series: []OffsetSeries{{Name: "m", TS: []float64{0, 1, 2}, OffsetS: []float64{1e-6, -2e-6, 0}}}},
		Stability:   &Stability{Contestants: []StabilityCurves{{Name: "m", Curves: stability.Curves{Tau0S: 1, ADEV: []stability.Point{{M: 1, TauS: 1, Value: 1e-6, N: 3}}}}}},
		NotMeasured: map[string]string{SectionErrors: "why"}}
	if err := Encode(&b, small); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	f.Add([]byte(`{"title":"x","server_efficiency":{"rows":[{"name":"a","replies_per_cpu_second":1,"socket_limit_per_cpu_second":2}]}}`))
	f.Add([]byte(`{"title":"<b>","eps_vs_error":{"contestants":[{"name":"a","eps_s":[0,0],"err_s":[0,1e-300]}]},"commit_latency":{"backends":[{"name":"b","eps_s":[0],"latency_s":[0]}]}}`))
	f.Add([]byte(`{"title":"x","errors":{"contestants":[{"name":"a","error_s":[5,5,5]}]}}`))
	f.Add([]byte(`{"title":"x","tables":[{"id":"t-1","heading":"<h>","columns":["a","b"],"rows":[["1","<i>"]],"note":"n"},{"id":"t2","heading":"h","columns":["a"],"rows":null,"not_measured":"why"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4096 {
			return
		}
		r, err := Decode(bytes.NewReader(data))
		if err != nil {
			return
		}
		var page bytes.Buffer
		if err := Render(&page, r); err != nil {
			t.Fatalf("decoded results do not render: %v", err)
		}
		if why := selfContained(page.String()); len(why) > 0 {
			t.Fatalf("the page can fetch: %q", why)
		}
		for _, s := range Sections {
			if !strings.Contains(page.String(), `<section id="`+s.ID+`">`) {
				t.Fatalf("section %s missing", s.ID)
			}
		}
		for _, tb := range r.Tables {
			if !strings.Contains(page.String(), `<section id="`+tb.ID+`">`) {
				t.Fatalf("table section %s missing", tb.ID)
			}
		}
		var enc bytes.Buffer
		if err := Encode(&enc, r); err != nil {
			t.Fatalf("decoded results do not encode: %v", err)
		}
		r2, err := Decode(&enc)
		if err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
