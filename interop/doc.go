// Package interop holds tests that run Meridian against real peers (chronyd,
// chronyc, beevik/ntp). A test whose peer program is missing skips locally
// and fails under CI=true, where .ci/run installs the peers.
//
// Peers never touch the host clock: chronyd runs with -x and under
// `setpriv --bounding-set -sys_time`, all on loopback.
package interop
