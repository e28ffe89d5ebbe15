package uci

import (
	"fmt"
	"net/netip"
	"strings"
)

// InterfacePrefixes resolves an interface of /etc/config/network (for
// example "lan") into the prefixes its static addresses sit in: ipaddr
// with netmask, ipaddr in CIDR form (option or list), and ip6addr. An
// interface that gets its address from DHCP or SLAAC has no static
// prefix; that is an error, because a router cannot advertise a LAN it
// does not know.
func InterfacePrefixes(f *File, name string) ([]netip.Prefix, error) {
	var s *Section
	for _, sec := range f.OfType("interface") {
		if sec.Name == name {
			s = sec
		}
	}
	if s == nil {
		return nil, fmt.Errorf("%s: no interface %q (config interface '%s')", f.Path, name, name)
	}
	where := func(key string) string {
		if l, ok := s.Lines[key]; ok {
			return fmt.Sprintf("%s:%d", f.Path, l)
		}
		return fmt.Sprintf("%s:%d", f.Path, s.Line)
	}
	if p := s.Options["proto"]; p != "" && p != "static" {
		return nil, fmt.Errorf("%s: interface %q uses proto %q; only static addresses can be advertised: list the prefix itself instead", where("proto"), name, p)
	}
	var out []netip.Prefix
	mask := s.Options["netmask"]
	for _, v := range s.Values("ipaddr") {
		p, err := v4Prefix(v, mask)
		if err != nil {
			return nil, fmt.Errorf("%s: interface %q ipaddr: %v", where("ipaddr"), name, err)
		}
		out = append(out, p)
	}
	for _, v := range s.Values("ip6addr") {
		p, err := netip.ParsePrefix(v)
		if err != nil || !p.Addr().Is6() {
			return nil, fmt.Errorf("%s: interface %q ip6addr %q is not an IPv6 prefix like 2001:db8::1/64", where("ip6addr"), name, v)
		}
		out = append(out, p.Masked())
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: interface %q has no static ipaddr or ip6addr", where("ipaddr"), name)
	}
	return out, nil
}

func v4Prefix(v, netmask string) (netip.Prefix, error) {
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil || !p.Addr().Is4() {
			return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 address or prefix", v)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil || !a.Is4() {
		return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 address", v)
	}
	if netmask == "" {
		return netip.Prefix{}, fmt.Errorf("%q has no netmask and no /bits", v)
	}
	bits, err := maskBits(netmask)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}

// maskBits accepts a dotted netmask (255.255.255.0) or a bit count (24).
func maskBits(m string) (int, error) {
	var n int
	if _, err := fmt.Sscanf(m, "%d", &n); err == nil && !strings.Contains(m, ".") {
		if n < 0 || n > 32 {
			return 0, fmt.Errorf("netmask %q is not 0-32", m)
		}
		return n, nil
	}
	a, err := netip.ParseAddr(m)
	if err != nil || !a.Is4() {
		return 0, fmt.Errorf("netmask %q is not like 255.255.255.0", m)
	}
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	bits := 0
	for v&(1<<31) != 0 {
		bits++
		v <<= 1
	}
	if v != 0 {
		return 0, fmt.Errorf("netmask %q is not contiguous", m)
	}
	return bits, nil
}
