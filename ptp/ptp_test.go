package ptp

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/facebook/time/ptp/protocol"
	"go.uber.org/goleak"

	"github.com/meridiantime/meridian/hwts"
	"github.com/meridiantime/meridian/hwts/hwtstest"
	"github.com/meridiantime/meridian/ptp/engine"
	"github.com/meridiantime/meridian/truetime"
)

// Workers and readers are goroutines: none may outlive the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// hostClock reads the host's CLOCK_REALTIME plus a fixed offset: two of
// them differ by exactly the difference of their offsets, which is the
// truth the measurement is checked against.
type hostClock struct{ offNS int64 }

func (c hostClock) NowNS() int64 { return time.Now().UnixNano() + c.offNS }

// syncedSource serves a hostClock as synchronized with ε = 1 µs.
type syncedSource struct{ hostClock }

func (s syncedSource) Now() (truetime.Interval, error) {
	n := s.NowNS()
	return truetime.Interval{EarliestNS: n - 1000, LatestNS: n + 1000, Status: truetime.Synchronized}, nil
}
func (s syncedSource) Estimate() truetime.Estimate {
	return truetime.Estimate{Status: truetime.Synchronized, Eps0NS: 1000}
}
func (s syncedSource) LocalNS() int64 { return s.NowNS() }

// freePorts returns two UDP ports free on 127.0.0.1 and 127.0.0.2 (the
// server binds one address, the client the other, both with the same
// event/general port numbers, as PTP's fixed 319/320 work).
func freePorts(t testing.TB) (ev, gen uint16) {
	t.Helper()
	for range 50 {
		var ps [2]uint16
		ok := true
		for i := range ps {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			ps[i] = uint16(c.LocalAddr().(*net.UDPAddr).Port)
			c.Close()
			c2, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: int(ps[i])})
			if err != nil {
				ok = false
				continue
			}
			c2.Close()
		}
		if ok && ps[0] != ps[1] {
			return ps[0], ps[1]
		}
	}
	t.Fatal("no free port pair")
	return 0, 0
}

func fastEngine() engine.ClientConfig {
	return engine.ClientConfig{LogAnnounce: -3, LogSync: -3, LogDelayReq: -3, DurationS: 10}
}

// pair is a grandmaster and a client port on loopback addresses.
type pair struct {
	server, client               netip.Addr
	srvEv, srvGen, cliEv, cliGen uint16
	masterOff, clientOff         int64
	ifname                       string // "" none
	mode                         hwts.Mode
	// Simulated NICs with hardware stamps (nil: the kernel's), and the
	// PHC converters they are read through (nil: the NIC's own).
	srvNIC, cliNIC *hwtstest.NIC
	srvPHC, cliPHC func(int) (hwts.HardwareClock, error)
	// lax: do not check samples against the bound (negative controls).
	lax bool
	// slackNS widens the per-sample check: a simulated NIC makes its
	// stamps from the kernel's CLOCK_REALTIME ones through a (realtime,
	// raw) pair, and these test clocks read CLOCK_REALTIME, so each
	// conversion may be off by a pair's read gap (microseconds under -race).
	slackNS float64
}

func (p pair) stamping(nic *hwtstest.NIC, conv func(int) (hwts.HardwareClock, error), off int64) (hwts.Sys, func(int) (hwts.HardwareClock, error)) {
	if nic == nil {
		return nil, nil
	}
	if conv == nil {
		conv = nic.Opener(hwtstest.RealtimeAtRaw(off))
	}
	return nic, conv
}

// startServer runs the pair's grandmaster serving the host clock +
// masterOff; stop (also run when the test ends) stops it.
func (p pair) startServer(t *testing.T, workers int) (srv *Server, stop func()) {
	t.Helper()
	srv = NewServer(ServerConfig{
		Listen: p.server, EventPort: p.srvEv, GeneralPort: p.srvGen, ClientEventPort: p.cliEv, ClientGeneralPort: p.cliGen,
		Interface: p.ifname, Timestamping: p.mode, Workers: workers,
		Engine: engine.MasterConfig{Identity: 0xaabbccddeeff0011, MinLogInterval: -4},
	}, syncedSource{hostClock{p.masterOff}}, nil)
	srv.cfg.TimestampSys, srv.cfg.PHC = p.stamping(p.srvNIC, p.srvPHC, p.masterOff)
	return srv, serve(t, srv)
}

