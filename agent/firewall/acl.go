package firewall

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/lanmesh/lanmesh/internal/wire"
)

// maxElements bounds one set: a filter that decomposes into more is
// refused (the old table stays) rather than stalling the kernel.
const maxElements = 200_000

// hostScoped are destinations a route never carries traffic to unless a
// rule names them (S17): loopback, link-local (cloud metadata at
// 169.254.169.254) and their v4-mapped forms. coord trims them too; the
// node enforces it again because it is the one that forwards.
var hostScoped = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("::ffff:127.0.0.0/104"),
	netip.MustParsePrefix("::ffff:169.254.0.0/112"),
}

// Filter chains. Each gets its own sets so a rule admitted for the
// LAN behind the router never opens the router itself.
const (
	chainMeshIn    = iota // mesh -> this node (input hook)
	chainMeshToLAN        // mesh -> routed LAN (forward hook)
	chainLANToMesh        // routed LAN -> mesh (forward hook, S1)
	numChains
)

var chainNames = [numChains]string{"mesh_in", "mesh_to_lan", "lan_to_mesh"}

// element is one entry of a concatenated interval set:
// saddr . daddr . l4proto [. dport], every field a range.
type element struct {
	src, dst addrRange
	proto    uint8
	ports    portRange // ported sets only
}

// famElems are one chain's elements for one address family.
type famElems struct{ ported, portless []element }

// plan is what the kernel gets: per chain, per family (0: IPv4, 1: IPv6).
type plan [numChains][2]famElems

func (p *plan) count() int {
	n := 0
	for c := range p {
		for f := range p[c] {
			n += len(p[c][f].ported) + len(p[c][f].portless)
		}
	}
	return n
}

// nrule is a FilterRule as ranges, narrowed for one chain.
type nrule struct {
	src, dst []addrRange
	protos   []uint8
	ports    []portRange
}

// buildPlan turns cfg's filter into set elements. A nil filter yields
// empty sets: nothing new passes to or from the mesh (S14).
func buildPlan(cfg Config) (*plan, error) {
	var p plan
	if cfg.Filter == nil {
		return &p, nil
	}
	in, err := normalize("inbound", cfg.Filter.Inbound)
	if err != nil {
		return nil, err
	}
	fwd, err := normalize("forward", cfg.Filter.Forward)
	if err != nil {
		return nil, err
	}
	var mesh, routes, lans []addrRange
	for _, a := range cfg.Addresses {
		if !a.IsValid() {
			return nil, fmt.Errorf("firewall: invalid mesh address %v", a)
		}
		mesh = append(mesh, addrRange{a.Addr(), a.Addr()})
	}
	for _, r := range cfg.AdvertisedRoutes {
		if !r.IsValid() {
			return nil, fmt.Errorf("firewall: invalid advertised route %v", r)
		}
		routes = append(routes, prefixRange(r))
		if r.Bits() > 0 {
			// A default route makes an exit node: it opens the WAN to
			// the mesh, never the internet to the mesh.
			lans = append(lans, prefixRange(r))
		}
	}
	var rules [numChains][]nrule
	for _, r := range in {
		// Local delivery: only the node's mesh addresses, or a single
		// address a rule names. A rule for the routed LAN never opens
		// the router's own LAN or management address (S17).
		rules[chainMeshIn] = append(rules[chainMeshIn], narrowDst(r, func(d prefixDst) []addrRange {
			if d.p.IsSingleIP() {
				return []addrRange{d.r}
			}
			return clip(d.r, mesh)
		}))
		rules[chainMeshToLAN] = append(rules[chainMeshToLAN], narrowDst(r, func(d prefixDst) []addrRange {
			return trimHostScoped(d, clip(d.r, routes))
		}))
	}
	for _, r := range fwd {
		// S1: only the LANs this node routes may send into the mesh.
		var src []addrRange
		for _, s := range r.src {
			src = append(src, clip(s, lans)...)
		}
		r.src = mergeRanges(src)
		rules[chainLANToMesh] = append(rules[chainLANToMesh], narrowDst(r, func(d prefixDst) []addrRange {
			return trimHostScoped(d, []addrRange{d.r})
		}))
	}
	for c := range rules {
		for f, is4 := range []bool{true, false} {
			e, err := decompose(rules[c], is4)
			if err != nil {
				return nil, fmt.Errorf("firewall: chain %s: %w", chainNames[c], err)
			}
			p[c][f] = e
		}
	}
	return &p, nil
}

