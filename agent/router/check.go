package router

import (
	"fmt"
	"net/netip"
)

// hostScoped are ranges a mesh route must never capture (S17): loopback
// and link-local (which holds cloud metadata, 169.254.169.254).
var hostScoped = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fe80::/10"),
}

// CheckRoute reports why p may not be routed into the mesh, or nil. A
// default route is allowed only when allowDefault (exit nodes).
func CheckRoute(p netip.Prefix, allowDefault bool) error {
	if !p.IsValid() {
		return fmt.Errorf("route %v: invalid prefix", p)
	}
	p = p.Masked()
	if p.Addr().Is4In6() {
		return fmt.Errorf("route %v: IPv4-mapped IPv6 prefix; use the IPv4 form", p)
	}
	if p.Bits() == 0 {
		if !allowDefault {
			return fmt.Errorf("route %v: default route refused (exit nodes are not enabled)", p)
		}
		return nil
	}
	for _, h := range hostScoped {
		if p.Overlaps(h) {
			return fmt.Errorf("route %v: covers host-scoped range %v", p, h)
		}
	}
	return nil
}