// serve listens and serves srv until the returned stop is called (also
// when the test ends).
func serve(tb testing.TB, srv *Server) (stop func()) {
	tb.Helper()
	if err := srv.Listen(); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	tb.Cleanup(stop)
	return stop
}

// run measures the grandmaster with a client port until n samples came,
// checks each against the injected offset (within half its measured round
// trip, what the bound promises) and returns the errors.
func (p pair) run(t *testing.T, n int) (errs []float64, cl *Client) {
	t.Helper()
	sys, conv := p.stamping(p.cliNIC, p.cliPHC, p.clientOff)
	cl, err := NewClient(ClientConfig{
		Servers: []netip.Addr{p.server}, Local: p.client,
		LocalEventPort: p.cliEv, LocalGeneralPort: p.cliGen, ServerEventPort: p.srvEv, ServerGeneralPort: p.srvGen,
		Interface: p.ifname, Timestamping: p.mode, Engine: fastEngine(), TimestampSys: sys, PHC: conv,
	}, hostClock{p.clientOff}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := make(chan Sample, 64)
	errc := make(chan error, 1)
	go func() { errc <- cl.Run(ctx, out) }()
	for len(errs) < n {
		select {
		case s := <-out:
			if s.Name != Name(p.server) {
				t.Fatalf("sample named %q", s.Name)
			}
			e := s.Sample.OffsetNS() - float64(p.masterOff-p.clientOff)
			if lim := float64(s.Sample.DelayNS())/2 + p.slackNS; !p.lax && (e < -lim || e > lim) {
				t.Errorf("offset error %.0f ns beyond δ/2 = %d ns", e, s.Sample.DelayNS()/2)
			}
			errs = append(errs, e)
		case <-ctx.Done():
			t.Fatalf("%d samples in 20 s; client %+v", len(errs), &cl.Stats)
		}
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return errs, cl
}

// A client port and a grandmaster (two workers) over IPv4 loopback, clocks
// 2.3 ms apart, timestamping auto on lo (hardware flags are tried, lo has
// none: both fall back to software stamps), on the same port numbers at two
// addresses as PTP's fixed 319/320: every sample's offset is the injected
// offset within half its measured round trip, the median within 50 µs;
// both sides used kernel stamps; the grandmaster sent a Follow_Up for
// (nearly) every Sync, from the error queue's TX stamps.
func TestClientServerLoopback(t *testing.T) {
	ev, gen := freePorts(t)
	p := pair{server: netip.MustParseAddr("127.0.0.1"), client: netip.MustParseAddr("127.0.0.2"),
		srvEv: ev, srvGen: gen, cliEv: ev, cliGen: gen, masterOff: 1_500_000, clientOff: -800_000, ifname: "lo", mode: hwts.Auto}
	srv, stopServer := p.startServer(t, 2)
	errs, cl := p.run(t, 16)
	med := median(errs)
	if med < -50_000 || med > 50_000 {
		t.Fatalf("median offset error %.0f ns (errors %v)", med, errs)
	}
	if st := &cl.Servers[0]; !st.Selected.Load() || !st.Granted.Load() || st.Samples.Load() < 16 {
		t.Fatalf("server state: selected %v granted %v samples %d", st.Selected.Load(), st.Granted.Load(), st.Samples.Load())
	}
	if hwts.Source(cl.Stats.LastTxSource.Load()) != hwts.SourceSoftware || hwts.Source(cl.Stats.LastRxSource.Load()) != hwts.SourceSoftware {
		t.Fatalf("stamps: tx %v rx %v", hwts.Source(cl.Stats.LastTxSource.Load()), hwts.Source(cl.Stats.LastRxSource.Load()))
	}
	stopServer()
	c := srv.Counters()
	if c.Clients != 1 || c.Syncs == 0 || c.FollowUps+c.TxTimeouts+1 < c.Syncs || c.TxTimeouts > c.Syncs/4 {
		t.Fatalf("grandmaster counters %+v", c)
	}
	t.Logf("median offset error %.0f ns over %d samples; grandmaster %+v", med, len(errs), c)
}

// Hardware stamps are used, not thrown away: both ends sit on simulated
// NICs (package hwtstest) whose PHCs run 41 ms ahead and 23 ms behind the
// host at +30 and −45 ppm, so every stamp is in a time neither clock
// keeps. Converted through each PHC's measured relation to the host
// (phc.Map), every sample still holds the injected offset within δ/2 (+ the
// simulated NIC's slack, see pair.slackNS) and
// the median within 50 µs, and both ends report hardware stamps. The
// negative control reads the stamps as if the PHC were the clock (what
// using them unconverted would do): the offsets are off by the PHCs'
// 64 ms.
func TestClientServerHardwareStamps(t *testing.T) {
	mk := func() pair {
		ev, gen := freePorts(t)
		return pair{server: netip.MustParseAddr("127.0.0.1"), client: netip.MustParseAddr("127.0.0.2"),
			srvEv: ev, srvGen: gen, cliEv: ev, cliGen: gen, masterOff: 1_500_000, clientOff: -800_000,
			ifname: "lo", mode: hwts.Hardware,
			srvNIC: hwtstest.New(0, 41e6, 30_000, 1), cliNIC: hwtstest.New(1, -23e6, -45_000, 2), slackNS: 10_000}
	}
	p := mk()
	srv, stop := p.startServer(t, 1)
	errs, cl := p.run(t, 12)
	if med := median(errs); med < -50_000 || med > 50_000 {
		t.Fatalf("median offset error %.0f ns (errors %v)", med, errs)
	}
	if tx, rx := hwts.Source(cl.Stats.LastTxSource.Load()), hwts.Source(cl.Stats.LastRxSource.Load()); tx != hwts.SourceHardware || rx != hwts.SourceHardware {
		t.Fatalf("client stamps: tx %v rx %v, want hardware", tx, rx)
	}
	stop()
	if c := srv.Counters(); c.FollowUps == 0 || c.TxTimeouts > c.Syncs/4 {
		t.Fatalf("grandmaster counters %+v: hardware TX stamps not used", c)
	}
	t.Logf("median offset error %.0f ns with hardware stamps", median(errs))

	naive := func(nic *hwtstest.NIC) func(int) (hwts.HardwareClock, error) {
		return nic.Opener(func(raw int64) int64 { return nic.PHC.At(raw) })
	}
	q := mk()
	q.srvPHC, q.cliPHC, q.lax = naive(q.srvNIC), naive(q.cliNIC), true
	q.startServer(t, 1)
	bad, _ := q.run(t, 4)
	if med := median(bad); med > -1e6 && med < 1e6 {
		t.Fatalf("negative control: PHC time read as the clock still measured %.0f ns", med)
	}
	t.Logf("negative control: stamps unconverted, median error %.1f ms", median(bad)/1e6)
}

// The same over IPv6 loopback (one address: the client's ports differ
// from the server's), with the two UDPv6 trailing octets on every message.
func TestClientServerIPv6(t *testing.T) {
	if c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		c.Close()
	}
	ev, gen := freePorts(t)
	cev, cgen := freePorts(t)
	p := pair{server: netip.IPv6Loopback(), client: netip.IPv6Loopback(),
		srvEv: ev, srvGen: gen, cliEv: cev, cliGen: cgen, masterOff: -2_000_000, clientOff: 300_000, mode: hwts.Software}
	p.startServer(t, 1)
	errs, _ := p.run(t, 8)
	if med := median(errs); med < -50_000 || med > 50_000 {
		t.Fatalf("median offset error %.0f ns (errors %v)", med, errs)
	}
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}

// BenchmarkServerDelayReq: Delay_Req → Delay_Resp through the grandmaster
// shell over loopback, one request in flight; allocations are the whole
// process's (server goroutines included).
func BenchmarkServerDelayReq(b *testing.B) {
	ev, gen := freePorts(b)
	srv := NewServer(ServerConfig{
		Listen: netip.MustParseAddr("127.0.0.1"), EventPort: ev, GeneralPort: gen, ClientEventPort: ev, ClientGeneralPort: gen,
		Timestamping: hwts.Software, Engine: engine.MasterConfig{Identity: 1},
	}, syncedSource{}, nil)
	defer serve(b, srv)()
	send, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		b.Fatal(err)
	}
	defer send.Close()
	recv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: int(gen)})
	if err != nil {
		b.Fatal(err)
	}
	defer recv.Close()
	req := protocol.SyncDelayReq{Header: protocol.Header{SdoIDAndMsgType: protocol.NewSdoIDAndMsgType(protocol.MessageDelayReq, 0),
		Version: 2, MessageLength: 44, SourcePortIdentity: protocol.PortIdentity{ClockIdentity: 9, PortNumber: 1}}}
	rb := make([]byte, 64)
	n, _ := req.MarshalBinaryTo(rb)
	dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ev)
	buf := make([]byte, 128)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := send.WriteToUDPAddrPort(rb[:n], dst); err != nil {
			b.Fatal(err)
		}
		_ = recv.SetReadDeadline(time.Now().Add(time.Second))
		if _, _, err := recv.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// Independent: one engine per server on the same sockets, each server its
