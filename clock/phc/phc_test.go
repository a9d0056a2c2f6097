package phc

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

type fakeDev struct {
	maxAdj int32
	closed bool
}

func (f *fakeDev) Open(string) (int, error) { return 7, nil }
func (f *fakeDev) Caps(int) (unix.PtpClockCaps, error) {
	return unix.PtpClockCaps{Max_adj: f.maxAdj}, nil
}
func (f *fakeDev) SysOffsetPrecise(int) (unix.PtpSysOffsetPrecise, error) {
	return unix.PtpSysOffsetPrecise{}, unix.EOPNOTSUPP
}
func (f *fakeDev) SysOffsetExtended(int, int32, int) (unix.PtpSysOffsetExtended, error) {
	return unix.PtpSysOffsetExtended{}, unix.EOPNOTSUPP
}
func (f *fakeDev) Close(int) error { f.closed = true; return nil }

type fakeAdj struct{ ids []int32 }

func (f *fakeAdj) ClockAdjtime(id int32, tx *unix.Timex) (int, error) {
	f.ids = append(f.ids, id)
	return 0, nil
}
func (f *fakeAdj) ClockGettime(id int32, ts *unix.Timespec) error {
	f.ids = append(f.ids, id)
	return nil
}

func TestClockIDEncoding(t *testing.T) {
	// FD_TO_CLOCKID(fd) = ((~fd) << 3) | 3: fd 3 → -29, fd 7 → -61.
	if ClockID(3) != -29 || ClockID(7) != -61 {
		t.Fatalf("ids %d %d", ClockID(3), ClockID(7))
	}
}

func TestOpenUsesCapsAndDynamicID(t *testing.T) {
	dev, adj := &fakeDev{maxAdj: 1_000_000}, &fakeAdj{}
	c, err := Open("/dev/ptp9", dev, adj)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxFreqPPB() != 1_000_000 {
		t.Fatalf("max %v", c.MaxFreqPPB())
	}
	if err := c.AdjFreqPPB(900_000); err != nil {
		t.Fatal(err)
	}
	_ = c.Step(5)
	c.NowNS()
	for _, id := range adj.ids {
		if id != ClockID(7) {
			t.Fatalf("call on clock id %d, want the PHC's %d", id, ClockID(7))
		}
	}
	if c.AdjFreqPPB(1_000_001) == nil {
		t.Fatal("beyond max_adj accepted")
	}
	_ = c.Close()
	if !dev.closed {
		t.Fatal("device not closed")
	}
}

func TestOpenErrors(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "ptp0"), nil, nil)
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing device: %v", err)
	}
	dev := &fakeDev{maxAdj: 0}
	if _, err := Open("/dev/ptp0", dev, &fakeAdj{}); err == nil || !dev.closed {
		t.Fatalf("zero max_adj: %v closed=%v", err, dev.closed)
	}
}
