// Package ptpload is the unicast PTP load harness behind meridian-bench
// ptp-server and the benchmarks BenchmarkPTPGrandmasterLoad and
// BenchmarkPTPGrandmasterVsPtp4l (package interop): one generator, one
// way of counting what a grandmaster served and what it cost.
//
// Owns:
//   - Gen, a generator of N unicast clients, client i sending from its own
//     IPv4 address (base.(i+1)/256.(i+1)%256, IP_PKTINFO) through two
//     sockets on the PTP ports, in sendmmsg/recvmmsg batches of 64. It
//     negotiates Sync and Delay_Resp grants at 1/s for 300 s (200 clients
//     at a time), then sends each client's Delay_Req once a second (a
//     hundredth of the clients every 10 ms) for a fixed number of seconds,
//     counting what comes back by message type;
//   - Result, one run: grants, Syncs, Follow_Ups and Delay_Resps received,
//     the server's CPU time (utime+stime from /proc/PID/stat) and resident
//     set (VmRSS) before and after, and the figures derived from them:
//     served fractions, client-seconds per server CPU-second, CPU %;
//   - the servers' set-up in a network namespace pair (Netns, StartMeridiand,
//     StartPtp4l, StartFloor) and Floor, the kernel-floor responder: the
//     same datagrams a grandmaster sends, from recvmmsg/sendmmsg batches,
//     with no PTP logic, clock reads or transmit stamps.
//
// A client-second is one client served for one second: a Sync with its
// Follow_Up and a Delay_Resp. Served fractions are counts over
// clients × seconds; a Sync counts only with its Follow_Up.
//
// Must never: send anywhere but loopback or the namespaces it created; run
// a load without a bound in count and time; start a peer that can touch the
// host clock (ptp4l runs with free_running 1 under setpriv --bounding-set
// -sys_time); leave a process behind (every server has Pdeathsig SIGKILL
// and is killed by PID).
package ptpload
