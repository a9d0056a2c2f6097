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
// Time: software stamps are CLOCK_REALTIME; they are converted to the
// served or disciplined clock by their age (hwts.RxToClock, TxToClock), so
// receive stamps may be late and transmit stamps early, never the other
// way — which keeps the measured path delay an upper bound.
package ptp
