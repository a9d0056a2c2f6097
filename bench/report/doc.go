// Package report holds meridian-bench's results (Results, stored as
// DIR/results.json) and renders them as one self-contained HTML page.
//
// Sections, each optional: offsets over time per contestant, error
// histograms and CDFs, stability (ADEV, TDEV, MTIE on log-log axes, from
// package bench/stability), ε against true error, coverage, commit latency
// against ε, and server efficiency against the socket limit; then any
// generic tables (Results.Tables: meridian-bench truetime, commit-wait and
// sim), each a section of its own with the table's id. A section that
// is nil is shown as "Not measured in this run:" with the reason given in
// Results.NotMeasured ("no reason recorded" when none is): the renderer
// never invents data. A table without rows says why in its own
// NotMeasured.
//
// The page has inline CSS, every plot an inline SVG drawn with
// gonum.org/v1/plot, no script and no external reference: no URL, no
// src attribute, links only to its own sections. Long series are drawn from
// the minimum and maximum of each bucket (the page says so); tables carry
// the numbers.
//
// Results are validated on Decode, Encode and Render: errors name the field
// (e.g. "offsets.series[1]: 10 times for 9 offsets").
package report
