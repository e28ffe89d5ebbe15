package daemon

import (
	"net"
	"net/netip"
	"strings"
)

// localEndpoints lists this host's endpoint candidates for peers: every
// global or private unicast address on the non-loopback interfaces that
// are not the mesh interface, with the WireGuard port.
func localEndpoints(port uint16, meshIf string, mesh []netip.Prefix) []netip.AddrPort {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []netip.AddrPort
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagLoopback != 0 || isMeshIf(ifi.Name, meshIf) {
			continue
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			if ep, ok := endpointFor(ip.Unmap(), port, mesh); ok {
				out = append(out, ep)
			}
		}
	}
	return out
}

// isMeshIf reports whether name is a mesh interface (ours, or another
// lanmesh instance's): its addresses are no endpoints.
func isMeshIf(name, meshIf string) bool {
	return name == meshIf || strings.HasPrefix(name, "lanmesh")
}

// endpointFor keeps addresses peers could reach: no loopback, link-local,
// multicast, or mesh addresses (those are ours inside the tunnel).
func endpointFor(ip netip.Addr, port uint16, mesh []netip.Prefix) (netip.AddrPort, bool) {
	if !ip.IsGlobalUnicast() || ip.IsLinkLocalUnicast() {
		return netip.AddrPort{}, false
	}
	for _, p := range mesh {
		if p.Contains(ip) {
			return netip.AddrPort{}, false
		}
	}
	return netip.AddrPortFrom(ip, port), true
}

// meshPrefixes are the ranges of mesh addresses: the IPv4 range and the
// /48 of each of self's IPv6 addresses (coord picks a random ULA /48).
func meshPrefixes(self []netip.Prefix) []netip.Prefix {
	out := []netip.Prefix{meshRange}
	for _, a := range self {
		if a.Addr().Is6() {
			out = append(out, netip.PrefixFrom(a.Addr(), 48).Masked())
		}
	}
	return out
}
