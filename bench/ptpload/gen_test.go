package ptpload

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/facebook/time/ptp/protocol"
)

// grantMsg is a Signaling message with the given grants, encoded by
// facebook/time (independent of countGrants), messageLength set.
func grantMsg(t testing.TB, grants ...protocol.GrantUnicastTransmissionTLV) []byte {
	t.Helper()
	sig := protocol.Signaling{
		Header: protocol.Header{SdoIDAndMsgType: protocol.NewSdoIDAndMsgType(protocol.MessageSignaling, 0), Version: 2,
			FlagField: protocol.FlagUnicast, SourcePortIdentity: protocol.PortIdentity{ClockIdentity: 7, PortNumber: 1}},
		TargetPortIdentity: protocol.DefaultTargetPortIdentity,
	}
	for i := range grants {
		grants[i].TLVHead = protocol.TLVHead{TLVType: protocol.TLVGrantUnicastTransmission, LengthField: 8}
		sig.TLVs = append(sig.TLVs, &grants[i])
	}
	b := make([]byte, 512)
	n, err := sig.MarshalBinaryTo(b)
	if err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint16(b[2:], uint16(n))
	return b[:n]
}

func grant(typ protocol.MessageType, duration uint32) protocol.GrantUnicastTransmissionTLV {
	return protocol.GrantUnicastTransmissionTLV{MsgTypeAndReserved: protocol.NewUnicastMsgTypeAndFlags(typ, 0), DurationField: duration}
}

// Grants as facebook/time encodes them are counted by message type, and a
// duration of 0 (a refusal, IEEE 1588-2019 16.1.4.2) is not a grant.
func TestCountGrants(t *testing.T) {
	g := &Gen{}
	g.countGrants(grantMsg(t, grant(protocol.MessageSync, 300), grant(protocol.MessageDelayResp, 300)))
	g.countGrants(grantMsg(t, grant(protocol.MessageAnnounce, 60), grant(protocol.MessageSync, 0)))
	// A request (type 4) is not a grant.
	req := grantMsg(t, grant(protocol.MessageSync, 300))
	binary.BigEndian.PutUint16(req[44:], uint16(protocol.TLVRequestUnicastTransmission))
	g.countGrants(req)
	// A TLV cut short is not counted.
	full := grantMsg(t, grant(protocol.MessageDelayResp, 300))
	g.countGrants(full[:len(full)-1])
	if g.granted[protocol.MessageSync] != 1 || g.granted[protocol.MessageDelayResp] != 1 || g.granted[protocol.MessageAnnounce] != 1 || g.grantsRejected != 1 {
		t.Fatalf("granted %v, refusals %d: want one Sync, one Delay_Resp, one Announce grant and one refusal", g.granted, g.grantsRejected)
	}
}

func countAll(m []byte) (grants, refusals int) {
	g := &Gen{}
	g.countGrants(m)
	for _, v := range g.granted {
		grants += v
	}
	return grants, g.grantsRejected
}

// FuzzCountGrants: countGrants never reads past the message, counts at
// most one grant per 12 bytes of TLVs, never counts more in a prefix than
// in the whole message, and agrees with facebook/time's decoder on
// messages that decoder accepts.
func FuzzCountGrants(f *testing.F) {
	f.Add(grantMsg(f, grant(protocol.MessageSync, 300), grant(protocol.MessageDelayResp, 0)))
	f.Add(grantMsg(f, grant(protocol.MessageAnnounce, 60))[:44])
	f.Add([]byte{0x0c, 0x02, 0, 10})
	f.Fuzz(func(t *testing.T, m []byte) {
		grants, refusals := countAll(m)
		if limit := max(0, len(m)-44) / 12; grants+refusals > limit {
			t.Fatalf("%d grants and %d refusals in %d bytes: at most %d fit", grants, refusals, len(m), limit)
		}
		for k := range len(m) {
			pg, pr := countAll(m[:k])
			if pg > grants || pr > refusals {
				t.Fatalf("prefix of %d bytes: %d grants, %d refusals; the whole message: %d, %d", k, pg, pr, grants, refusals)
			}
		}
		var sig protocol.Signaling
		if len(m) < 44 || int(binary.BigEndian.Uint16(m[2:])) != len(m) || sig.UnmarshalBinary(m) != nil {
			return
		}
		want := [2]int{}
		for _, tlv := range sig.TLVs {
			if gt, ok := tlv.(*protocol.GrantUnicastTransmissionTLV); ok {
				if gt.DurationField > 0 {
					want[0]++
				} else {
					want[1]++
				}
			}
		}
		if want != [2]int{grants, refusals} {
			t.Fatalf("counted %d grants, %d refusals; facebook/time decodes %d, %d", grants, refusals, want[0], want[1])
		}
	})
}

