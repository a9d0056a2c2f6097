package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meridiantime/meridian/clock"
	"github.com/meridiantime/meridian/daemon"
	"github.com/meridiantime/meridian/truetime"
)

// exitError carries an exit code: 1 for "the clock cannot answer", 2 for
// usage and access errors.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

type nowJSON struct {
	EarliestNS int64  `json:"earliest_ns"`
	LatestNS   int64  `json:"latest_ns"`
	Status     string `json:"status"`
}

type statusJSON struct {
	Status           string  `json:"status"`
	EarliestNS       int64   `json:"earliest_ns"`
	LatestNS         int64   `json:"latest_ns"`
	ErrorBoundNS     int64   `json:"error_bound_ns"`
	OffsetNS         float64 `json:"offset_ns"`
	SkewPPB          float64 `json:"skew_ppb"`
	FreqPPB          float64 `json:"freq_ppb"`
	DriftBoundPPB    float64 `json:"drift_bound_ppb"`
	FreqUncPPB       float64 `json:"freq_unc_ppb"`
	Stratum          uint8   `json:"stratum"`
	RefID            string  `json:"ref_id"`
	RootDelayNS      int64   `json:"root_delay_ns"`
	RootDispersionNS int64   `json:"root_dispersion_ns"`
	LastUpdateAgeNS  int64   `json:"last_update_age_ns"`
	LastSampleAgeNS  int64   `json:"last_sample_age_ns"`
	MaxErrorNS       int64   `json:"max_error_ns"`
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	var shmPath string
	var asJSON bool
	root := &cobra.Command{
		Use:   "meridianctl",
		Short: "Read TrueTime and status from a running meridiand",
		Long: `meridianctl reads the TrueTime interval that meridiand publishes in shared memory.
The interval [earliest, latest] contains true time whenever the status is
synchronized or holdover; when meridiand cannot promise that, "now" fails
with "clock is unsynchronized" (exit status 1) instead of printing a number.`,
		Example: `  # start a daemon in one shell (unprivileged, virtual clock):
  make run
  # then, in another:
  meridianctl now                 # earliest, latest, ε and status
  meridianctl now --json          # {"earliest_ns":…,"latest_ns":…,"status":"synchronized"}
  meridianctl status              # estimate: offset, frequency, error bound, update age
  meridianctl status --json
  meridianctl --shm /tmp/x.shm now   # a daemon started with --shm /tmp/x.shm`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&shmPath, "shm", "", "shared memory segment (default: the daemon's default, "+daemon.DefaultShmPath()+")")
	root.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")

	open := func() (*truetime.ShmReader, error) {
		p := shmPath
		if p == "" {
			p = daemon.DefaultShmPath()
		}
		r, err := truetime.OpenShm(p)
		switch {
		case err == nil:
			return r, nil
		case errors.Is(err, os.ErrNotExist):
			return nil, exitError{2, fmt.Sprintf("cannot open %s: no such file: is meridiand running? (see --shm)", p)}
		case errors.Is(err, os.ErrPermission):
			return nil, exitError{2, fmt.Sprintf("cannot open %s: permission denied", p)}
		default:
			return nil, exitError{2, err.Error()}
		}
	}

	now := &cobra.Command{
		Use:   "now",
		Short: "Print the TrueTime interval [earliest, latest]",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := open()
			if err != nil {
				return err
			}
			defer r.Close()
			iv, err := r.Now()
			if errors.Is(err, truetime.ErrUnsynchronized) {
				if asJSON {
					_ = json.NewEncoder(stdout).Encode(nowJSON{Status: truetime.Unsynchronized.String()})
				}
				return exitError{1, "clock is unsynchronized: no interval can be promised"}
			}
			if err != nil {
				return exitError{2, err.Error()}
			}
			if asJSON {
				return json.NewEncoder(stdout).Encode(nowJSON{iv.EarliestNS, iv.LatestNS, iv.Status.String()})
			}
			tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "earliest\t%s\t%d\n", fmtTime(iv.EarliestNS), iv.EarliestNS)
			fmt.Fprintf(tw, "latest\t%s\t%d\n", fmtTime(iv.LatestNS), iv.LatestNS)
			fmt.Fprintf(tw, "ε\t%v\t\n", time.Duration(iv.EpsNS()))
			fmt.Fprintf(tw, "status\t%s\t\n", iv.Status)
			return tw.Flush()
		},
	}

	status := &cobra.Command{
		Use:   "status",
		Short: "Print the daemon's estimate: offset, frequency, error bound, update age",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := open()
			if err != nil {
				return err
			}
			defer r.Close()
			m, e, err := r.Snapshot()
			if err != nil {
				return exitError{2, err.Error()}
			}
			local := m.At(clock.MonoRawNS())
			iv := truetime.Bound(local, e)
			st := statusJSON{
				Status: iv.Status.String(), EarliestNS: iv.EarliestNS, LatestNS: iv.LatestNS,
				OffsetNS: e.OffsetNS, SkewPPB: e.SkewPPB, FreqPPB: e.FreqPPB,
				DriftBoundPPB: e.DriftBoundPPB, FreqUncPPB: e.FreqUncPPB, Stratum: e.Stratum,
				RefID: refID(e.RefID), RootDelayNS: e.RootDelayNS, RootDispersionNS: e.RootDispersionNS,
				MaxErrorNS: e.MaxErrorNS,
			}
			if iv.Status != truetime.Unsynchronized {
				st.ErrorBoundNS = iv.EpsNS()
				st.LastUpdateAgeNS = local - e.LocalNS
				st.LastSampleAgeNS = local - e.LastSampleNS
			}
			if asJSON {
				return json.NewEncoder(stdout).Encode(st)
			}
			tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "status\t%s\n", st.Status)
			if iv.Status != truetime.Unsynchronized {
				fmt.Fprintf(tw, "error bound (ε)\t%v\n", time.Duration(st.ErrorBoundNS))
				fmt.Fprintf(tw, "offset (local − true)\t%.0f ns\n", st.OffsetNS)
				fmt.Fprintf(tw, "stratum\t%d\n", st.Stratum)
				fmt.Fprintf(tw, "reference\t%s\n", st.RefID)
				fmt.Fprintf(tw, "last update\t%v ago\n", time.Duration(st.LastUpdateAgeNS))
			}
			fmt.Fprintf(tw, "frequency\t%.3f ppb\n", st.FreqPPB)
			fmt.Fprintf(tw, "ε growth\t%.0f ppb (drift bound %.0f + frequency uncertainty %.0f)\n", st.DriftBoundPPB+st.FreqUncPPB, st.DriftBoundPPB, st.FreqUncPPB)
			return tw.Flush()
		},
	}
	root.AddCommand(now, status)
	return root
}

func fmtTime(ns int64) string { return time.Unix(0, ns).UTC().Format("2006-01-02T15:04:05.000000000Z") }

// refID renders an NTP reference ID: four ASCII letters when printable,
// else a dotted quad.
func refID(id uint32) string {
	b := []byte{byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)}
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return fmt.Sprintf("%d.%d.%d.%d", b[0], b[1], b[2], b[3])
		}
	}
	return string(b)
}
