package hwts

import (
	"encoding/binary"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type fakeSys struct {
	info      *unix.EthtoolTsInfo
	infoErr   error
	hwErr     error
	optErr    error
	flags     []int
	hwCalls   int
	errq      [][]byte // error-queue control data, served in order
	eagain    int      // EAGAINs before each errq entry
	recvCalls int
}

func (f *fakeSys) SetsockoptInt(fd, level, opt, v int) error {
	if level == unix.SOL_SOCKET && opt == unix.SO_TIMESTAMPING {
		f.flags = append(f.flags, v)
		if f.optErr != nil {
			return f.optErr
		}
	}
	return nil
}
func (f *fakeSys) TSInfo(string) (*unix.EthtoolTsInfo, error) { return f.info, f.infoErr }
func (f *fakeSys) SetHwTstamp(string, *unix.HwTstampConfig) error {
	f.hwCalls++
	return f.hwErr
}
func (f *fakeSys) Recvmsg(fd int, p, oob []byte, flags int) (int, int, int, error) {
	f.recvCalls++
	if flags&unix.MSG_ERRQUEUE == 0 {
		return 0, 0, 0, errors.New("not an errqueue read")
	}
	if f.eagain > 0 {
		f.eagain--
		return 0, 0, 0, unix.EAGAIN
	}
	if len(f.errq) == 0 {
		return 0, 0, 0, unix.EAGAIN
	}
	n := copy(oob, f.errq[0])
	f.errq = f.errq[1:]
	return 0, n, 0, nil
}

func rawConn(t *testing.T) syscall.RawConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc, _ := c.SyscallConn()
	return rc
}

var capable = &unix.EthtoolTsInfo{
	So_timestamping: hwFlags | swFlags,
	Tx_types:        1 << unix.HWTSTAMP_TX_ON,
	Rx_filters:      1 << unix.HWTSTAMP_FILTER_ALL,
}

type fakePHC struct{ index int }

func (fakePHC) RxToClock(ns int64) (int64, bool) { return ns, true }
func (fakePHC) TxToClock(ns int64) (int64, bool) { return ns, true }

