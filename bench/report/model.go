package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/meridiantime/meridian/bench/stability"
)

// ResultsFile is the name of the results file in a results directory.
const ResultsFile = "results.json"

// Results is everything one meridian-bench run measured. Every section is
// optional: a nil section is rendered as "not measured in this run" with
// the reason from NotMeasured.
type Results struct {
	Title string `json:"title"`
	// Run describes the run (commit, host, date, command) as the caller
	// states it; the renderer adds nothing of its own.
	Run string `json:"run,omitempty"`

	Offsets          *Offsets          `json:"offsets,omitempty"`
	Errors           *Errors           `json:"errors,omitempty"`
	Stability        *Stability        `json:"stability,omitempty"`
	EpsVsError       *EpsVsError       `json:"eps_vs_error,omitempty"`
	Coverage         *Coverage         `json:"coverage,omitempty"`
	CommitLatency    *CommitLatency    `json:"commit_latency,omitempty"`
	ServerEfficiency *ServerEfficiency `json:"server_efficiency,omitempty"`

	// Tables are generic table sections (meridian-bench truetime, sim, …),
	// rendered after the sections above, in order, each as a section of
	// its own whose id is the table's ID.
	Tables []Table `json:"tables,omitempty"`

	// NotMeasured gives, by section id (Sections), why a section is absent.
	NotMeasured map[string]string `json:"not_measured,omitempty"`
}

// Offsets: each contestant's clock offset from the truth over the run.
type Offsets struct {
	Series []OffsetSeries `json:"series"`
}

// OffsetSeries is one contestant's offsets: OffsetS[i] at TS[i] seconds
// from the start of the run.
type OffsetSeries struct {
	Name    string    `json:"name"`
	TS      []float64 `json:"t_s"`
	OffsetS []float64 `json:"offset_s"`
}

// Errors: each contestant's time-error samples (seconds), drawn as a
// histogram and a CDF of |error| with quantiles.
type Errors struct {
	Contestants []ErrorSamples `json:"contestants"`
}

// ErrorSamples is one contestant's time errors in seconds.
type ErrorSamples struct {
	Name   string    `json:"name"`
	ErrorS []float64 `json:"error_s"`
}

// Stability: each contestant's ADEV/MDEV/TDEV/MTIE curves.
type Stability struct {
	Contestants []StabilityCurves `json:"contestants"`
}

// StabilityCurves is one contestant's curves (stability.Analyze).
type StabilityCurves struct {
	Name   string           `json:"name"`
	Curves stability.Curves `json:"curves"`
}

// EpsVsError: the error bound ε each read claimed against its true error.
type EpsVsError struct {
	Contestants []EpsErr `json:"contestants"`
}

// EpsErr pairs, per read, the claimed half-width EpsS[i] with the true
// error ErrS[i] (seconds; a read contains the truth when |ErrS| ≤ EpsS).
type EpsErr struct {
	Name string    `json:"name"`
	EpsS []float64 `json:"eps_s"`
	ErrS []float64 `json:"err_s"`
}

// Coverage: how many reads contained the truth.
type Coverage struct {
	Rows []CoverageRow `json:"rows"`
}

// CoverageRow is one contestant in one scenario.
type CoverageRow struct {
	Name       string `json:"name"`
	Scenario   string `json:"scenario"`
	Reads      int64  `json:"reads"`
	Violations int64  `json:"violations"`
}

// CommitLatency: commit latency of transactions against the ε in force.
type CommitLatency struct {
	Backends []LatencySeries `json:"backends"`
}

// LatencySeries pairs, per commit, ε (EpsS[i]) with the commit latency
// (LatencyS[i]), seconds.
type LatencySeries struct {
	Name     string    `json:"name"`
	EpsS     []float64 `json:"eps_s"`
	LatencyS []float64 `json:"latency_s"`
}

// ServerEfficiency: replies per server-CPU-second against the socket limit
// (what a server that only moves datagrams manages on the same host).
type ServerEfficiency struct {
	Rows []EfficiencyRow `json:"rows"`
}

// EfficiencyRow is one server.
type EfficiencyRow struct {
	Name                    string  `json:"name"`
	RepliesPerCPUSecond     float64 `json:"replies_per_cpu_second"`
	SocketLimitPerCPUSecond float64 `json:"socket_limit_per_cpu_second"`
	// PairedRatio, when measured, is the median over rounds of the
	// server's rate over the limit's in the same round: a paired figure,
	// steadier than the ratio of the two medians on a machine whose speed
	// drifts.
	PairedRatio float64 `json:"paired_ratio,omitempty"`
}

