package system

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeKernel records every clock_adjtime call and keeps a tiny model.
type fakeKernel struct {
	calls  []unix.Timex
	freq   int64
	status int32
	nowNS  int64
	err    error
}

func (f *fakeKernel) ClockAdjtime(id int32, tx *unix.Timex) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	f.calls = append(f.calls, *tx)
	if tx.Modes&unix.ADJ_FREQUENCY != 0 {
		f.freq = tx.Freq
	}
	if tx.Modes&unix.ADJ_STATUS != 0 {
		f.status = tx.Status
	}
	if tx.Modes&unix.ADJ_SETOFFSET != 0 {
		f.nowNS += tx.Time.Sec*1e9 + tx.Time.Usec
	}
	tx.Freq, tx.Status = f.freq, f.status
	return 0, nil
}

func (f *fakeKernel) ClockGettime(id int32, ts *unix.Timespec) error {
	*ts = unix.NsecToTimespec(f.nowNS)
	return f.err
}

func TestFrequencyEncoding(t *testing.T) {
	k := &fakeKernel{}
	c := New(k)
	if err := c.AdjFreqPPB(-12_345.5); err != nil {
		t.Fatal(err)
	}
	last := k.calls[len(k.calls)-1]
	if last.Modes != unix.ADJ_FREQUENCY || last.Freq != -809_075 { // −12345.5 × 65.536 = −809075.2
		t.Fatalf("timex %+v", last)
	}
	if f, _ := c.FreqPPB(); f < -12_345.51 || f > -12_345.49 {
		t.Fatalf("read back %v", f)
	}
	if c.AdjFreqPPB(600_000) == nil {
		t.Fatal("beyond ±500 ppm accepted")
	}
}

func TestStepEncoding(t *testing.T) {
	for _, tc := range []struct {
		step      int64
		sec, nsec int64
	}{
		{1_500_000_000, 1, 500_000_000},
		{-1, -1, 999_999_999},
		{-2_250_000_000, -3, 750_000_000},
		{0, 0, 0},
	} {
		tv := StepTimeval(tc.step)
		if tv.Sec != tc.sec || tv.Usec != tc.nsec {
			t.Errorf("step %d: %+v, want %d s %d ns", tc.step, tv, tc.sec, tc.nsec)
		}
	}
	k := &fakeKernel{nowNS: 10e9}
	c := New(k)
	if err := c.Step(-2_250_000_000); err != nil {
		t.Fatal(err)
	}
	if last := k.calls[len(k.calls)-1]; last.Modes != unix.ADJ_SETOFFSET|unix.ADJ_NANO {
		t.Fatalf("modes %#x", last.Modes)
	}
	if c.NowNS() != 10e9-2_250_000_000 {
		t.Fatalf("clock %d after step", c.NowNS())
	}
}

func TestSetSyncKeepsOtherBits(t *testing.T) {
	k := &fakeKernel{status: unix.STA_UNSYNC | 0x2000}
	c := New(k)
	if err := c.SetSync(true, 5_000_000, 20_000); err != nil {
		t.Fatal(err)
	}
	last := k.calls[len(k.calls)-1]
	if last.Status != 0x2000 || last.Maxerror != 5000 || last.Esterror != 20 {
		t.Fatalf("timex %+v", last)
	}
	_ = c.SetSync(false, 0, 0)
	if k.status&unix.STA_UNSYNC == 0 || k.status&0x2000 == 0 {
		t.Fatalf("status %#x", k.status)
	}
}

func TestErrorsName(t *testing.T) {
	c := New(&fakeKernel{err: unix.EPERM})
	if err := c.AdjFreqPPB(1); !errors.Is(err, unix.EPERM) {
		t.Fatalf("%v", err)
	}
	if _, err := c.Read(); err == nil {
		t.Fatal("read error swallowed")
	}
}

// The one real call: a read-only query (modes = 0) of the host clock.
func TestRealReadOnly(t *testing.T) {
	tx, _, err := New(nil).ReadOnlyStatus()
	if err != nil {
		t.Fatal(err)
	}
	if tx.Modes != 0 {
		t.Fatalf("modes %#x after a read-only query", tx.Modes)
	}
}
