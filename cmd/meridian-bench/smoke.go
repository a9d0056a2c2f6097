package main

import "fmt"

// The regression guard's floors (`make bench-smoke`: meridian-bench
// ntp-server --smoke). A median ratio of replies per server-CPU-second
// below floor − margin fails the smoke; so does any bad reply.
//
// FLOORS-PLACEHOLDER
const (
	floorVsBare     = 0.9 // the target
	marginVsBare    = 0.1
	floorVsChronyd  = 1.2 // the target
	marginVsChronyd = 0.15
)

// minJudgedRounds is the least number of rounds whose ratios a verdict
// takes a median of.
const minJudgedRounds = 3

type smokeVerdict struct {
	Pass            bool    `json:"pass"`
	Reason          string  `json:"reason"`
	FloorVsBare     float64 `json:"floor_vs_bare"`
	MarginVsBare    float64 `json:"margin_vs_bare"`
	FloorVsChronyd  float64 `json:"floor_vs_chronyd"`
	MarginVsChronyd float64 `json:"margin_vs_chronyd"`
	ChronydChecked  bool    `json:"chronyd_checked"`
}

// checkSmoke judges a run's summary; withChronyd says whether chronyd took
// part (it is required under CI=true, see run).
func checkSmoke(s summary, withChronyd bool) smokeVerdict {
	v := smokeVerdict{Pass: true, FloorVsBare: floorVsBare, MarginVsBare: marginVsBare,
		FloorVsChronyd: floorVsChronyd, MarginVsChronyd: marginVsChronyd, ChronydChecked: withChronyd}
	var why []string
	if s.Silent > 0 {
		why = append(why, fmt.Sprintf("meridiand answered nothing in %d rounds", s.Silent))
	}
	if judged := len(s.VsBare); judged < minJudgedRounds {
		why = append(why, fmt.Sprintf("inconclusive: %d of %d rounds judged (the others had a server below %v of CPU: the machine is too busy)", judged, s.Rounds, minJudgedCPU))
	}
	for name, n := range s.Bad {
		if n > 0 {
			why = append(why, fmt.Sprintf("%s sent %d bad replies", name, n))
		}
	}
	if s.MedianVsBare < floorVsBare-marginVsBare {
		why = append(why, fmt.Sprintf("meridiand/bare %.3f < floor %.2f − margin %.2f", s.MedianVsBare, floorVsBare, marginVsBare))
	}
	if withChronyd && s.MedianVsChr < floorVsChronyd-marginVsChronyd {
		why = append(why, fmt.Sprintf("meridiand/chronyd %.3f < floor %.2f − margin %.2f", s.MedianVsChr, floorVsChronyd, marginVsChronyd))
	}
	if len(why) > 0 {
		v.Pass = false
		v.Reason = fmt.Sprint(why)
		return v
	}
	v.Reason = fmt.Sprintf("meridiand/bare %.3f ≥ %.2f, meridiand/chronyd %.3f ≥ %.2f (chronyd checked: %v), 0 bad replies",
		s.MedianVsBare, floorVsBare-marginVsBare, s.MedianVsChr, floorVsChronyd-marginVsChronyd, withChronyd)
	return v
}
