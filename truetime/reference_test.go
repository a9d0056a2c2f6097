package truetime

import "testing"

func TestReference(t *testing.T) {
	for _, c := range []struct {
		stratum uint8
		id      uint32
		want    string
	}{
		{1, 0x47505300, "GPS"},       // a stratum-1 reference clock
		{10, 0x4c4f434c, "LOCL"},     // our own clock as reference (local_stratum)
		{2, 0x7f000001, "127.0.0.1"}, // the upstream server's address
		{3, 0x4c4f434d, "76.79.67.77"},
		{2, 0, ""},
	} {
		if got := (Estimate{Stratum: c.stratum, RefID: c.id}).Reference(); got != c.want {
			t.Errorf("stratum %d, id %#x: %q, want %q", c.stratum, c.id, got, c.want)
		}
	}
}
