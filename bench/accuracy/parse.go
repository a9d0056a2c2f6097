package accuracy

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// maxReportedS bounds any offset or delay a peer reports, in seconds: far
// beyond anything on these paths, and small enough that its nanoseconds fit
// an int64.
const maxReportedS = 1e6

// secondsToNS converts a peer's figure in seconds, refusing what is not a
// finite number within ±maxReportedS.
func secondsToNS(field, s string) (int64, error) {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a number", field, s)
	}
	if math.IsNaN(v) || math.Abs(v) > maxReportedS {
		return 0, fmt.Errorf("%s: %v s is out of range (|v| ≤ %g s)", field, v, maxReportedS)
	}
	return int64(math.Round(v * 1e9)), nil
}

// Tracking is what `chronyc -c tracking` says about chrony's own error.
type Tracking struct {
	Stratum int
	// OffsetNS is field 5 (index 4), "System time": NTP time − system time.
	// chronyd -x never adjusts the clock, so it is chrony's estimate of the
	// server's time minus the host clock.
	OffsetNS int64
}

// ParseTracking parses the first line of `chronyc -c tracking`.
func ParseTracking(line string) (Tracking, error) {
	f := strings.Split(strings.TrimSpace(line), ",")
	if len(f) < 5 {
		return Tracking{}, fmt.Errorf("chronyc tracking: %d fields, want ≥ 5: %q", len(f), line)
	}
	st, err := strconv.Atoi(f[2])
	if err != nil || st < 0 || st > 16 {
		return Tracking{}, fmt.Errorf("chronyc tracking: stratum (field 3) %q: want 0..16", f[2])
	}
	off, err := secondsToNS("chronyc tracking: system time (field 5)", f[4])
	if err != nil {
		return Tracking{}, err
	}
	return Tracking{Stratum: st, OffsetNS: off}, nil
}

// ParsePeerDelay parses the round trip of chrony's last exchange from the
// first line of `chronyc -c ntpdata` (field 20, "Peer delay").
func ParsePeerDelay(line string) (int64, error) {
	d, err := ParseNTPData(line)
	return d.DelayNS, err
}

// NTPData is what the harness reads of `chronyc -c ntpdata`.
type NTPData struct {
	DelayNS     int64 // field 20, "Peer delay"
	Interleaved bool  // field 27, "Interleaved": the last exchange was
}

// ParseNTPData parses the first line of `chronyc -c ntpdata`.
func ParseNTPData(line string) (NTPData, error) {
	f := strings.Split(strings.TrimSpace(line), ",")
	if len(f) < 27 {
		return NTPData{}, fmt.Errorf("chronyc ntpdata: %d fields, want ≥ 27", len(f))
	}
	d, err := secondsToNS("chronyc ntpdata: peer delay (field 20)", f[19])
	if err != nil {
		return NTPData{}, err
	}
	if d <= 0 {
		return NTPData{}, fmt.Errorf("chronyc ntpdata: peer delay %d ns: want > 0", d)
	}
	var x bool
	switch f[26] {
	case "Yes":
		x = true
	case "No":
	default:
		return NTPData{}, fmt.Errorf("chronyc ntpdata: interleaved (field 27) %q: want Yes or No", f[26])
	}
	return NTPData{DelayNS: d, Interleaved: x}, nil
}

var masterOffsetRe = regexp.MustCompile(`master offset\s+(-?\d+) s(\d) freq\s+[-+]?\d+ path delay\s+(-?\d+)`)

// MasterOffset is one ptp4l `master offset` line: slave − master and the
// mean one-way path delay, in ns.
type MasterOffset struct {
	OffsetNS, PathDelayNS int64
	State                 int // the servo state (s0, s1, s2)
}

// ParseMasterOffset finds a `master offset` report in one line of ptp4l's
// output; ok is false for any other line.
func ParseMasterOffset(line string) (m MasterOffset, ok bool, err error) {
	g := masterOffsetRe.FindStringSubmatch(line)
	if g == nil {
		return MasterOffset{}, false, nil
	}
	if m.OffsetNS, err = strconv.ParseInt(g[1], 10, 64); err != nil {
		return MasterOffset{}, false, fmt.Errorf("ptp4l: master offset %q: %w", g[1], err)
	}
	if m.PathDelayNS, err = strconv.ParseInt(g[3], 10, 64); err != nil {
		return MasterOffset{}, false, fmt.Errorf("ptp4l: path delay %q: %w", g[3], err)
	}
	const maxNS = int64(maxReportedS * 1e9)
	if m.OffsetNS < -maxNS || m.OffsetNS > maxNS || m.PathDelayNS < -maxNS || m.PathDelayNS > maxNS {
		return MasterOffset{}, false, fmt.Errorf("ptp4l: master offset %d ns, path delay %d ns: out of range (±%g s)", m.OffsetNS, m.PathDelayNS, maxReportedS)
	}
	m.State = int(g[2][0] - '0')
	return m, true, nil
}

// ParseSourceDelay reads meridian_source_delay_seconds (the filtered
// sample's round trip) of the first source from a Prometheus text
// exposition; ok is false when the metric is absent.
func ParseSourceDelay(r io.Reader) (ns int64, ok bool, err error) {
	v, ok, err := ParseSourceMetric(r, "meridian_source_delay_seconds")
	if !ok || err != nil {
		return 0, ok, err
	}
	ns, err = secondsToNS("meridian_source_delay_seconds", v)
	return ns, err == nil, err
}

// ParseSourceMetric finds the first sample of a per-source metric in a
// Prometheus text exposition and returns its value as written.
func ParseSourceMetric(r io.Reader, name string) (v string, ok bool, err error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, name+"{") {
			continue
		}
		return l[strings.LastIndexByte(l, ' ')+1:], true, nil
	}
	return "", false, sc.Err()
}