// own discipline source: two grandmasters (127.0.0.1 and 127.0.0.3, clocks
// 1 ms apart) each give samples under their own name with their own offset.
func TestClientIndependentServers(t *testing.T) {
	ev, gen := freePorts(t)
	a := pair{server: netip.MustParseAddr("127.0.0.1"), client: netip.MustParseAddr("127.0.0.2"),
		srvEv: ev, srvGen: gen, cliEv: ev, cliGen: gen, masterOff: 500_000, mode: hwts.Software}
	b := a
	b.server, b.masterOff = netip.MustParseAddr("127.0.0.3"), 1_500_000
	if c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3), Port: int(ev)}); err != nil {
		t.Skipf("127.0.0.3: %v", err)
	} else {
		c.Close()
	}
	a.startServer(t, 1)
	b.startServer(t, 1)
	cl, err := NewClient(ClientConfig{
		Servers: []netip.Addr{a.server, b.server}, Independent: true, Local: a.client,
		LocalEventPort: ev, LocalGeneralPort: gen, ServerEventPort: ev, ServerGeneralPort: gen,
		Timestamping: hwts.Software, Engine: fastEngine(),
	}, hostClock{0}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := make(chan Sample, 64)
	errc := make(chan error, 1)
	go func() { errc <- cl.Run(ctx, out) }()
	want := map[string]int64{Name(a.server): a.masterOff, Name(b.server): b.masterOff}
	got := map[string]int{}
	for got[Name(a.server)] < 5 || got[Name(b.server)] < 5 {
		select {
		case s := <-out:
			off, ok := want[s.Name]
			if !ok {
				t.Fatalf("sample from %q", s.Name)
			}
			if e := s.Sample.OffsetNS() - float64(off); e < -float64(s.Sample.DelayNS())/2 || e > float64(s.Sample.DelayNS())/2 {
				t.Fatalf("%s: offset %.0f, want %d within δ/2 = %d", s.Name, s.Sample.OffsetNS(), off, s.Sample.DelayNS()/2)
			}
			got[s.Name]++
		case <-ctx.Done():
			t.Fatalf("samples per server: %v", got)
		}
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// delayRespLog asks srv (4 workers) for a Delay_Resp grant at log −3 from
// each of 8 loopback client addresses, then sends a Delay_Req from each,
// and returns how many Delay_Resps carried the granted interval (ptp4l
// adopts it as its Delay_Req rate) — possible only when the Delay_Req (from
// the client's event port) reached the worker that holds the grant (made
// from its general port).
func delayRespLog(t *testing.T, noSteer bool) (matched, clients int) {
	ev, gen := freePorts(t)
	srv := NewServer(ServerConfig{
		Listen: netip.MustParseAddr("127.0.0.1"), EventPort: ev, GeneralPort: gen, ClientEventPort: ev, ClientGeneralPort: gen,
		Timestamping: hwts.Software, Workers: 4, Engine: engine.MasterConfig{Identity: 7, MinLogInterval: -4},
	}, syncedSource{}, nil)
	srv.noSteer = noSteer
	defer serve(t, srv)()
	srvEv := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ev)
	srvGen := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), gen)
	buf := make([]byte, 512)
	for i := 2; i < 10; i++ {
		ip := net.IPv4(127, 0, 0, byte(i))
		ce, err1 := net.ListenUDP("udp4", &net.UDPAddr{IP: ip, Port: int(ev)})
		cg, err2 := net.ListenUDP("udp4", &net.UDPAddr{IP: ip, Port: int(gen)})
		if err1 != nil || err2 != nil {
			t.Skipf("127.0.0.%d: %v %v", i, err1, err2)
		}
		id := protocol.PortIdentity{ClockIdentity: protocol.ClockIdentity(i), PortNumber: 1}
		sig := protocol.Signaling{
			Header: protocol.Header{SdoIDAndMsgType: protocol.NewSdoIDAndMsgType(protocol.MessageSignaling, 0), Version: 2,
				FlagField: protocol.FlagUnicast, SourcePortIdentity: id, LogMessageInterval: 0x7f},
			TargetPortIdentity: protocol.DefaultTargetPortIdentity,
			TLVs: []protocol.TLV{&protocol.RequestUnicastTransmissionTLV{
				TLVHead:            protocol.TLVHead{TLVType: protocol.TLVRequestUnicastTransmission, LengthField: 6},
				MsgTypeAndReserved: protocol.NewUnicastMsgTypeAndFlags(protocol.MessageDelayResp, 0), LogInterMessagePeriod: -3, DurationField: 60}},
		}
		n, _ := sig.MarshalBinaryTo(buf)
		binary.BigEndian.PutUint16(buf[2:], uint16(n))
		if _, err := cg.WriteToUDPAddrPort(buf[:n], srvGen); err != nil {
			t.Fatal(err)
		}
		_ = cg.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, _, err := cg.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatalf("no grant: %v", err)
		}
		req := protocol.SyncDelayReq{Header: protocol.Header{SdoIDAndMsgType: protocol.NewSdoIDAndMsgType(protocol.MessageDelayReq, 0),
			Version: 2, MessageLength: 44, SourcePortIdentity: id, SequenceID: 1}}
		n, _ = req.MarshalBinaryTo(buf)
		if _, err := ce.WriteToUDPAddrPort(buf[:n], srvEv); err != nil {
			t.Fatal(err)
		}
		n, _, err := cg.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("no Delay_Resp: %v", err)
		}
		var resp protocol.DelayResp
		if err := resp.UnmarshalBinary(buf[:n]); err != nil || resp.RequestingPortIdentity != id {
			t.Fatalf("Delay_Resp %+v: %v", resp, err)
		}
		if resp.LogMessageInterval == -3 {
			matched++
		}
		clients++
		ce.Close()
		cg.Close()
	}
	return matched, clients
}

