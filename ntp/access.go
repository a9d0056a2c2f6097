package ntp

import (
	"net/netip"
	"sort"
)

// Access is the NTP server's client access list, as chrony's allow and
// deny directives: the longest prefix that contains a client's address
// decides (an allow inside a deny, or the reverse, wins for its addresses);
// an address no prefix contains is served only when there is no allow
// prefix at all. IPv4-mapped IPv6 addresses count as IPv4.
type Access struct {
	rules   []rule // longest prefix first
	anyAllo bool
}

type rule struct {
	p     netip.Prefix
	allow bool
}

// NewAccess builds the list (prefixes already validated and masked). A
// prefix in both lists is denied.
func NewAccess(allow, deny []netip.Prefix) *Access {
	a := &Access{anyAllo: len(allow) > 0}
	for _, p := range deny {
		a.rules = append(a.rules, rule{p: p, allow: false})
	}
	for _, p := range allow {
		a.rules = append(a.rules, rule{p: p, allow: true})
	}
	// Longest first; at equal length deny first (stable: deny was added first).
	sort.SliceStable(a.rules, func(i, j int) bool { return a.rules[i].p.Bits() > a.rules[j].p.Bits() })
	return a
}

// Allowed reports whether addr may be served. It does not allocate.
func (a *Access) Allowed(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, r := range a.rules {
		if r.p.Contains(addr) {
			return r.allow
		}
	}
	return !a.anyAllo
}

// SetAccess installs the access list (nil: everyone is served). Safe while
// serving.
func (s *Server) SetAccess(a *Access) { s.access.Store(a) }
