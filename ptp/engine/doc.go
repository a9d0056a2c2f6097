// Package engine is PTPv2 (IEEE 1588-2019) unicast over UDP as two pure
// state machines in the shape of etcd's raft, like ntp/engine: the driver
// feeds Step(now, input) with a timer tick, a received datagram and its
// receive stamp, a transmit-stamp report or (grandmaster) the TrueTime
// status; reads Ready (datagrams to send, samples for the discipline, the
// next deadline); does it; calls Advance. meridiand drives the engines from
// sockets (package ptp), the simulator from simulated links with known
// true time.
//
// Client is a unicast client port: it asks every configured server for
// Announce (REQUEST_UNICAST_TRANSMISSION), qualifies them on their
// Announces, picks the master by the BMCA (Compare), asks that one for
// Sync and Delay_Resp, renews every grant at ¾ of its duration, treats a
// zero duration as a refusal (retries with a backoff doubling to 64 s;
// an unanswered request is retried sooner, doubling to 8 s), cancels the old
// master's grants when the choice changes and acknowledges a master's
// CANCEL. It measures two-step Sync/Follow_Up and E2E Delay_Req/Delay_Resp
// with the correction fields applied, sending each Delay_Req right behind a
// complete Sync and pairing the two (a Delay_Req sent between Syncs would
// leave up to a Sync interval between them, over which the local clock's
// rate error shows up as path delay), tolerates sequence gaps, keeps one
// PortIdentity, converts a PTP (TAI) timescale to UTC with
// currentUtcOffset (ARB is taken as is), and emits discipline.Samples
// (see Client.pair for the t1..t4 mapping).
//
// Master is a unicast grandmaster port: grants within limits (min and max
// interval, max duration, max clients; a refusal is a zero duration),
// Announce and Sync/Follow_Up at the granted rates, Delay_Resp for every
// Delay_Req, clockClass 6/7/248 from the TrueTime status, clockAccuracy and
// offsetScaledLogVariance from ε. A Ready carries at most MaxBurst
// scheduled sends; a client whose schedule slipped a whole period gets one
// send, not a burst, and the skipped ones are counted as shed; a
// transmit-stamp report releases its Follow_Up and schedules nothing.
//
// Wire format: facebook/time's ptp/protocol types marshal and unmarshal
// every message and TLV; messageLength is set here (the library leaves it
// to the caller). Signaling TLVs are walked here so that an unknown TLV is
// skipped and counted instead of discarding the message.
//
// Must never: read a clock, sleep, start goroutines or open sockets
// (internal/archtest checks it, through its imports too). Malformed,
// wrong-version and wrong-domain input is dropped and counted, never a
// panic (the fuzz targets check it).
package engine
