package bench

import (
	"encoding/binary"
	"time"
)

// The load generators check every reply against their own clock (the
// host's CLOCK_REALTIME) and their own requests, independently of the
// server: a reply counts as received only when it is a well-formed
// synchronized mode-4 answer to one of our requests with plausible
// timestamps; anything else counts as bad.

// replySlack is how far a reply's receive and transmit timestamps may lie
// outside [load start, reply arrival] on the host clock: servers on this
// host serve this host's clock (chronyd), or a clock started from it and
// run on CLOCK_MONOTONIC_RAW (meridiand's virtual clock, which parts from
// it by at most the host clock's slew: ≤ 500 ppm of a ≤ 10-minute load),
// so anything further away is a wrong timestamp, not a slow clock.
const replySlack = 500 * time.Millisecond

// ntpUnixOffset is the NTP era-0 epoch's offset from the Unix epoch, in s.
const ntpUnixOffset = 2_208_988_800

// ntpToUnixNS converts an era-0 NTP timestamp to Unix nanoseconds.
func ntpToUnixNS(ts uint64) int64 {
	return (int64(ts>>32)-ntpUnixOffset)*1e9 + int64((ts&0xffffffff)*1e9>>32)
}

// unsynchronized reports whether a reply that failed the check is a server
// saying it cannot serve time — LI 3 (alarm) or stratum 0 (a kiss-o'-death)
// — rather than a reply with wrong content: counted apart (Unsynchronized),
// so that "0 bad replies" speaks of timestamps and "unsynchronized" of a
// server's honest state.
func unsynchronized(b []byte) bool {
	return len(b) >= 48 && b[0]&7 == 4 && (b[0]>>6 == 3 || b[1] == 0)
}

// replyCheck validates replies of one load.
type replyCheck struct {
	start time.Time // the load's start: origins are ns since it
}

// check validates reply b, which arrived at el after the start (on the
// monotonic clock) and at wallNS on the host clock, and returns the
// exchange's latency.
func (c replyCheck) check(b []byte, el time.Duration, wallNS int64) (time.Duration, bool) {
	if len(b) < 48 {
		return 0, false
	}
	li, vn, mode, stratum := b[0]>>6, b[0]>>3&7, b[0]&7, b[1]
	if li == 3 || vn != 4 || mode != 4 || stratum < 1 || stratum > 15 {
		return 0, false // not a synchronized server reply to our v4 request (KoD: stratum 0)
	}
	origin := time.Duration(binary.BigEndian.Uint64(b[24:]))
	if origin < 0 || origin > el {
		return 0, false // not the transmit timestamp of a request we sent
	}
	rx, tx := binary.BigEndian.Uint64(b[32:]), binary.BigEndian.Uint64(b[40:])
	if rx == 0 || tx == 0 || tx < rx {
		return 0, false // a reply sent before its request was received
	}
	lo, hi := c.start.UnixNano()-int64(replySlack), wallNS+int64(replySlack)
	for _, ts := range [2]uint64{rx, tx} {
		if ns := ntpToUnixNS(ts); ns < lo || ns > hi {
			return 0, false
		}
	}
	return el - origin, true
}
