package truetime

import (
	"errors"
	"fmt"
	"time"
)

// MinTimestampNS is 2000-01-01T00:00:00Z. A timestamp asked about (After,
// Before, WaitUntilAfter) that is earlier is almost surely in the wrong
// unit: µs or ms where ns since the Unix epoch are expected.
const MinTimestampNS = int64(946_684_800) * 1e9

// ErrTimestampUnits refuses such a timestamp.
var ErrTimestampUnits = errors.New("truetime: timestamp before 2000-01-01: timestamps are nanoseconds since the Unix epoch (a value in µs or ms is 1000× too small)")

// CheckTimestamp returns ErrTimestampUnits (with the value) for a timestamp
// before MinTimestampNS. Every transport applies it the same way.
func CheckTimestamp(tNS int64) error {
	if tNS < MinTimestampNS {
		return fmt.Errorf("%w: got %d (%s)", ErrTimestampUnits, tNS, time.Unix(0, tNS).UTC().Format(time.RFC3339Nano))
	}
	return nil
}
