package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meridiantime/meridian/bench/report"
)

// producers names, for each built-in report section, the subcommand that
// fills it, for the reason shown when it is absent.
var producers = map[string]string{
	report.SectionOffsets:          "accuracy",
	report.SectionErrors:           "accuracy",
	report.SectionEpsVsError:       "accuracy",
	report.SectionStability:        "stability",
	report.SectionCoverage:         "sim",
	report.SectionCommitLatency:    "commit-wait",
	report.SectionServerEfficiency: "ptp-server",
}

// notYet qualifies the producers that cannot fill their section yet.
var notYet = map[string]string{}

func newReportCmd(g *globalFlags) *cobra.Command {
	var markdown, run string
	cmd := &cobra.Command{
		Use:   "report --out DIR",
		Short: "render DIR/results.json as DIR/report.html (one self-contained page)",
		Long: `report renders DIR/results.json, merged there by the other subcommands' --out DIR,
as DIR/report.html: one page, no script, no external reference. A section nobody
measured says so, with the reason recorded by whoever skipped it or, when none was,
which subcommand would have filled it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.out == "" {
				return fmt.Errorf("report: --out DIR is required (the directory holding results.json)")
			}
			res, err := report.Load(g.out)
			if err != nil {
				return failed("report: %v", err)
			}
			for id, sub := range producers {
				if !res.Present(id) && res.NotMeasured[id] == "" {
					if res.NotMeasured == nil {
						res.NotMeasured = map[string]string{}
					}
					res.NotMeasured[id] = fmt.Sprintf("meridian-bench %s --out %s was not run into this directory", sub, g.out) + notYet[sub]
				}
			}
			if run != "" {
				res.Run = run
			}
			path := filepath.Join(g.out, "report.html")
			if err := report.WriteFile(path, res); err != nil {
				return failed("report: %v", err)
			}
			if markdown != "" {
				plots := strings.TrimSuffix(markdown, filepath.Ext(markdown)) + "-plots"
				if err := report.WriteMarkdown(markdown, plots, res); err != nil {
					return failed("report: --markdown: %v", err)
				}
			}
			if g.json {
				return json.NewEncoder(g.stdout).Encode(struct {
					Subcommand string `json:"subcommand"`
					Path       string `json:"path"`
				}{"report", path})
			}
			_, err = fmt.Fprintln(g.stdout, path)
			return err
		},
	}
	cmd.Flags().StringVar(&run, "run", "", "describe the run (commit, host, date, the command that reproduces it) at the top of the report")
	cmd.Flags().StringVar(&markdown, "markdown", "", "also write the results as Markdown to this file, its plots as SVG files in <file without extension>-plots/ (how bench/RESULTS.md is made)")
	return cmd
}
