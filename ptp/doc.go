// Package ptp is the socket shell of the PTP engines (ptp/engine): UDPv4
// and UDPv6 event (319) and general (320) sockets, software RX/TX stamps
// through SO_TIMESTAMPING (package hwts: hardware flags are tried first and
// fall back; hardware stamps are in the NIC's PHC time and are not used
// until the PHC clock exists), and the drivers that feed the engines.
//
// Client polls the configured PTP servers as one unicast client port and
// emits samples for the discipline (one engine for all servers, chosen by
// the BMCA, or one engine per server). Server is a unicast grandmaster: its
// clients are sharded over workers (SO_REUSEPORT sockets; a classic BPF
// program picks the worker by the client's address, so its event and
// general messages reach the one engine.Master holding its grants), each
// worker owning its engine and buffers and sending in batches (sendmmsg);
// transmit stamps of Syncs are read from the error queue with a
// configurable timeout.
//
// Bounds: a worker that falls behind — starved of CPU, or offered more
// than it can serve — sheds load and never queues it
// (TestServerStarvedMemoryBounded: 4000 clients against a worker that can
// afford ~1000 transmit stamps a second, heap growth under 4 MB; the
// shell as it was grew it by tens of MB in 4 s):
//   - one Ready carries at most the engine's MaxBurst (default 256)
//     scheduled Announces and Syncs; the rest go out with the next. A
//     client whose schedule slipped a whole period or more gets one Sync,
//     not a burst, and the skipped ones are counted
//     (meridian_ptp_server_syncs_shed_total, _announces_shed_total);
//   - a worker steps at most rxBurst (64) received datagrams before it
//     sends their replies, so no flush holds more than MaxBurst + rxBurst
//     datagrams of 512 bytes, plus the Follow_Ups of its Syncs;
//   - a flush is two rounds at most (a transmit-stamp report schedules
//     nothing), and the Syncs of a round share one TxTimeout for their
//     stamps: lost stamps cost one timeout, not one each
//     (TestServerLostStampsShareOneTimeout);
//   - readers hand datagrams over through 256 buffers; what the worker
//     does not read in time the kernel drops at the socket's receive
//     buffer, and those drops are counted (SO_MEMINFO,
//     meridian_ptp_server_rx_dropped_total);
//   - clients: MaxClients per worker, beyond which requests are refused.
//
// Time: software stamps are CLOCK_REALTIME; they are converted to the
// served or disciplined clock by their age (hwts.RxToClock, TxToClock), so
// receive stamps may be late and transmit stamps early, never the other
// way — which keeps the measured path delay an upper bound.
package ptp