// The grandmaster steers each client's datagrams to one worker by its
// address, so its Delay_Resps carry the interval it was granted.
// Negative control: with the kernel's 4-tuple hash (noSteer), some of the
// 8 clients' Delay_Reqs reach a worker without their grant (all 8 landing
// right by chance: 4⁻⁸).
func TestServerSteersClientsToOneWorker(t *testing.T) {
	if m, n := delayRespLog(t, false); m != n {
		t.Fatalf("steered: %d of %d Delay_Resps carried the granted interval", m, n)
	}
	if m, n := delayRespLog(t, true); m == n {
		t.Fatalf("unsteered: all %d Delay_Resps carried the granted interval: the control shows nothing", n)
	}
}

// syncRequest is a client's Signaling message asking for Sync at 1/s.
func syncRequest(id protocol.PortIdentity) []byte {
	sig := protocol.Signaling{
		Header: protocol.Header{SdoIDAndMsgType: protocol.NewSdoIDAndMsgType(protocol.MessageSignaling, 0), Version: 2,
			FlagField: protocol.FlagUnicast, SourcePortIdentity: id, LogMessageInterval: 0x7f},
		TargetPortIdentity: protocol.DefaultTargetPortIdentity,
		TLVs: []protocol.TLV{&protocol.RequestUnicastTransmissionTLV{
			TLVHead:            protocol.TLVHead{TLVType: protocol.TLVRequestUnicastTransmission, LengthField: 6},
			MsgTypeAndReserved: protocol.NewUnicastMsgTypeAndFlags(protocol.MessageSync, 0), DurationField: 60}},
	}
	b := make([]byte, 512)
	n, _ := sig.MarshalBinaryTo(b)
	binary.BigEndian.PutUint16(b[2:], uint16(n))
	return b[:n]
}