// Table is a generic table section: cells are text, formatted by whoever
// measured them (units in the column names or the cells). A table that
// could not be measured has no rows and says why in NotMeasured; the page
// then shows "Not measured in this run:" with that reason.
type Table struct {
	ID          string     `json:"id"` // the section id: [a-z0-9-], not one of Sections'
	Heading     string     `json:"heading"`
	Columns     []string   `json:"columns"`
	Rows        [][]string `json:"rows"`
	Note        string     `json:"note,omitempty"` // method, shown above the table
	NotMeasured string     `json:"not_measured,omitempty"`
}

// SetTable replaces the table with t's ID, or appends t: a subcommand
// run again into the same directory replaces its own tables.
func (r *Results) SetTable(t Table) {
	for i := range r.Tables {
		if r.Tables[i].ID == t.ID {
			r.Tables[i] = t
			return
		}
	}
	r.Tables = append(r.Tables, t)
}

// Table returns the table with this ID, or nil.
func (r *Results) Table(id string) *Table {
	for i := range r.Tables {
		if r.Tables[i].ID == id {
			return &r.Tables[i]
		}
	}
	return nil
}

func validTableID(id string) bool {
	if id == "" || id[0] == '-' {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	for _, s := range Sections {
		if s.ID == id {
			return false
		}
	}
	return true
}

// Section ids, in the order the report shows them.
const (
	SectionOffsets          = "offsets"
	SectionErrors           = "errors"
	SectionStability        = "stability"
	SectionEpsVsError       = "eps-vs-error"
	SectionCoverage         = "coverage"
	SectionCommitLatency    = "commit-latency"
	SectionServerEfficiency = "server-efficiency"
)

// Sections lists every section id with its heading, in report order.
var Sections = []struct{ ID, Heading string }{
	{SectionOffsets, "Offset over time"},
	{SectionErrors, "Error distribution"},
	{SectionStability, "Stability: ADEV, TDEV, MTIE"},
	{SectionEpsVsError, "ε against true error"},
	{SectionCoverage, "Coverage"},
	{SectionCommitLatency, "Commit latency against ε"},
	{SectionServerEfficiency, "Server efficiency against the socket limit"},
}

// Present reports whether the built-in section id holds data.
func (r *Results) Present(id string) bool { return r.present(id) }

func (r *Results) present(id string) bool {
	switch id {
	case SectionOffsets:
		return r.Offsets != nil
	case SectionErrors:
		return r.Errors != nil
	case SectionStability:
		return r.Stability != nil
	case SectionEpsVsError:
		return r.EpsVsError != nil
	case SectionCoverage:
		return r.Coverage != nil
	case SectionCommitLatency:
		return r.CommitLatency != nil
	case SectionServerEfficiency:
		return r.ServerEfficiency != nil
	}
	return false
}

// Validate checks every section; the error names the field that is wrong.
func (r *Results) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	finite := func(path string, v []float64, nonNeg bool) {
		for i, x := range v {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				bad("%s[%d] = %v: must be finite", path, i, x)
				return
			}
			if nonNeg && x < 0 {
				bad("%s[%d] = %v: must be ≥ 0", path, i, x)
				return
			}
		}
	}
	name := func(path, n string) {
		if n == "" {
			bad("%s.name: empty", path)
		}
	}
	if r.Offsets != nil {
		for i, s := range r.Offsets.Series {
			p := fmt.Sprintf("offsets.series[%d]", i)
			name(p, s.Name)
			if len(s.TS) != len(s.OffsetS) {
				bad("%s: %d times for %d offsets", p, len(s.TS), len(s.OffsetS))
			}
			finite(p+".t_s", s.TS, false)
			finite(p+".offset_s", s.OffsetS, false)
		}
	}
	if r.Errors != nil {
		for i, c := range r.Errors.Contestants {
			p := fmt.Sprintf("errors.contestants[%d]", i)
			name(p, c.Name)
			finite(p+".error_s", c.ErrorS, false)
		}
	}
	if r.Stability != nil {
		for i, c := range r.Stability.Contestants {
			p := fmt.Sprintf("stability.contestants[%d]", i)
			name(p, c.Name)
			for kind, ps := range map[string][]stability.Point{"adev": c.Curves.ADEV, "mdev": c.Curves.MDEV, "tdev": c.Curves.TDEV, "mtie": c.Curves.MTIE} {
				for j, pt := range ps {
					if !(pt.TauS > 0) || math.IsInf(pt.TauS, 0) || !(pt.Value >= 0) || math.IsInf(pt.Value, 0) || pt.N < 1 {
						bad("%s.curves.%s[%d] = %+v: needs tau_s > 0, a finite value ≥ 0 and n ≥ 1", p, kind, j, pt)
					}
				}
			}
		}
	}
	if r.EpsVsError != nil {
		for i, c := range r.EpsVsError.Contestants {
			p := fmt.Sprintf("eps_vs_error.contestants[%d]", i)
			name(p, c.Name)
			if len(c.EpsS) != len(c.ErrS) {
				bad("%s: %d ε values for %d errors", p, len(c.EpsS), len(c.ErrS))
			}
			finite(p+".eps_s", c.EpsS, true)
			finite(p+".err_s", c.ErrS, false)
		}
	}
	if r.Coverage != nil {
		for i, row := range r.Coverage.Rows {
			p := fmt.Sprintf("coverage.rows[%d]", i)
			name(p, row.Name)
			if row.Reads < 0 || row.Violations < 0 || row.Violations > row.Reads {
				bad("%s: %d violations in %d reads: need 0 ≤ violations ≤ reads", p, row.Violations, row.Reads)
			}
		}
	}
	if r.CommitLatency != nil {
		for i, b := range r.CommitLatency.Backends {
			p := fmt.Sprintf("commit_latency.backends[%d]", i)
			name(p, b.Name)
			if len(b.EpsS) != len(b.LatencyS) {
				bad("%s: %d ε values for %d latencies", p, len(b.EpsS), len(b.LatencyS))
			}
			finite(p+".eps_s", b.EpsS, true)
			finite(p+".latency_s", b.LatencyS, true)
		}
	}
	if r.ServerEfficiency != nil {
		for i, row := range r.ServerEfficiency.Rows {
			p := fmt.Sprintf("server_efficiency.rows[%d]", i)
			name(p, row.Name)
			if !(row.SocketLimitPerCPUSecond > 0) || math.IsInf(row.SocketLimitPerCPUSecond, 0) {
				bad("%s.socket_limit_per_cpu_second = %v: must be finite and > 0", p, row.SocketLimitPerCPUSecond)
			}
			if !(row.RepliesPerCPUSecond >= 0) || math.IsInf(row.RepliesPerCPUSecond, 0) {
				bad("%s.replies_per_cpu_second = %v: must be finite and ≥ 0", p, row.RepliesPerCPUSecond)
			}
			if !(row.PairedRatio >= 0) || math.IsInf(row.PairedRatio, 0) {
				bad("%s.paired_ratio = %v: must be finite and ≥ 0 (0: not measured)", p, row.PairedRatio)
			}
		}
	}
	seen := map[string]bool{}
	for i, t := range r.Tables {
		p := fmt.Sprintf("tables[%d]", i)
		switch {
		case !validTableID(t.ID):
			bad("%s.id = %q: want lower-case letters, digits and '-', not a built-in section's id", p, t.ID)
		case seen[t.ID]:
			bad("%s.id = %q: duplicate", p, t.ID)
		}
		seen[t.ID] = true
		if t.Heading == "" {
			bad("%s.heading: empty", p)
		}
		if len(t.Columns) == 0 {
			bad("%s.columns: empty", p)
		}
		for j, row := range t.Rows {
			if len(row) != len(t.Columns) {
				bad("%s.rows[%d]: %d cells for %d columns", p, j, len(row), len(t.Columns))
			}
		}
		if t.NotMeasured != "" && len(t.Rows) > 0 {
			bad("%s: not_measured with %d rows", p, len(t.Rows))
		}
	}
	for id := range r.NotMeasured {
		known := false
		for _, s := range Sections {
			known = known || s.ID == id
		}
		switch {
		case !known:
			bad("not_measured[%q]: no such section", id)
		case r.present(id):
			bad("not_measured[%q]: the section is present", id)
		}
	}
	return errors.Join(errs...)
}

// Decode reads Results from JSON: unknown fields are errors, and the
// result is validated.
func Decode(rd io.Reader) (*Results, error) {
	dec := json.NewDecoder(rd)
	dec.DisallowUnknownFields()
	var r Results
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("report: decode: %w", err)
	}
	if dec.More() {
		return nil, errors.New("report: decode: data after the results object")
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	return &r, nil
}

// Encode writes r as indented JSON after validating it.
func Encode(w io.Writer, r *Results) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Load reads DIR/results.json.
func Load(dir string) (*Results, error) {
	path := filepath.Join(dir, ResultsFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	r, err := Decode(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// Save writes DIR/results.json (creating DIR).
func Save(dir string, r *Results) error {
	var b bytes.Buffer
	if err := Encode(&b, r); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, ResultsFile), b.Bytes(), 0o644)
}
