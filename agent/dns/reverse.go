package dns

import (
	"net/netip"
	"strconv"
	"strings"
)

// parseReverse reads a canonical FQDN under in-addr.arpa. or ip6.arpa.
// It returns the prefix spelled by the longest valid run of labels next
// to the suffix, and whether that run is the whole name (clean). A clean
// name of full length is one address. ok is false for names outside the
// two reverse trees.
//
// Names with junk in front ("x.1.64.100.in-addr.arpa.") still yield the
// prefix they sit under, so they can be kept local rather than forwarded.
func parseReverse(name string) (p netip.Prefix, clean, ok bool) {
	switch {
	case strings.HasSuffix(name, ".in-addr.arpa.") || name == "in-addr.arpa.":
		labels := splitLabels(strings.TrimSuffix(name, "in-addr.arpa."))
		var b [4]byte
		n := 0
		for i := len(labels) - 1; i >= 0 && n < 4; i-- {
			v, err := strconv.ParseUint(labels[i], 10, 8)
			if err != nil || (len(labels[i]) > 1 && labels[i][0] == '0') {
				break
			}
			b[n] = byte(v)
			n++
		}
		pfx := netip.PrefixFrom(netip.AddrFrom4(b), 8*n)
		return pfx, n == len(labels), true
	case strings.HasSuffix(name, ".ip6.arpa.") || name == "ip6.arpa.":
		labels := splitLabels(strings.TrimSuffix(name, "ip6.arpa."))
		var b [16]byte
		n := 0
		for i := len(labels) - 1; i >= 0 && n < 32; i-- {
			l := labels[i]
			if len(l) != 1 {
				break
			}
			v, err := strconv.ParseUint(l, 16, 8)
			if err != nil {
				break
			}
			if n%2 == 0 {
				b[n/2] = byte(v) << 4
			} else {
				b[n/2] |= byte(v)
			}
			n++
		}
		pfx := netip.PrefixFrom(netip.AddrFrom16(b), 4*n)
		return pfx, n == len(labels), true
	}
	return netip.Prefix{}, false, false
}

// splitLabels splits "a.b.c." into labels; "" gives none.
func splitLabels(s string) []string {
	s = strings.TrimSuffix(s, ".")
	if s == "" {
		return nil
	}
	return strings.Split(s, ".")
}

// meshReverse reports whether a reverse name lies inside one of the mesh
// ranges, and returns the reverse zone to name in the SOA of a negative
// answer (the range rounded out to a label boundary).
func meshReverse(p netip.Prefix, ranges []netip.Prefix) (zone string, ok bool) {
	for _, r := range ranges {
		if p.Addr().Is4() != r.Addr().Is4() || p.Bits() < r.Bits() || !r.Contains(p.Addr()) {
			continue
		}
		step := 8
		if r.Addr().Is6() {
			step = 4
		}
		bits := (r.Bits() + step - 1) / step * step
		return reverseName(netip.PrefixFrom(p.Addr(), bits).Masked()), true
	}
	return "", false
}

// reverseName is the reverse-tree name of a label-aligned prefix.
func reverseName(p netip.Prefix) string {
	var sb strings.Builder
	if p.Addr().Is4() {
		b := p.Addr().As4()
		for i := p.Bits()/8 - 1; i >= 0; i-- {
			sb.WriteString(strconv.Itoa(int(b[i])))
			sb.WriteByte('.')
		}
		sb.WriteString("in-addr.arpa.")
		return sb.String()
	}
	b := p.Addr().As16()
	const hex = "0123456789abcdef"
	for i := p.Bits()/4 - 1; i >= 0; i-- {
		nib := b[i/2] >> 4
		if i%2 == 1 {
			nib = b[i/2] & 0xf
		}
		sb.WriteByte(hex[nib])
		sb.WriteByte('.')
	}
	sb.WriteString("ip6.arpa.")
	return sb.String()
}