func TestDerive(t *testing.T) {
	r := Result{Clients: 100, Seconds: 10, Syncs: 1000, FollowUps: 990, DelayResps: 500, CPUSeconds: 0.5, ElapsedS: 10}
	r.Derive()
	want := Result{SyncServed: 0.99, DelayRespServed: 0.5, ClientSecondsPerCPUSecond: 1000, RepliesPerCPUSecond: 4980, CPUPercent: 5}
	for name, v := range map[string][2]float64{
		"SyncServed":                {r.SyncServed, want.SyncServed},
		"DelayRespServed":           {r.DelayRespServed, want.DelayRespServed},
		"ClientSecondsPerCPUSecond": {r.ClientSecondsPerCPUSecond, want.ClientSecondsPerCPUSecond},
		"RepliesPerCPUSecond":       {r.RepliesPerCPUSecond, want.RepliesPerCPUSecond},
		"CPUPercent":                {r.CPUPercent, want.CPUPercent},
	} {
		if math.Abs(v[0]-v[1]) > 1e-9 {
			t.Errorf("%s = %v, want %v", name, v[0], v[1])
		}
	}
	zero := Result{Clients: 10, Seconds: 1, Syncs: 5}
	zero.Derive() // no CPU time measured: no division by zero
	if zero.ClientSecondsPerCPUSecond != 0 || zero.RepliesPerCPUSecond != 0 || zero.CPUPercent != 0 {
		t.Fatalf("with no CPU time: %+v", zero)
	}
}

// RSSKB of this process lies between what getrusage says it has touched
// at most (ru_maxrss, kB) and zero; a missing process is an error naming
// its file.
func TestRSSKB(t *testing.T) {
	kb, err := RSSKB(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	if kb <= 0 || kb > ru.Maxrss {
		t.Fatalf("VmRSS %d kB, ru_maxrss %d kB: want 0 < VmRSS ≤ maxrss", kb, ru.Maxrss)
	}
	if _, err := RSSKB(1 << 30); err == nil || !strings.Contains(err.Error(), "/proc/1073741824/status") {
		t.Fatalf("a missing process: %v", err)
	}
}

func TestBadInputNamed(t *testing.T) {
	for _, c := range []struct {
		g       Gen
		seconds int
		want    string
	}{
		{Gen{Clients: 0}, 1, "clients = 0"},
		{Gen{Clients: MaxClients + 1}, 1, "clients = 65001"},
		{Gen{Clients: 1}, 0, "seconds = 0"},
		{Gen{Clients: 1}, 1, "want IPv4"},
	} {
		if _, err := c.g.Run(context.Background(), os.Getpid(), c.seconds); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v for %d s: %v, want an error with %q", c.g, c.seconds, err, c.want)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"127.0.0.1"}, "1 arguments, want 5"},
		{[]string{"::1", "1", "2", "3", "4"}, `ADDR "::1"`},
		{[]string{"127.0.0.1", "1", "70000", "3", "4"}, `GENERAL_PORT "70000"`},
	} {
		if err := Floor(c.args); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Floor(%q): %v, want an error with %q", c.args, err, c.want)
		}
	}
	if _, err := Measure(context.Background(), Spec{Server: "chronyd", Clients: 1, Seconds: 1, Loopback: true}); err == nil || !strings.Contains(err.Error(), `server "chronyd"`) {
		t.Errorf("Measure of an unknown server: %v", err)
	}
}