// A Sync that cannot be sent (here to an IPv6 peer from the IPv4 socket)
// takes no transmit-stamp number: the later Syncs' stamps are still
// matched and their Follow_Ups sent; the failed one is counted as a stamp
// timeout. 130 clients in one step also cross sendmmsg batches (64).
// (Numbering each Sync before its send loses every later Follow_Up after
// one failure.)
func TestServerRefusedSyncKeepsStampsMatched(t *testing.T) {
	ev, gen := freePorts(t)
	srv := NewServer(ServerConfig{
		Listen: netip.MustParseAddr("127.0.0.1"), EventPort: ev, GeneralPort: gen, ClientEventPort: ev, ClientGeneralPort: gen,
		Timestamping: hwts.Software, Engine: engine.MasterConfig{Identity: 7, MaxBurst: 1000}, // all 131 Syncs in one flush
	}, syncedSource{}, nil)
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	w := srv.workers[0]
	now := srv.servedNS()
	var peers []netip.Addr
	for i := range 130 {
		peers = append(peers, netip.AddrFrom4([4]byte{127, 0, 1, byte(i)}))
		if i == 40 {
			peers = append(peers, netip.MustParseAddr("fd00::2"))
		}
	}
	for i, a := range peers {
		id := protocol.PortIdentity{ClockIdentity: protocol.ClockIdentity(i + 1), PortNumber: 1}
		w.m.Step(now, engine.Input{Kind: engine.InputDatagram, Peer: peerOf(a), Datagram: syncRequest(id), RxNS: now})
	}
	srv.flush(context.Background(), w)
	if c := w.m.Counters(); c.Syncs != 131 || c.FollowUps != 130 || c.TxTimeouts != 1 {
		t.Fatalf("counters %+v, want 131 Syncs, 130 Follow_Ups, 1 stamp timeout", c)
	}
}

