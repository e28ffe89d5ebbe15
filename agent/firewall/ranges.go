package firewall

import (
	"cmp"
	"net/netip"
	"slices"
)

// addrRange is an inclusive range of addresses of one family. nftables
// interval sets hold ranges, not prefixes, and subtracting host-scoped
// ranges (S17) leaves ranges that are no prefix.
type addrRange struct{ from, to netip.Addr }

func (r addrRange) contains(a netip.Addr) bool {
	return r.from.Compare(a) <= 0 && a.Compare(r.to) <= 0
}

func prefixRange(p netip.Prefix) addrRange {
	p = p.Masked()
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	last, _ := netip.AddrFromSlice(b)
	return addrRange{p.Addr(), last}
}

// intersect returns the overlap of a and b.
func intersect(a, b addrRange) (addrRange, bool) {
	if a.from.Is4() != b.from.Is4() {
		return addrRange{}, false
	}
	from, to := a.from, a.to
	if b.from.Compare(from) > 0 {
		from = b.from
	}
	if b.to.Compare(to) < 0 {
		to = b.to
	}
	if from.Compare(to) > 0 {
		return addrRange{}, false
	}
	return addrRange{from, to}, true
}

// subtract removes h from r: zero, one or two ranges remain.
func subtract(r, h addrRange) []addrRange {
	if _, ok := intersect(r, h); !ok {
		return []addrRange{r}
	}
	var out []addrRange
	if r.from.Compare(h.from) < 0 {
		out = append(out, addrRange{r.from, h.from.Prev()})
	}
	if h.to.Compare(r.to) < 0 {
		out = append(out, addrRange{h.to.Next(), r.to})
	}
	return out
}

// mergeRanges sorts rs and joins overlapping and adjacent ranges.
func mergeRanges(rs []addrRange) []addrRange {
	if len(rs) < 2 {
		return rs
	}
	slices.SortFunc(rs, func(a, b addrRange) int { return a.from.Compare(b.from) })
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		// Never merge across families: 255.255.255.255 has no Next, and
		// without this check 0.0.0.0/0 swallowed ::/0.
		if r.from.Is4() != last.to.Is4() {
			out = append(out, r)
			continue
		}
		if next := last.to.Next(); next.IsValid() && r.from.Compare(next) > 0 {
			out = append(out, r)
			continue
		}
		if r.to.Compare(last.to) > 0 {
			last.to = r.to
		}
	}
	return out
}

// portRange is an inclusive range of ports.
type portRange struct{ first, last uint16 }

func mergePorts(ps []portRange) []portRange {
	if len(ps) < 2 {
		return ps
	}
	slices.SortFunc(ps, func(a, b portRange) int { return cmp.Compare(a.first, b.first) })
	out := ps[:1]
	for _, p := range ps[1:] {
		last := &out[len(out)-1]
		if last.last != 65535 && int(p.first) > int(last.last)+1 {
			out = append(out, p)
			continue
		}
		if p.last > last.last {
			last.last = p.last
		}
	}
	return out
}
