// Package addr parses Meridian's gRPC addresses, shared by the daemon's
// configuration, the server and the client without pulling either in.
package addr

import (
	"fmt"
	"net"
	"strings"
)

// Parse splits a gRPC listen or dial address: "unix:///abs/path"
// or "host:port" (TCP).
func Parse(addr string) (network, address string, err error) {
	switch {
	case strings.HasPrefix(addr, "unix://"):
		p := strings.TrimPrefix(addr, "unix://")
		if !strings.HasPrefix(p, "/") {
			return "", "", fmt.Errorf("%q: a unix socket needs an absolute path (unix:///run/meridian/grpc.sock)", addr)
		}
		return "unix", p, nil
	case strings.HasPrefix(addr, "unix:"):
		return "", "", fmt.Errorf("%q: write unix sockets as unix:///absolute/path", addr)
	default:
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return "", "", fmt.Errorf("%q: want unix:///path or host:port", addr)
		}
		return "tcp", addr, nil
	}
}
