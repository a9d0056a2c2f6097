package report

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The Markdown rendering of a full result carries every section heading,
// links one standalone SVG file per plot of the HTML page (each one a
// well-formed XML document with the SVG namespace), and says why a missing
// section is missing.
func TestWriteMarkdown(t *testing.T) {
	r := synthetic(t)
	dir := t.TempDir()
	md, plots := filepath.Join(dir, "RESULTS.md"), filepath.Join(dir, "results")
	if err := WriteMarkdown(md, plots, r); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, s := range Sections {
		if !strings.Contains(text, "## "+s.Heading+"\n") {
			t.Errorf("no section %q", s.Heading)
		}
	}
	page := render(t, r)
	files, _ := filepath.Glob(filepath.Join(plots, "*.svg"))
	if want := strings.Count(page, "<svg"); len(files) != want || want == 0 {
		t.Fatalf("%d plot files, the page has %d plots", len(files), want)
	}
	for _, f := range files {
		if !strings.Contains(text, "](results/"+filepath.Base(f)+")") {
			t.Errorf("%s not linked", filepath.Base(f))
		}
		svg, _ := os.ReadFile(f)
		var root struct {
			XMLName xml.Name
		}
		if err := xml.Unmarshal(svg, &root); err != nil || root.XMLName.Space != "http://www.w3.org/2000/svg" || root.XMLName.Local != "svg" {
			t.Errorf("%s: not a standalone SVG document (%v, %v)", filepath.Base(f), root.XMLName, err)
		}
	}
	if !strings.Contains(text, "| ") || !strings.Contains(text, "---|") {
		t.Error("no table")
	}

	partial := &Results{Coverage: &Coverage{Rows: []CoverageRow{{Name: "a|b", Scenario: "clean", Reads: 10}}},
		NotMeasured: map[string]string{SectionStability: "no clock here"}}
	if err := WriteMarkdown(md, plots, partial); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(md)
	for _, want := range []string{"_Not measured in this run: no clock here_", `a\|b`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("lacks %q:\n%s", want, b)
		}
	}
}
