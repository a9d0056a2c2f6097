package report

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// WriteMarkdown renders r as Markdown at mdPath — the same sections, notes
// and tables as the HTML page, in the same order — with each plot written
// as a standalone SVG file under plotDir and linked relative to mdPath.
// It is how bench/RESULTS.md is made from a results directory: every
// number in it comes from results.json, none is typed in.
func WriteMarkdown(mdPath, plotDir string, r *Results) error {
	views, err := buildViews(r)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(plotDir, 0o755); err != nil {
		return err
	}
	// Plots of an earlier rendering would linger unlinked: start clean.
	old, _ := filepath.Glob(filepath.Join(plotDir, "*.svg"))
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			return err
		}
	}
	rel, err := filepath.Rel(filepath.Dir(mdPath), plotDir)
	if err != nil {
		return err
	}
	f, err := os.Create(mdPath)
	if err != nil {
		return err
	}
	if err := writeMarkdown(f, views, r, plotDir, filepath.ToSlash(rel)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func writeMarkdown(w io.Writer, views []sectionView, r *Results, plotDir, relDir string) error {
	title := r.Title
	if title == "" {
		title = "meridian-bench results"
	}
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("# %s\n\n", title)
	if r.Run != "" {
		p("%s\n\n", r.Run)
	}
	for _, v := range views {
		p("## %s\n\n", v.Heading)
		if v.Missing != "" {
			p("_Not measured in this run: %s_\n\n", v.Missing)
			continue
		}
		for _, n := range v.Notes {
			p("%s\n\n", n)
		}
		for i, svg := range v.Plots {
			name := fmt.Sprintf("%s-%d.svg", v.ID, i+1)
			if err := os.WriteFile(filepath.Join(plotDir, name), []byte(standaloneSVG(string(svg))), 0o644); err != nil {
				return err
			}
			p("![%s, plot %d](%s/%s)\n\n", v.Heading, i+1, relDir, name)
		}
		for _, t := range v.Tables {
			if t.Caption != "" {
				p("**%s**\n\n", mdCell(t.Caption))
			}
			if len(t.Head) == 0 {
				continue
			}
			cells := make([]string, len(t.Head))
			for i, h := range t.Head {
				cells[i] = mdCell(h)
			}
			p("| %s |\n|%s\n", strings.Join(cells, " | "), strings.Repeat("---|", len(t.Head)))
			for _, row := range t.Rows {
				cells := make([]string, len(row))
				for i, c := range row {
					cells[i] = mdCell(c)
				}
				p("| %s |\n", strings.Join(cells, " | "))
			}
			p("\n")
		}
	}
	return nil
}

// mdCell escapes what would end a Markdown table cell or line.
func mdCell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

// standaloneSVG puts back the namespace declarations that the inline form
// leaves to HTML's parser, so the file renders on its own.
func standaloneSVG(inline string) string {
	return strings.Replace(inline, "<svg", `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"`, 1)
}