func TestEnableFallbacks(t *testing.T) {
	swOnly := &unix.EthtoolTsInfo{So_timestamping: swFlags}
	noPHC := *capable
	noPHC.Phc_index = -1
	errPHC := errors.New("no /dev/ptp0")
	opened := -1
	open := func(i int) (HardwareClock, error) { opened = i; return fakePHC{i}, nil }
	refuse := func(int) (HardwareClock, error) { return nil, errPHC }
	for _, tc := range []struct {
		name    string
		mode    Mode
		ifname  string
		sys     *fakeSys
		want    Source
		wantErr error
		flags   int
	}{
		{"hardware capable, auto", Auto, "eth0", &fakeSys{info: capable}, SourceHardware, nil, hwFlags | optBits},
		{"hardware capable, hardware", Hardware, "eth0", &fakeSys{info: capable}, SourceHardware, nil, hwFlags | optBits},
		{"hardware capable, PHC unreadable, auto", Auto, "eth1", &fakeSys{info: capable}, SourceSoftware, nil, swFlags | optBits},
		{"hardware capable, PHC unreadable, hardware", Hardware, "eth1", &fakeSys{info: capable}, 0, errPHC, 0},
		{"stamps without a PHC, auto", Auto, "eth0", &fakeSys{info: &noPHC}, SourceSoftware, nil, swFlags | optBits},
		{"hardware capable, software forced", Software, "eth0", &fakeSys{info: capable}, SourceSoftware, nil, swFlags | optBits},
		{"software-only NIC, auto", Auto, "veth0", &fakeSys{info: swOnly}, SourceSoftware, nil, swFlags | optBits},
		{"software-only NIC, hardware", Hardware, "veth0", &fakeSys{info: swOnly}, 0, ErrNoHardware, 0},
		{"no interface, hardware", Hardware, "", &fakeSys{}, 0, ErrNoHardware, 0},
		{"SIOCSHWTSTAMP refused, auto", Auto, "eth0", &fakeSys{info: capable, hwErr: unix.EPERM}, SourceSoftware, nil, swFlags | optBits},
		{"SIOCSHWTSTAMP refused, hardware", Hardware, "eth0", &fakeSys{info: capable, hwErr: unix.EPERM}, 0, unix.EPERM, 0},
		{"ethtool fails, auto", Auto, "eth0", &fakeSys{infoErr: unix.EOPNOTSUPP}, SourceSoftware, nil, swFlags | optBits},
		{"no SO_TIMESTAMPING, auto", Auto, "", &fakeSys{optErr: unix.ENOPROTOOPT}, SourceUser, nil, swFlags | optBits},
		{"no SO_TIMESTAMPING, software", Software, "", &fakeSys{optErr: unix.ENOPROTOOPT}, 0, unix.ENOPROTOOPT, 0},
	} {
		o := Options{Interface: tc.ifname, Mode: tc.mode, Sys: tc.sys, PHC: open}
		if tc.ifname == "eth1" {
			o.PHC = refuse
		}
		s, err := EnableWith(rawConn(t), o)
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("%s: error %v, want %v", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if s.Chosen() != tc.want {
			t.Errorf("%s: chose %v, want %v", tc.name, s.Chosen(), tc.want)
		}
		if s.Chosen() == SourceHardware && (s.hw == nil || opened != int(tc.sys.info.Phc_index)) {
			t.Errorf("%s: hardware chosen without the interface's PHC (opened %d)", tc.name, opened)
		}
		if got := tc.sys.flags[len(tc.sys.flags)-1]; got != tc.flags {
			t.Errorf("%s: SO_TIMESTAMPING flags %#x, want %#x", tc.name, got, tc.flags)
		}
	}
}

func tsCmsg(sw, hw int64) []byte {
	b := make([]byte, hdr+48)
	binary.NativeEndian.PutUint64(b[0:], uint64(hdr+48))
	binary.NativeEndian.PutUint32(b[8:], unix.SOL_SOCKET)
	binary.NativeEndian.PutUint32(b[12:], unix.SCM_TIMESTAMPING)
	binary.NativeEndian.PutUint64(b[hdr:], uint64(sw/1e9))
	binary.NativeEndian.PutUint64(b[hdr+8:], uint64(sw%1e9))
	binary.NativeEndian.PutUint64(b[hdr+32:], uint64(hw/1e9))
	binary.NativeEndian.PutUint64(b[hdr+40:], uint64(hw%1e9))
	return b
}

func errCmsg(id uint32) []byte {
	b := make([]byte, hdr+16)
	binary.NativeEndian.PutUint64(b[0:], uint64(hdr+16))
	binary.NativeEndian.PutUint32(b[8:], unix.SOL_IP)
	binary.NativeEndian.PutUint32(b[12:], unix.IP_RECVERR)
	binary.NativeEndian.PutUint32(b[hdr:], uint32(unix.ENOMSG))
	b[hdr+4] = unix.SO_EE_ORIGIN_TIMESTAMPING
	binary.NativeEndian.PutUint32(b[hdr+12:], id)
	return b
}

func TestParseRx(t *testing.T) {
	if st, ok := ParseRx(tsCmsg(1_700_000_000_000_000_123, 0)); !ok || st.Source != SourceSoftware || st.NS != 1_700_000_000_000_000_123 {
		t.Fatalf("software %+v %v", st, ok)
	}
	if st, ok := ParseRx(tsCmsg(5, 1_700_000_000_000_000_999)); !ok || st.Source != SourceHardware || st.NS != 1_700_000_000_000_000_999 {
		t.Fatalf("hardware preferred %+v %v", st, ok)
	}
	for _, bad := range [][]byte{nil, tsCmsg(0, 0), tsCmsg(1, 0)[:20], errCmsg(3)} {
		if _, ok := ParseRx(bad); ok {
			t.Errorf("parsed %x", bad)
		}
	}
}

func TestTxStampMatching(t *testing.T) {
	msg := func(id uint32, ns int64) []byte { return append(tsCmsg(ns, 0), errCmsg(id)...) }
	// A late stamp of datagram 0 is skipped; datagram 1's arrives after EAGAINs.
	f := &fakeSys{errq: [][]byte{msg(0, 100), msg(1, 200)}, eagain: 3}
	s, err := Enable(rawConn(t), "", Software, f)
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := s.TxStamp(1, time.Second); !ok || st.NS != 200 || st.Source != SourceSoftware {
		t.Fatalf("stamp %+v %v", st, ok)
	}
	// Missing stamp: gives up within the wait, without blocking.
	start := time.Now()
	if _, ok := s.TxStamp(2, 5*time.Millisecond); ok {
		t.Fatal("a stamp from nowhere")
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("stalled %v", el)
	}
	// A later datagram's stamp means ours was lost.
	f.errq = [][]byte{msg(9, 900)}
	if _, ok := s.TxStamp(3, time.Second); ok {
		t.Fatal("accepted another datagram's stamp")
	}
	if s.NextTxID() != 0 || s.NextTxID() != 1 {
		t.Fatal("OPT_ID counter")
	}
}

// Real kernel software stamps on loopback: RX from SCM_TIMESTAMPING and TX
// from the error queue, both software, both close to now.
func TestLoopbackSoftwareStamps(t *testing.T) {
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := net.DialUDP("udp", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	src, _ := srv.SyscallConn()
	crc, _ := cli.SyscallConn()
	rx, err := Enable(src, "lo", Auto, nil)
	if err != nil || rx.Chosen() != SourceSoftware {
		t.Fatalf("rx socket: %v %v", rx, err)
	}
	tx, err := Enable(crc, "lo", Software, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The kernel turns receive stamping on through a static key flipped from
	// a workqueue (net_enable_timestamp), so the first datagrams after
	// Enable may arrive unstamped on a host where no other socket wanted
	// stamps. Warm up until one is stamped; after that every one must be.
	warm := make([]byte, 64)
	woob := make([]byte, 256)
	for i := 0; ; i++ {
		if i == 200 {
			t.Fatal("no software receive stamp after 200 datagrams")
		}
		tx.NextTxID() // keep OPT_IDs in step; TxStamp skips older stamps
		if _, err := cli.Write([]byte("warm")); err != nil {
			t.Fatal(err)
		}
		_, oobn, _, _, err := srv.ReadMsgUDP(warm, woob)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := ParseRx(woob[:oobn]); ok {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i := 0; i < 3; i++ {
		before := time.Now().UnixNano()
		id := tx.NextTxID()
		if _, err := cli.Write([]byte("stamp me")); err != nil {
			t.Fatal(err)
		}
		ts, ok := tx.TxStamp(id, 100*time.Millisecond)
		if !ok || ts.Source != SourceSoftware || ts.NS < before || ts.NS > time.Now().UnixNano() {
			t.Fatalf("tx %d: %+v %v (sent after %d)", i, ts, ok, before)
		}
		buf, oob := make([]byte, 64), make([]byte, 256)
		_, oobn, _, _, err := srv.ReadMsgUDP(buf, oob)
		if err != nil {
			t.Fatal(err)
		}
		rs, ok := ParseRx(oob[:oobn])
		if !ok || rs.Source != SourceSoftware || rs.NS < ts.NS {
			t.Fatalf("rx %d: %+v %v (tx %d)", i, rs, ok, ts.NS)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(tsCmsg(1e18, 0))
	f.Add(append(tsCmsg(5, 6), errCmsg(7)...))
	f.Add([]byte{0xff})
	f.Fuzz(func(t *testing.T, oob []byte) {
		ParseRx(oob)
		parseTx(oob)
	})
}

// ClockPair retries while the thread was held up between its reads (here a
// clock read that sleeps 2 ms the first time): the pair it returns brackets
// the reading tightly.
func TestClockPairRetriesAHeldUpRead(t *testing.T) {
	calls := 0
	before, n, after := ClockPair(func() int64 {
		calls++
		if calls == 1 {
			time.Sleep(2 * time.Millisecond)
		}
		return int64(calls)
	})
	if calls < 2 || n != int64(calls) || after < before {
		t.Fatalf("calls %d, n %d, pair %d..%d: a held-up read was kept", calls, n, before, after)
	}
	if calls < 4 && after-before > MaxPairGapNS {
		t.Fatalf("returned a pair %d ns apart after %d tries", after-before, calls)
	}
}

// A stamp 30 µs old maps to the clock reading minus 30 µs; a stamp from
// the future or older than a second (a stepped CLOCK_REALTIME) is refused
// and the reading kept.
func TestStampToClock(t *testing.T) {
	if got, ok := RxToClock(1_000_030_000, 5_000_000_000, 1_000_000_000); !ok || got != 4_999_970_000 {
		t.Fatalf("rx: %d %v", got, ok)
	}
	if got, ok := TxToClock(5_000_000_000, 1_000_030_000, 1_000_000_000); !ok || got != 4_999_970_000 {
		t.Fatalf("tx: %d %v", got, ok)
	}
	for _, stamp := range []int64{1_000_030_001, 1_000_030_000 - 2e9} {
		if got, ok := RxToClock(1_000_030_000, 5e9, stamp); ok || got != 5e9 {
			t.Fatalf("stamp %d: %d %v", stamp, got, ok)
		}
	}
}

type shiftPHC struct{ off int64 }

func (p shiftPHC) RxToClock(ns int64) (int64, bool) { return ns + p.off, true }
func (p shiftPHC) TxToClock(ns int64) (int64, bool) { return ns + p.off - 1, true }

// RxToClock and TxToClock dispatch on the stamp's kind: software by age,
// hardware through the PHC converter, and anything unusable to the
// user-space reading (a hardware stamp with no converter, a conversion
// that lands after the reading taken after the datagram arrived).
func TestSocketConvertsEachKind(t *testing.T) {
	const rt, now = int64(5_000_000_000), int64(9_000_000_000)
	s := &Socket{sys: &fakeSys{}, chosen: SourceHardware, hw: shiftPHC{off: 4_000_000_000}}
	for _, c := range []struct {
		name string
		oob  []byte
		hw   HardwareClock
		want int64
		src  Source
	}{
		{"software, 30 µs old", tsCmsg(rt-30_000, 0), s.hw, now - 30_000, SourceSoftware},
		{"hardware", tsCmsg(0, 4_999_990_000), s.hw, 8_999_990_000, SourceHardware},
		{"hardware without a converter", tsCmsg(0, 4_999_990_000), nil, now, SourceUser},
		{"hardware converted past the reading", tsCmsg(0, 5_000_000_100), s.hw, now, SourceUser},
		{"no stamp", nil, s.hw, now, SourceUser},
	} {
		s.hw = c.hw
		if got, src := s.RxToClock(c.oob, rt, now); got != c.want || src != c.src {
			t.Errorf("%s: %d (%v), want %d (%v)", c.name, got, src, c.want, c.src)
		}
	}
	// A transmit stamp from the error queue, hardware.
	f := &fakeSys{errq: [][]byte{append(tsCmsg(0, 7_000_000_000), errCmsg(0)...)}}
	s = &Socket{rc: rawConn(t), sys: f, chosen: SourceHardware, hw: shiftPHC{off: 10}, buf: make([]byte, 64), oob: make([]byte, 512)}
	if got, src, ok := s.TxToClock(s.NextTxID(), time.Millisecond, func() int64 { return 0 }); !ok || src != SourceHardware || got != 7_000_000_009 {
		t.Fatalf("tx %d %v %v", got, src, ok)
	}
	// Without a converter the stamp is not used.
	f.errq = [][]byte{append(tsCmsg(0, 7_000_000_000), errCmsg(1)...)}
	s.hw = nil
	if _, _, ok := s.TxToClock(s.NextTxID(), time.Millisecond, func() int64 { return 0 }); ok {
		t.Fatal("hardware TX stamp used without its PHC")
	}
}