// generalReplies sends count Signaling requests, one after the other, to a
// grandmaster whose sockets have small (16 KB) buffers, and returns how
// many were answered.
func generalReplies(t *testing.T, count int) int {
	old := socketBuffer
	socketBuffer = 16 << 10
	defer func() { socketBuffer = old }()
	ev, gen := freePorts(t)
	srv := NewServer(ServerConfig{
		Listen: netip.MustParseAddr("127.0.0.1"), EventPort: ev, GeneralPort: gen, ClientEventPort: ev, ClientGeneralPort: gen,
		Timestamping: hwts.Software, Engine: engine.MasterConfig{Identity: 7},
	}, syncedSource{}, nil)
	defer serve(t, srv)()
	cg, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: int(gen)})
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), gen)
	buf := make([]byte, 512)
	answered := 0
	for i := range count {
		if _, err := cg.WriteToUDPAddrPort(syncRequest(protocol.PortIdentity{ClockIdentity: 5, PortNumber: uint16(i)}), dst); err != nil {
			t.Fatal(err)
		}
		_ = cg.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		for {
			n, _, err := cg.ReadFromUDPAddrPort(buf)
			if err != nil {
				return answered // no answer: the server stopped hearing us
			}
			if protocol.SdoIDAndMsgType(buf[0]).MsgType() == protocol.MessageSignaling && n > 0 {
				answered++
				break
			}
		}
	}
	return answered
}

// The general sockets carry no timestamping: a grandmaster keeps hearing
// its clients after hundreds of general messages sent. Negative control:
// with TX stamping on the general socket too (stampGeneral), the unread
// stamps fill its receive buffer and it goes deaf after a few dozen.
func TestGeneralSocketStaysOpen(t *testing.T) {
	if n := generalReplies(t, 400); n != 400 {
		t.Fatalf("%d of 400 requests answered", n)
	}
	stampGeneral = true
	defer func() { stampGeneral = false }()
	if n := generalReplies(t, 400); n == 400 {
		t.Fatal("with stamped general sockets every request was still answered: the control shows nothing")
	} else {
		t.Logf("negative control: %d of 400 answered with TX stamps piling up on the general socket", n)
	}
}
