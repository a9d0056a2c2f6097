package report

import (
	"strings"
	"testing"
)

func TestTablesRenderAsSections(t *testing.T) {
	r := &Results{Title: "tables"}
	r.SetTable(Table{ID: "truetime-reads", Heading: "TrueTime reads", Columns: []string{"read", "ns"},
		Rows: [][]string{{"shm Now", "61.2"}, {"time.Now", "<b>42</b>"}}, Note: "best of interleaved rounds"})
	r.SetTable(Table{ID: "sim-campaign", Heading: "Random worlds", Columns: []string{"worlds"}, NotMeasured: "--worlds 0"})
	r.SetTable(Table{ID: "truetime-reads", Heading: "TrueTime reads", Columns: []string{"read", "ns"},
		Rows: [][]string{{"shm Now", "60.0"}}})
	if len(r.Tables) != 2 || r.Table("truetime-reads").Rows[0][1] != "60.0" {
		t.Fatalf("SetTable did not replace by id: %+v", r.Tables)
	}
	page := render(t, r)
	for _, want := range []string{
		`<section id="truetime-reads">`, "<h2>TrueTime reads</h2>", "<td>60.0</td>",
		`<section id="sim-campaign">`, "Not measured in this run: --worlds 0",
		`<a href="#sim-campaign">Random worlds</a> (not measured)`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// The built-in sections are still all there, in front.
	if i, j := strings.Index(page, `<section id="server-efficiency">`), strings.Index(page, `<section id="truetime-reads">`); i < 0 || j < i {
		t.Errorf("tables not after the built-in sections (%d, %d)", i, j)
	}
	r.Table("truetime-reads").Rows = [][]string{{"<script>x</script>", "1"}}
	page = render(t, r)
	if strings.Contains(page, "<script") {
		t.Error("a cell reached the page unescaped")
	}
	if why := selfContained(page); len(why) > 0 {
		t.Errorf("the page can fetch: %q", why)
	}
}

func TestTableErrorsNameTheField(t *testing.T) {
	for _, c := range []struct{ json, want string }{
		{`{"title":"x","tables":[{"id":"a","heading":"h","columns":["x","y"],"rows":[["1"]]}]}`, "tables[0].rows[0]: 1 cells for 2 columns"},
		{`{"title":"x","tables":[{"id":"A b","heading":"h","columns":["x"],"rows":[]}]}`, `tables[0].id = "A b"`},
		{`{"title":"x","tables":[{"id":"coverage","heading":"h","columns":["x"],"rows":[]}]}`, `tables[0].id = "coverage"`},
		{`{"title":"x","tables":[{"id":"a","heading":"h","columns":["x"]},{"id":"a","heading":"h","columns":["x"]}]}`, `tables[1].id = "a": duplicate`},
		{`{"title":"x","tables":[{"id":"a","heading":"","columns":["x"]}]}`, "tables[0].heading: empty"},
		{`{"title":"x","tables":[{"id":"a","heading":"h","columns":[]}]}`, "tables[0].columns: empty"},
		{`{"title":"x","tables":[{"id":"a","heading":"h","columns":["x"],"rows":[["1"]],"not_measured":"why"}]}`, "tables[0]: not_measured with 1 rows"},
	} {
		if _, err := Decode(strings.NewReader(c.json)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.json, err, c.want)
		}
	}
	// Control: the same shapes, corrected, decode.
	if _, err := Decode(strings.NewReader(`{"title":"x","tables":[{"id":"a-1","heading":"h","columns":["x","y"],"rows":[["1","2"]]}]}`)); err != nil {
		t.Fatal(err)
	}
}
