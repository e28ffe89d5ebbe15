package policy

import (
	"net/netip"
	"slices"
)

// hostScoped are ranges a route must never carry traffic to unless the
// policy names them (security class S17): loopback and link-local,
// including cloud metadata at 169.254.169.254.
var hostScoped = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("::ffff:127.0.0.0/104"),
	netip.MustParsePrefix("::ffff:169.254.0.0/112"),
}

// notInternet are left out of autogroup:internet: the mesh itself,
// private LANs (reach those through their subnet routes) and hostScoped.
var notInternet = append([]netip.Prefix{
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("ff00::/8"),
}, hostScoped...)

var (
	internet4 = subtractAll(netip.MustParsePrefix("0.0.0.0/0"), notInternet)
	internet6 = subtractAll(netip.MustParsePrefix("::/0"), notInternet)
)

// intersect returns the overlap of a and b, which for prefixes is the
// more specific one when they overlap.
func intersect(a, b netip.Prefix) (netip.Prefix, bool) {
	if !a.Overlaps(b) {
		return netip.Prefix{}, false
	}
	if a.Bits() >= b.Bits() {
		return a, true
	}
	return b, true
}

// subtract returns p without h, as a list of prefixes.
func subtract(p, h netip.Prefix) []netip.Prefix {
	if !p.Overlaps(h) {
		return []netip.Prefix{p}
	}
	if h.Bits() <= p.Bits() {
		return nil // h covers p
	}
	lo, hi := halves(p)
	return append(subtract(lo, h), subtract(hi, h)...)
}

func subtractAll(p netip.Prefix, hs []netip.Prefix) []netip.Prefix {
	out := []netip.Prefix{p}
	for _, h := range hs {
		var next []netip.Prefix
		for _, q := range out {
			next = append(next, subtract(q, h)...)
		}
		out = next
	}
	return out
}

// halves splits p into its two sub-prefixes one bit longer.
func halves(p netip.Prefix) (netip.Prefix, netip.Prefix) {
	bits := p.Bits() + 1
	lo := netip.PrefixFrom(p.Addr(), bits)
	b := p.Addr().AsSlice()
	i := p.Bits()
	b[i/8] |= 0x80 >> (i % 8)
	a, _ := netip.AddrFromSlice(b)
	return lo, netip.PrefixFrom(a, bits)
}

// trimHostScoped removes hostScoped ranges from a destination reached
// through a route, unless the policy named a prefix inside one of them
// (named is what the policy wrote).
func trimHostScoped(p, named netip.Prefix) []netip.Prefix {
	var hs []netip.Prefix
	for _, h := range hostScoped {
		if named.IsValid() && named.Bits() >= h.Bits() && h.Contains(named.Addr()) {
			continue // explicitly named
		}
		if p.Overlaps(h) {
			hs = append(hs, h)
		}
	}
	if len(hs) == 0 {
		return []netip.Prefix{p}
	}
	return subtractAll(p, hs)
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// normalize sorts ps and drops duplicates and prefixes covered by
// another, so equal sets have equal slices.
func normalize(ps []netip.Prefix) []netip.Prefix {
	if len(ps) < 2 {
		return ps
	}
	slices.SortFunc(ps, comparePrefix)
	out := ps[:1]
	for _, p := range ps[1:] {
		last := out[len(out)-1]
		if last.Bits() <= p.Bits() && last.Contains(p.Addr()) {
			continue // sorted by address, so a covering prefix comes first
		}
		out = append(out, p)
	}
	return out
}

func overlapsAny(p netip.Prefix, list []netip.Prefix) bool {
	for _, q := range list {
		if p.Overlaps(q) {
			return true
		}
	}
	return false
}