// prefixDst is one destination prefix of a rule and its range.
type prefixDst struct {
	p netip.Prefix
	r addrRange
}

type nruleSrc struct {
	nrule
	dsts []prefixDst
}

// normalize validates rules and converts them to ranges. Destinations
// stay prefixes until narrowed, because "named" (S17) is per prefix.
func normalize(kind string, rules []wire.FilterRule) ([]nruleSrc, error) {
	out := make([]nruleSrc, 0, len(rules))
	for i, r := range rules {
		var n nruleSrc
		for _, s := range r.Src {
			if !s.IsValid() {
				return nil, fmt.Errorf("firewall: %s rule %d: invalid source prefix %v", kind, i, s)
			}
			n.src = append(n.src, prefixRange(s))
		}
		for _, d := range r.Dst {
			if !d.IsValid() {
				return nil, fmt.Errorf("firewall: %s rule %d: invalid destination prefix %v", kind, i, d)
			}
			n.dsts = append(n.dsts, prefixDst{d.Masked(), prefixRange(d)})
		}
		for _, pr := range r.Ports {
			if pr.First > pr.Last {
				return nil, fmt.Errorf("firewall: %s rule %d: port range %d-%d runs backwards", kind, i, pr.First, pr.Last)
			}
			n.ports = append(n.ports, portRange{pr.First, pr.Last})
		}
		n.src = mergeRanges(n.src)
		n.ports = mergePorts(n.ports)
		n.protos = slices.Compact(slices.Sorted(slices.Values(r.Protos)))
		out = append(out, n)
	}
	return out, nil
}

func narrowDst(r nruleSrc, f func(prefixDst) []addrRange) nrule {
	n := r.nrule
	n.dst = nil
	for _, d := range r.dsts {
		n.dst = append(n.dst, f(d)...)
	}
	n.dst = mergeRanges(n.dst)
	return n
}

// clip returns the parts of r inside any of within.
func clip(r addrRange, within []addrRange) []addrRange {
	var out []addrRange
	for _, w := range within {
		if x, ok := intersect(r, w); ok {
			out = append(out, x)
		}
	}
	return out
}

// trimHostScoped removes host-scoped ranges from rs unless the rule's
// prefix lies inside one: then the policy named it on purpose (S17).
func trimHostScoped(d prefixDst, rs []addrRange) []addrRange {
	for _, h := range hostScoped {
		if h.Contains(d.p.Addr()) && h.Bits() <= d.p.Bits() {
			return rs
		}
	}
	for _, h := range hostScoped {
		hr := prefixRange(h)
		var next []addrRange
		for _, r := range rs {
			next = append(next, subtract(r, hr)...)
		}
		rs = next
	}
	return rs
}

