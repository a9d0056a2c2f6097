package report

import (
	"bytes"
	"fmt"
	"html/template"
	"image/color"
	"io"
	"math"
	"os"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/meridiantime/meridian/bench/stability"
)

// maxDrawn is the most points one curve is drawn with: longer series are
// reduced to the minimum and maximum of each of maxDrawn/2 buckets, so
// every excursion stays visible and the page stays small.
const maxDrawn = 2000

type table struct {
	Caption string
	Head    []string
	Rows    [][]string
}

type sectionView struct {
	ID, Heading string
	Missing     string // non-empty: not measured, and why
	Notes       []string
	Plots       []template.HTML
	Tables      []table
}

// WriteFile renders r to path.
func WriteFile(path string, r *Results) error {
	var b bytes.Buffer
	if err := Render(&b, r); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// Render writes r as one self-contained HTML page: inline CSS, every plot
// an inline SVG, no script, no external reference of any kind.
func Render(w io.Writer, r *Results) error {
	views, err := buildViews(r)
	if err != nil {
		return err
	}
	title := r.Title
	if title == "" {
		title = "meridian-bench results"
	}
	return page.Execute(w, struct {
		Title, Run string
		Sections   []sectionView
	}{title, r.Run, views})
}

// buildViews validates r and lays out every section: the built-in ones in
// report order, then the tables.
func buildViews(r *Results) ([]sectionView, error) {
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	var views []sectionView
	for _, s := range Sections {
		v := sectionView{ID: s.ID, Heading: s.Heading}
		if !r.present(s.ID) {
			reason := r.NotMeasured[s.ID]
			if reason == "" {
				reason = "no reason recorded"
			}
			v.Missing = reason
			views = append(views, v)
			continue
		}
		var err error
		switch s.ID {
		case SectionOffsets:
			err = offsetsView(&v, r.Offsets)
		case SectionErrors:
			err = errorsView(&v, r.Errors)
		case SectionStability:
			err = stabilityView(&v, r.Stability)
		case SectionEpsVsError:
			err = epsView(&v, r.EpsVsError)
		case SectionCoverage:
			coverageView(&v, r.Coverage)
		case SectionCommitLatency:
			err = latencyView(&v, r.CommitLatency)
		case SectionServerEfficiency:
			err = efficiencyView(&v, r.ServerEfficiency)
		}
		if err != nil {
			return nil, fmt.Errorf("report: section %s: %w", s.ID, err)
		}
		views = append(views, v)
	}
	for _, t := range r.Tables {
		views = append(views, tableView(t))
	}
	return views, nil
}

var page = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; background: #fff; }
h1 { border-bottom: 2px solid #335; padding-bottom: .3em; }
h2 { margin-top: 2em; border-bottom: 1px solid #aab; }
nav ul { columns: 2; }
.run { color: #555; white-space: pre-wrap; }
.missing { background: #fff4e0; border-left: 4px solid #e0a030; padding: .6em 1em; }
.plot svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; margin: 1em 0; font-size: 90%; }
caption { text-align: left; font-weight: bold; padding: .3em 0; }
th, td { border: 1px solid #ccd; padding: .25em .6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #eef; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
{{if .Run}}<p class="run">{{.Run}}</p>{{end}}
<nav><ul>{{range .Sections}}<li><a href="#{{.ID}}">{{.Heading}}</a>{{if .Missing}} (not measured){{end}}</li>{{end}}</ul></nav>
{{range .Sections}}
<section id="{{.ID}}">
<h2>{{.Heading}}</h2>
{{if .Missing}}<p class="missing">Not measured in this run: {{.Missing}}</p>{{else}}
{{range .Notes}}<p>{{.}}</p>{{end}}
{{range .Plots}}<div class="plot">{{.}}</div>{{end}}
{{range .Tables}}<table>{{if .Caption}}<caption>{{.Caption}}</caption>{{end}}
<tr>{{range .Head}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>{{end}}
</table>{{end}}
{{end}}
</section>
{{end}}
</body>
</html>
`))

// svgOf draws p as an inline SVG element: without the XML prolog and the
// namespace declarations, which HTML's parser supplies for inline <svg>.
func svgOf(p *plot.Plot) (svg template.HTML, err error) {
	for _, ax := range []*plot.Axis{&p.X, &p.Y} {
		if _, log := ax.Scale.(plot.LogScale); log && ax.Min == ax.Max {
			// One value: gonum would pad the range into ≤ 0.
			ax.Min, ax.Max = ax.Min/2, ax.Max*2
		}
	}
	defer func() {
		// gonum/plot panics on data it cannot draw; that is an error here.
		if e := recover(); e != nil {
			svg, err = "", fmt.Errorf("drawing %q: %v", p.Title.Text, e)
		}
	}()
	c := vgsvg.New(16*vg.Centimeter, 9*vg.Centimeter)
	p.Draw(draw.New(c))
	var b bytes.Buffer
	if _, err := c.WriteTo(&b); err != nil {
		return "", err
	}
	s := b.String()
	i := strings.Index(s, "<svg")
	if i < 0 {
		return "", fmt.Errorf("no <svg> element in the plot")
	}
	s = s[i:]
	s = strings.Replace(s, `xmlns="http://www.w3.org/2000/svg"`, "", 1)
	s = strings.Replace(s, `xmlns:xlink="http://www.w3.org/1999/xlink"`, "", 1)
	return template.HTML(s), nil // vgsvg escapes every text it draws
}

func newPlot(title, x, y string, logX, logY bool) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	if logX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: 1}
	}
	if logY {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: 1}
	}
	return p
}

// decimate keeps the first and last point and, for long series, the
// minimum and maximum (by Y) of each bucket, in order.
func decimate(xys plotter.XYs) plotter.XYs {
	if len(xys) <= maxDrawn {
		return xys
	}
	buckets := maxDrawn / 2
	out := make(plotter.XYs, 0, maxDrawn+2)
	for b := range buckets {
		lo, hi := b*len(xys)/buckets, (b+1)*len(xys)/buckets
		imin, imax := lo, lo
		for i := lo; i < hi; i++ {
			if xys[i].Y < xys[imin].Y {
				imin = i
			}
			if xys[i].Y > xys[imax].Y {
				imax = i
			}
		}
		out = append(out, xys[min(imin, imax)])
		if imin != imax {
			out = append(out, xys[max(imin, imax)])
		}
	}
	return out
}

// addLine adds a named line (with points when marks) in colour i.
func addLine(p *plot.Plot, i int, name string, xys plotter.XYs, marks bool) error {
	l, err := plotter.NewLine(xys)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	l.Color = plotutil.Color(i)
	l.Dashes = plotutil.Dashes(i)
	p.Add(l)
	p.Legend.Add(name, l)
	if marks {
		s, err := plotter.NewScatter(xys)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		s.Color = plotutil.Color(i)
		s.Shape = plotutil.Shape(i)
		p.Add(s)
	}
	return nil
}

func addScatter(p *plot.Plot, i int, name string, xys plotter.XYs) error {
	s, err := plotter.NewScatter(xys)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	s.Color = plotutil.Color(i)
	s.Shape = plotutil.Shape(i)
	s.Radius = vg.Points(1.5)
	p.Add(s)
	p.Legend.Add(name, s)
	return nil
}

// addReference draws y = k·x over [lo, hi] as a grey line.
func addReference(p *plot.Plot, label string, k, lo, hi float64) error {
	l, err := plotter.NewLine(plotter.XYs{{X: lo, Y: k * lo}, {X: hi, Y: k * hi}})
	if err != nil {
		return err
	}
	l.Color = color.Gray{Y: 120}
	l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(l)
	p.Legend.Add(label, l)
	return nil
}

// quantile is the nearest-rank q-quantile of sorted v (0 < q ≤ 1).
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	k := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(k, len(sorted)-1))]
}

// fmtS formats seconds with an SI prefix.
func fmtS(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	a := math.Abs(v)
	switch {
	case a == 0:
		return "0 s"
	case a < 1e-6:
		return fmt.Sprintf("%.4g ns", v*1e9)
	case a < 1e-3:
		return fmt.Sprintf("%.4g µs", v*1e6)
	case a < 1:
		return fmt.Sprintf("%.4g ms", v*1e3)
	}
	return fmt.Sprintf("%.4g s", v)
}

func noData(v *sectionView, what string) {
	v.Notes = append(v.Notes, "The section is present but holds no "+what+".")
}

func offsetsView(v *sectionView, o *Offsets) error {
	p := newPlot("Offset from true time", "time since start (s)", "offset (s)", false, false)
	tb := table{Caption: "Offsets", Head: []string{"contestant", "points", "median |offset|", "max |offset|"}}
	drawn := 0
	for i, s := range o.Series {
		xys := make(plotter.XYs, len(s.TS))
		abs := make([]float64, len(s.TS))
		for j := range s.TS {
			xys[j] = plotter.XY{X: s.TS[j], Y: s.OffsetS[j]}
			abs[j] = math.Abs(s.OffsetS[j])
		}
		slices.Sort(abs)
		tb.Rows = append(tb.Rows, []string{s.Name, fmt.Sprint(len(abs)), fmtS(quantile(abs, 0.5)), fmtS(quantile(abs, 1))})
		if len(xys) == 0 {
			continue
		}
		if err := addLine(p, i, s.Name, decimate(xys), false); err != nil {
			return err
		}
		drawn++
	}
	if drawn == 0 {
		noData(v, "offsets")
	} else {
		svg, err := svgOf(p)
		if err != nil {
			return err
		}
		v.Plots = append(v.Plots, svg)
		v.Notes = append(v.Notes, fmt.Sprintf("Series longer than %d points are drawn from the minimum and maximum of each of %d buckets.", maxDrawn, maxDrawn/2))
	}
	v.Tables = append(v.Tables, tb)
	return nil
}

func errorsView(v *sectionView, e *Errors) error {
	lo, hi, n := math.Inf(1), math.Inf(-1), 0
	for _, c := range e.Contestants {
		for _, x := range c.ErrorS {
			lo, hi = min(lo, x), max(hi, x)
			n++
		}
	}
	tb := table{Caption: "|error| quantiles (nearest rank)", Head: []string{"contestant", "samples", "p50", "p90", "p99", "max"}}
	if n == 0 {
		noData(v, "error samples")
		for _, c := range e.Contestants {
			tb.Rows = append(tb.Rows, []string{c.Name, "0", "–", "–", "–", "–"})
		}
		v.Tables = append(v.Tables, tb)
		return nil
	}
	if hi == lo {
		lo, hi = lo-0.5*max(math.Abs(lo), 1e-9), hi+0.5*max(math.Abs(hi), 1e-9)
	}
	const bins = 40
	width := (hi - lo) / bins
	hist := newPlot("Error histogram", "error (s)", "fraction of samples per bin", false, false)
	cdf := newPlot("CDF of |error|", "|error| (s)", "fraction of samples ≤", false, false)
	for i, c := range e.Contestants {
		abs := make([]float64, len(c.ErrorS))
		counts := make([]float64, bins)
		for j, x := range c.ErrorS {
			abs[j] = math.Abs(x)
			counts[min(bins-1, int((x-lo)/width))]++
		}
		slices.Sort(abs)
		tb.Rows = append(tb.Rows, []string{c.Name, fmt.Sprint(len(abs)), fmtS(quantile(abs, 0.5)), fmtS(quantile(abs, 0.9)), fmtS(quantile(abs, 0.99)), fmtS(quantile(abs, 1))})
		if len(abs) == 0 {
			continue
		}
		// A step outline of the histogram, normalized per contestant.
		var steps plotter.XYs
		for b, k := range counts {
			f := k / float64(len(abs))
			steps = append(steps, plotter.XY{X: lo + float64(b)*width, Y: f}, plotter.XY{X: lo + float64(b+1)*width, Y: f})
		}
		if err := addLine(hist, i, c.Name, steps, false); err != nil {
			return err
		}
		cxy := make(plotter.XYs, len(abs))
		for j, a := range abs {
			cxy[j] = plotter.XY{X: a, Y: float64(j+1) / float64(len(abs))}
		}
		if err := addLine(cdf, i, c.Name, decimate(cxy), false); err != nil {
			return err
		}
	}
	for _, p := range []*plot.Plot{hist, cdf} {
		svg, err := svgOf(p)
		if err != nil {
			return err
		}
		v.Plots = append(v.Plots, svg)
	}
	v.Tables = append(v.Tables, tb)
	return nil
}

func stabilityView(v *sectionView, s *Stability) error {
	kinds := []struct {
		title, y string
		get      func(stability.Curves) []stability.Point
	}{
		{"Overlapping Allan deviation", "ADEV", func(c stability.Curves) []stability.Point { return c.ADEV }},
		{"Time deviation", "TDEV (s)", func(c stability.Curves) []stability.Point { return c.TDEV }},
		{"Maximum time interval error", "MTIE (s)", func(c stability.Curves) []stability.Point { return c.MTIE }},
	}
	skipped := 0
	for _, k := range kinds {
		p := newPlot(k.title, "τ (s)", k.y, true, true)
		drawn := 0
		for i, c := range s.Contestants {
			var xys plotter.XYs
			for _, pt := range k.get(c.Curves) {
				if pt.Value > 0 { // a log axis cannot show 0
					xys = append(xys, plotter.XY{X: pt.TauS, Y: pt.Value})
				} else {
					skipped++
				}
			}
			if len(xys) == 0 {
				continue
			}
			if err := addLine(p, i, c.Name, xys, true); err != nil {
				return err
			}
			drawn++
		}
		if drawn == 0 {
			v.Notes = append(v.Notes, k.title+": no points to draw.")
			continue
		}
		svg, err := svgOf(p)
		if err != nil {
			return err
		}
		v.Plots = append(v.Plots, svg)
	}
	if skipped > 0 {
		v.Notes = append(v.Notes, fmt.Sprintf("%d points of value 0 are not drawn on the log axes (they are in the tables).", skipped))
	}
	v.Notes = append(v.Notes, "Overlapping ADEV, MDEV and TDEV and exact MTIE (NIST SP 1065 definitions); n is the number of terms (MTIE: windows) behind each value.")
	for _, c := range s.Contestants {
		tb := table{
			Caption: fmt.Sprintf("%s (τ0 = %s, %d samples, %d gaps)", c.Name, fmtS(c.Curves.Tau0S), c.Curves.Samples, c.Curves.Gaps),
			Head:    []string{"τ", "ADEV", "n", "MDEV", "TDEV", "n", "MTIE", "windows"},
		}
		byTau := map[float64][]string{}
		var taus []float64
		cell := func(tau float64, col int, val string) {
			row, ok := byTau[tau]
			if !ok {
				row = make([]string, len(tb.Head))
				for j := range row {
					row[j] = "–"
				}
				row[0] = fmtS(tau)
				taus = append(taus, tau)
			}
			row[col] = val
			byTau[tau] = row
		}
		for _, pt := range c.Curves.ADEV {
			cell(pt.TauS, 1, fmt.Sprintf("%.4g", pt.Value))
			cell(pt.TauS, 2, fmt.Sprint(pt.N))
		}
		for _, pt := range c.Curves.MDEV {
			cell(pt.TauS, 3, fmt.Sprintf("%.4g", pt.Value))
		}
		for _, pt := range c.Curves.TDEV {
			cell(pt.TauS, 4, fmtS(pt.Value))
			cell(pt.TauS, 5, fmt.Sprint(pt.N))
		}
		for _, pt := range c.Curves.MTIE {
			cell(pt.TauS, 6, fmtS(pt.Value))
			cell(pt.TauS, 7, fmt.Sprint(pt.N))
		}
		slices.Sort(taus)
		for _, t := range taus {
			tb.Rows = append(tb.Rows, byTau[t])
		}
		v.Tables = append(v.Tables, tb)
	}
	return nil
}

func epsView(v *sectionView, e *EpsVsError) error {
	p := newPlot("|true error| against the claimed ε", "ε (s)", "|true error| (s)", false, false)
	tb := table{Caption: "Containment of the reads", Head: []string{"contestant", "reads", "|error| ≤ ε", "median ε", "median |error|"}}
	hi, n := 0.0, 0
	for i, c := range e.Contestants {
		xys := make(plotter.XYs, len(c.EpsS))
		contained := 0
		abs := make([]float64, len(c.EpsS))
		for j := range c.EpsS {
			a := math.Abs(c.ErrS[j])
			abs[j] = a
			xys[j] = plotter.XY{X: c.EpsS[j], Y: a}
			if a <= c.EpsS[j] {
				contained++
			}
			hi = max(hi, c.EpsS[j], a)
		}
		eps := slices.Clone(c.EpsS)
		slices.Sort(eps)
		slices.Sort(abs)
		frac := "–"
		if len(abs) > 0 {
			frac = fmt.Sprintf("%d (%.4g %%)", contained, 100*float64(contained)/float64(len(abs)))
		}
		tb.Rows = append(tb.Rows, []string{c.Name, fmt.Sprint(len(abs)), frac, fmtS(quantile(eps, 0.5)), fmtS(quantile(abs, 0.5))})
		if len(xys) == 0 {
			continue
		}
		n++
		if err := addScatter(p, i, c.Name, decimate(xys)); err != nil {
			return err
		}
	}
	v.Tables = append(v.Tables, tb)
	if n == 0 {
		noData(v, "reads")
		return nil
	}
	if hi == 0 {
		hi = 1e-9
	}
	if err := addReference(p, "|error| = ε (above: the truth was outside)", 1, 0, hi); err != nil {
		return err
	}
	svg, err := svgOf(p)
	if err != nil {
		return err
	}
	v.Plots = append(v.Plots, svg)
	return nil
}

func coverageView(v *sectionView, c *Coverage) {
	tb := table{Caption: "Reads whose interval contained the truth", Head: []string{"contestant", "scenario", "reads", "violations", "coverage"}}
	for _, r := range c.Rows {
		cov := "–"
		if r.Reads > 0 {
			cov = fmt.Sprintf("%.6g %%", 100*float64(r.Reads-r.Violations)/float64(r.Reads))
		}
		tb.Rows = append(tb.Rows, []string{r.Name, r.Scenario, fmt.Sprint(r.Reads), fmt.Sprint(r.Violations), cov})
	}
	if len(c.Rows) == 0 {
		noData(v, "rows")
	}
	v.Tables = append(v.Tables, tb)
}

func latencyView(v *sectionView, c *CommitLatency) error {
	p := newPlot("Commit latency against ε", "ε at commit (s)", "commit latency (s)", false, false)
	tb := table{Caption: "Commit latency", Head: []string{"backend", "commits", "median ε", "median latency", "p99 latency"}}
	hi, n := 0.0, 0
	for i, b := range c.Backends {
		xys := make(plotter.XYs, len(b.EpsS))
		for j := range b.EpsS {
			xys[j] = plotter.XY{X: b.EpsS[j], Y: b.LatencyS[j]}
			hi = max(hi, b.EpsS[j])
		}
		eps, lat := slices.Clone(b.EpsS), slices.Clone(b.LatencyS)
		slices.Sort(eps)
		slices.Sort(lat)
		tb.Rows = append(tb.Rows, []string{b.Name, fmt.Sprint(len(lat)), fmtS(quantile(eps, 0.5)), fmtS(quantile(lat, 0.5)), fmtS(quantile(lat, 0.99))})
		if len(xys) == 0 {
			continue
		}
		n++
		if err := addScatter(p, i, b.Name, decimate(xys)); err != nil {
			return err
		}
	}
	v.Tables = append(v.Tables, tb)
	if n == 0 {
		noData(v, "commits")
		return nil
	}
	if hi == 0 {
		hi = 1e-9
	}
	if err := addReference(p, "2ε (the commit wait)", 2, 0, hi); err != nil {
		return err
	}
	svg, err := svgOf(p)
	if err != nil {
		return err
	}
	v.Plots = append(v.Plots, svg)
	return nil
}

func efficiencyView(v *sectionView, s *ServerEfficiency) error {
	tb := table{Caption: "Replies per server-CPU-second", Head: []string{"server", "replies / CPU-s", "socket limit / CPU-s", "ratio"}}
	paired := slices.ContainsFunc(s.Rows, func(r EfficiencyRow) bool { return r.PairedRatio > 0 })
	if paired {
		tb.Head = append(tb.Head, "ratio in the same round (median)")
	}
	var ratios plotter.Values
	var names []string
	for _, r := range s.Rows {
		ratio := r.RepliesPerCPUSecond / r.SocketLimitPerCPUSecond
		ratios = append(ratios, ratio)
		names = append(names, r.Name)
		row := []string{r.Name, fmt.Sprintf("%.4g", r.RepliesPerCPUSecond), fmt.Sprintf("%.4g", r.SocketLimitPerCPUSecond), fmt.Sprintf("%.3f", ratio)}
		if paired {
			cell := "—"
			if r.PairedRatio > 0 {
				cell = fmt.Sprintf("%.3f", r.PairedRatio)
			}
			row = append(row, cell)
		}
		tb.Rows = append(tb.Rows, row)
	}
	v.Tables = append(v.Tables, tb)
	if len(ratios) == 0 {
		noData(v, "servers")
		return nil
	}
	p := newPlot("Efficiency as a fraction of the socket limit", "", "replies per CPU-second / socket limit", false, false)
	bars, err := plotter.NewBarChart(ratios, vg.Points(30))
	if err != nil {
		return err
	}
	bars.Color = plotutil.Color(0)
	p.Add(bars)
	p.NominalX(names...)
	p.Y.Min = 0
	p.Y.Max = max(1.05, slices.Max(ratios)*1.05)
	limit, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: 1}, {X: float64(len(ratios)) - 0.5, Y: 1}})
	if err != nil {
		return err
	}
	limit.Color = color.RGBA{R: 200, A: 255}
	p.Add(limit)
	p.Legend.Add("socket limit", limit)
	svg, err := svgOf(p)
	if err != nil {
		return err
	}
	v.Plots = append(v.Plots, svg)
	return nil
}

func tableView(t Table) sectionView {
	v := sectionView{ID: t.ID, Heading: t.Heading, Missing: t.NotMeasured}
	if t.Note != "" {
		v.Notes = append(v.Notes, t.Note)
	}
	if v.Missing == "" && len(t.Rows) == 0 {
		noData(&v, "rows")
	}
	v.Tables = append(v.Tables, table{Head: t.Columns, Rows: t.Rows})
	return v
}
