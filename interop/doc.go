// Package interop holds tests that run Meridian against real peers (chronyd,
// chronyc, beevik/ntp, ntpdig). A test whose peer program is missing skips
// locally and fails under CI=true, where .ci/run installs the peers.
//
// Peers never touch the host clock: chronyd runs with -x and under
// `setpriv --bounding-set -sys_time`. Traffic stays on loopback or inside
// network namespaces the tests create (impair.NewVethPair, or
// impair.NewPair for the impairment wire), deleted when each test ends.
//
// accuracy_test.go is the side by side of issue 15: our NTP client and
// `chronyd -x` through the same impaired paths, judged against the host
// clock (`make accuracy`).
package interop