// decompose turns possibly overlapping rules into disjoint set
// elements. nftables' concatenated interval sets (pipapo) refuse
// overlapping entries, so sources are cut into elementary intervals,
// grouped by the set of rules that cover them; each group's
// destinations are cut the same way and its ports merged per protocol.
// Typical filters stay near one element per (source run, destination,
// protocol, port range): IPAM hands out addresses in order, so peers
// with the same rights form runs.
func decompose(rules []nrule, is4 bool) (famElems, error) {
	var out famElems
	fam := func(rs []addrRange) []addrRange {
		var o []addrRange
		for _, r := range rs {
			if r.from.Is4() == is4 {
				o = append(o, r)
			}
		}
		return o
	}
	type frule struct {
		src, dst []addrRange
		protos   []uint8
		ports    []portRange
	}
	var rs []frule
	for _, r := range rules {
		f := frule{src: fam(r.src), dst: fam(r.dst), protos: r.protos, ports: r.ports}
		if len(f.src) > 0 && len(f.dst) > 0 && len(f.protos) > 0 {
			rs = append(rs, f)
		}
	}
	if len(rs) == 0 {
		return out, nil
	}
	srcs := make([][]addrRange, len(rs))
	for i := range rs {
		srcs[i] = rs[i].src
	}
	groups := sweep(srcs)
	for _, g := range groups {
		// Destinations of the rules covering this source group.
		dsts := make([][]addrRange, len(g.members))
		for i, m := range g.members {
			dsts[i] = rs[m].dst
		}
		for _, dg := range sweep(dsts) {
			ported := map[uint8][]portRange{}
			portless := map[uint8]bool{}
			for _, i := range dg.members {
				r := rs[g.members[i]]
				for _, proto := range r.protos {
					if wire.HasPorts(proto) {
						ported[proto] = append(ported[proto], r.ports...)
					} else {
						portless[proto] = true
					}
				}
			}
			for _, proto := range slices.Sorted(mapsKeys(ported)) {
				for _, pr := range mergePorts(ported[proto]) {
					for _, s := range g.ranges {
						for _, d := range dg.ranges {
							out.ported = append(out.ported, element{s, d, proto, pr})
						}
					}
				}
			}
			for _, proto := range slices.Sorted(mapsKeys(portless)) {
				for _, s := range g.ranges {
					for _, d := range dg.ranges {
						out.portless = append(out.portless, element{src: s, dst: d, proto: proto})
					}
				}
			}
			if len(out.ported)+len(out.portless) > maxElements {
				return out, fmt.Errorf("filter needs more than %d set elements", maxElements)
			}
		}
	}
	return out, nil
}

func mapsKeys[V any](m map[uint8]V) func(func(uint8) bool) {
	return func(yield func(uint8) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// group is a set of addresses covered by exactly the same members.
type group struct {
	members []int // indexes into the sweep's input
	ranges  []addrRange
}

// sweep partitions the union of sets (each a merged list of ranges)
// into groups of addresses covered by the same members.
func sweep(sets [][]addrRange) []group {
	type event struct {
		at    netip.Addr
		set   int
		delta int
	}
	var evs []event
	for i, rs := range sets {
		for _, r := range rs {
			evs = append(evs, event{r.from, i, 1})
			if n := r.to.Next(); n.IsValid() {
				evs = append(evs, event{n, i, -1})
			}
		}
	}
	slices.SortFunc(evs, func(a, b event) int { return a.at.Compare(b.at) })
	active := make([]int, len(sets))
	nActive := 0
	index := map[string]int{}
	var groups []group
	lastGroup := -1 // group of the previous elementary interval, to join runs
	for i := 0; i < len(evs); {
		at := evs[i].at
		for ; i < len(evs) && evs[i].at == at; i++ {
			e := evs[i]
			if e.delta > 0 {
				if active[e.set] == 0 {
					nActive++
				}
			} else if active[e.set] == 1 {
				nActive--
			}
			active[e.set] += e.delta
		}
		if nActive == 0 {
			lastGroup = -1
			continue
		}
		to := maxAddr(at.Is4())
		if i < len(evs) {
			to = evs[i].at.Prev()
		}
		var key strings.Builder
		var members []int
		for s, n := range active {
			if n > 0 {
				members = append(members, s)
				fmt.Fprintf(&key, "%d,", s)
			}
		}
		gi, ok := index[key.String()]
		if !ok {
			gi = len(groups)
			index[key.String()] = gi
			groups = append(groups, group{members: members})
		}
		g := &groups[gi]
		if gi == lastGroup && len(g.ranges) > 0 {
			g.ranges[len(g.ranges)-1].to = to
		} else {
			g.ranges = append(g.ranges, addrRange{at, to})
		}
		lastGroup = gi
	}
	return groups
}

func maxAddr(is4 bool) netip.Addr {
	if is4 {
		return netip.AddrFrom4([4]byte{255, 255, 255, 255})
	}
	var b [16]byte
	for i := range b {
		b[i] = 0xff
	}
	return netip.AddrFrom16(b)
}
