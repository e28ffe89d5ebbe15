package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"slices"
	"strings"

	"github.com/lanmesh/lanmesh/internal/wire"
)

var (
	allIPv4 = netip.MustParsePrefix("0.0.0.0/0")
	allIPv6 = netip.MustParsePrefix("::/0")
)

type unitKind uint8

const (
	unitPlain unitKind = iota
	unitSelf           // autogroup:self: src and dst are one user's devices
	unitOwner          // default policy: one owner's devices and their LANs
)

// unit is one (rule, dst entry) pair, the grain of compiling.
type unit struct {
	acl      int // index in Policy.ACLs; -1 for the default policy
	kind     unitKind
	srcStar  bool
	srcIdent []selector
	srcLit   []netip.Prefix
	dst      dstEntry
	protos   []uint8
	via      []selector // routers that may admit routed traffic; nil: any

	src       []netip.Prefix // unitPlain: shared by every node's rule
	srcM      bitset         // nodes that may send (their addresses or LANs are in src)
	dstM      bitset         // nodes that may receive
	globalDst []netip.Prefix // unitPlain: every node's dst, for routers' Forward

	ownerSrc map[string][]netip.Prefix // unitSelf/unitOwner: per owner
	ownerDst map[string][]netip.Prefix
}

// units expands the policy into units; a nil policy is the default.
func (p *Policy) units() []*unit {
	if p == nil {
		return []*unit{{
			acl: -1, kind: unitOwner,
			dst:    dstEntry{sel: selector{kind: selOwner, name: "(default: own devices)"}, ports: []wire.PortRange{wire.AllPorts}},
			protos: defaultProtos,
		}}
	}
	var out []*unit
	for i, a := range p.rules() {
		if a.posture {
			continue // no lanmesh node shows a posture: admits no one
		}
		var star bool
		var ident []selector
		var lit []netip.Prefix
		for _, s := range a.src {
			switch {
			case s.kind == selAll:
				star = true
			case s.kind == selHost || s.kind == selPrefix:
				lit = append(lit, s.prefix)
			case s.kind == selDangerAll:
				lit = append(lit, allIPv4, allIPv6)
			case s.kind == selIPSet:
				lit = append(lit, s.set...)
			default:
				ident = append(ident, s)
			}
		}
		for _, d := range a.dst {
			u := &unit{acl: i, srcStar: star, srcIdent: ident, srcLit: lit, dst: d, protos: a.protos, via: a.via}
			if d.sel.kind == selSelf {
				u.kind = unitSelf
			}
			out = append(out, u)
		}
	}
	return out
}

// Compile computes every node's peers and packet filter. p nil applies
// the default policy.
func Compile(p *Policy, in []Node) (*Compiled, error) {
	nodes, byID, err := prepare(p, in)
	if err != nil {
		return nil, err
	}
	c := &Compiled{policy: p, nodes: nodes, byID: byID, results: make([]NodeResult, len(nodes))}
	units := p.units()
	n := len(nodes)

	ownerNodes := map[string][]int{}
	for _, nd := range nodes {
		if nd.owner != "" {
			ownerNodes[nd.owner] = append(ownerNodes[nd.owner], nd.idx)
		}
		nd.addrs = slices.Clip(nd.addrs) // appends to shared slices must copy
		nd.trimmed = slices.Clip(nd.trimmed)
	}

	// Sources. Units of one ACL share their source list.
	srcCache := map[int][]netip.Prefix{}
	for _, u := range units {
		u.srcM, u.dstM = newBitset(n), newBitset(n)
		switch u.kind {
		case unitPlain:
			for _, nd := range nodes {
				if u.srcStar || anyMatches(u.srcIdent, nd) ||
					overlapsSome(u.srcLit, nd.addrs) || overlapsSome(u.srcLit, nd.subnets) {
					u.srcM.set(nd.idx)
				}
			}
			if s, ok := srcCache[u.acl]; ok {
				u.src = s
				break
			}
			var src []netip.Prefix
			for _, nd := range nodes {
				switch {
				case u.srcStar:
					// S2: "*" is mesh addresses and approved LANs, never the world.
					src = append(src, nd.addrs...)
					src = append(src, nd.subnets...)
				case anyMatches(u.srcIdent, nd):
					// S1: an identity is its node's addresses, not its LANs.
					src = append(src, nd.addrs...)
				case overlapsSome(u.srcLit, nd.subnets):
					// A router masquerades its LAN hosts to its own mesh
					// address (SNAT, on by default), so where a rule names
					// a LAN, the far side sees the router. The router's
					// Forward filter admits only the named LAN hosts (S1).
					src = append(src, nd.addrs...)
				}
			}
			src = append(src, u.srcLit...)
			u.src = slices.Clip(normalize(src))
			srcCache[u.acl] = u.src
		case unitSelf, unitOwner:
			u.ownerSrc = map[string][]netip.Prefix{}
			for _, nd := range nodes {
				if u.kind == unitSelf && (nd.tagged || nd.User == "" || !(u.srcStar || anyMatches(u.srcIdent, nd))) {
					continue
				}
				if u.kind == unitOwner && nd.owner == "" {
					continue
				}
				u.srcM.set(nd.idx)
				key := u.ownerKey(nd)
				u.ownerSrc[key] = append(u.ownerSrc[key], nd.addrs...)
				if u.kind == unitOwner {
					u.ownerSrc[key] = append(u.ownerSrc[key], nd.subnets...)
				}
			}
			for k, v := range u.ownerSrc {
				u.ownerSrc[k] = slices.Clip(normalize(v))
			}
		}
	}

	// Destinations and inbound filters.
	for _, nd := range nodes {
		r := &c.results[nd.idx]
		r.ID = nd.ID
		r.Routes = nd.routes
		if r.CapMap = p.nodeCaps(nd); r.CapMap != nil {
			r.CapMapJSON, _ = json.Marshal(r.CapMap) // raw JSON values: always marshals
		}
		for _, u := range units {
			var src []netip.Prefix
			if u.kind == unitPlain {
				src = u.src
			} else {
				src = u.ownerSrc[u.ownerKey(nd)]
			}
			if len(src) == 0 {
				continue
			}
			dst := u.dstFor(nd)
			if len(dst) == 0 {
				continue
			}
			u.dstM.set(nd.idx)
			if u.kind == unitPlain {
				u.globalDst = append(u.globalDst, dst...)
			} else {
				if u.ownerDst == nil {
					u.ownerDst = map[string][]netip.Prefix{}
				}
				k := u.ownerKey(nd)
				u.ownerDst[k] = append(u.ownerDst[k], dst...)
			}
			r.addInbound(u.acl, wire.FilterRule{Src: src, Dst: dst, Ports: u.dst.ports, Protos: u.protos})
		}
	}
	for _, u := range units {
		u.globalDst = slices.Clip(normalize(u.globalDst))
		for k, v := range u.ownerDst {
			u.ownerDst[k] = slices.Clip(normalize(v))
		}
	}

	// Forward filters: what each router's LANs may reach (S1).
	for _, nd := range nodes {
		if len(nd.subnets) == 0 {
			continue
		}
		r := &c.results[nd.idx]
		for _, u := range units {
			var src, dst []netip.Prefix
			switch u.kind {
			case unitPlain:
				if u.srcStar {
					src = append(src, nd.subnets...)
				}
				for _, l := range u.srcLit {
					for _, s := range nd.subnets {
						if x, ok := intersect(l, s); ok {
							src = append(src, x)
						}
					}
				}
				dst = u.globalDst
			case unitOwner:
				src = nd.subnets
				dst = u.ownerDst[nd.owner]
			}
			if len(src) == 0 || len(dst) == 0 {
				continue
			}
			r.Filter.Forward = append(r.Filter.Forward, wire.FilterRule{Src: slices.Clip(normalize(src)), Dst: dst, Ports: u.dst.ports, Protos: u.protos})
			r.forwardACL = append(r.forwardACL, u.acl)
		}
	}

	c.computePeers(units, ownerNodes)
	c.compileCaps()
	c.compileVia(units)

	srcSums := map[*netip.Prefix][32]byte{}
	srcSum := func(ps []netip.Prefix) [32]byte {
		if len(ps) < 16 {
			return sumPrefixes(ps)
		}
		if s, ok := srcSums[&ps[0]]; ok {
			return s
		}
		s := sumPrefixes(ps)
		srcSums[&ps[0]] = s
		return s
	}
	for i := range c.results {
		r := &c.results[i]
		for j := range r.Filter.Inbound {
			fr := &r.Filter.Inbound[j]
			fr.Dst = slices.Clip(normalize(fr.Dst))
		}
		r.fingerprint(srcSum)
	}
	return c, nil
}

// addInbound appends a rule, merging it into the previous one when both
// come from the same ACL with the same source and ports: one rule per
// ACL keeps the filter as small as the policy.
func (r *NodeResult) addInbound(acl int, fr wire.FilterRule) {
	if k := len(r.Filter.Inbound) - 1; k >= 0 && r.inboundACL[k] == acl {
		last := &r.Filter.Inbound[k]
		if samePrefixSlice(last.Src, fr.Src) && slices.Equal(last.Ports, fr.Ports) && slices.Equal(last.Protos, fr.Protos) {
			last.Dst = append(last.Dst, fr.Dst...) // Dst slices are clipped, so this copies
			return
		}
	}
	r.Filter.Inbound = append(r.Filter.Inbound, fr)
	r.inboundACL = append(r.inboundACL, acl)
}

func samePrefixSlice(a, b []netip.Prefix) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0] || slices.Equal(a, b))
}

func overlapsSome(a, b []netip.Prefix) bool {
	for _, p := range a {
		if overlapsAny(p, b) {
			return true
		}
	}
	return false
}

func (u *unit) ownerKey(nd *node) string {
	if u.kind == unitSelf {
		return nd.User
	}
	return nd.owner
}

// dstFor returns the part of u's destination that lives on nd: its own
// addresses or inside the routes it serves.
func (u *unit) dstFor(nd *node) []netip.Prefix {
	if len(u.via) > 0 && !anyMatches(u.via, nd) {
		return u.ownDst(nd) // not a via router: its routes are not this rule's way in
	}
	return u.allDst(nd)
}

// ownDst is the part of u's destination on nd's own addresses.
func (u *unit) ownDst(nd *node) []netip.Prefix {
	var out []netip.Prefix
	for _, d := range u.allDst(nd) {
		if overlapsAny(d, nd.addrs) {
			for _, a := range nd.addrs {
				if x, ok := intersect(d, a); ok {
					out = append(out, x)
				}
			}
		}
	}
	return slices.Clip(normalize(out))
}

func (u *unit) allDst(nd *node) []netip.Prefix {
	s := &u.dst.sel
	switch s.kind {
	case selAll:
		// Subnets but not exit routes: the internet is autogroup:internet.
		return concat(nd.addrs, nd.trimmed)
	case selSelf:
		if !nd.tagged && nd.User != "" {
			return nd.addrs
		}
	case selOwner:
		if nd.owner != "" {
			return concat(nd.addrs, nd.trimmed)
		}
	case selInternet:
		var out []netip.Prefix
		if nd.exit4 {
			out = append(out, internet4...)
		}
		if nd.exit6 {
			out = append(out, internet6...)
		}
		return out
	case selHost, selPrefix:
		var out []netip.Prefix
		for _, a := range nd.addrs {
			if x, ok := intersect(s.prefix, a); ok {
				out = append(out, x)
			}
		}
		for _, r := range nd.routes {
			if x, ok := intersect(s.prefix, r); ok {
				out = append(out, trimHostScoped(x, s.prefix)...) // S17
			}
		}
		return slices.Clip(out)
	default:
		if s.matchesNode(nd) {
			return nd.addrs
		}
	}
	return nil
}

func concat(a, b []netip.Prefix) []netip.Prefix {
	if len(b) == 0 {
		return a
	}
	out := make([]netip.Prefix, 0, len(a)+len(b))
	return append(append(out, a...), b...)
}

// computePeers gives every node the set of nodes it may send to or
// receive from (S4). Nodes with the same membership in every unit have
// the same peers, so the set is computed once per such group.
func (c *Compiled) computePeers(units []*unit, ownerNodes map[string][]int) {
	groups := map[string]*peerSet{}
	var sig strings.Builder
	for _, nd := range c.nodes {
		sig.Reset()
		var acc byte
		selfish := false
		for i, u := range units {
			if u.srcM.has(nd.idx) {
				acc |= 1 << (2 * (i % 4))
				selfish = selfish || u.kind != unitPlain
			}
			if u.dstM.has(nd.idx) {
				acc |= 2 << (2 * (i % 4))
				selfish = selfish || u.kind != unitPlain
			}
			if i%4 == 3 || i == len(units)-1 {
				sig.WriteByte(acc)
				acc = 0
			}
		}
		if selfish {
			sig.WriteString("\x00" + nd.owner + "\x00" + nd.User)
		}
		key := sig.String()
		ps, ok := groups[key]
		if !ok {
			ps = c.peerSetFor(nd, units, ownerNodes)
			groups[key] = ps
		}
		c.results[nd.idx].peers = ps
	}
}

func (c *Compiled) peerSetFor(nd *node, units []*unit, ownerNodes map[string][]int) *peerSet {
	b := newBitset(len(c.nodes))
	for _, u := range units {
		inSrc, inDst := u.srcM.has(nd.idx), u.dstM.has(nd.idx)
		if !inSrc && !inDst {
			continue
		}
		if u.kind == unitPlain {
			if inSrc {
				b.or(u.dstM)
			}
			if inDst {
				b.or(u.srcM)
			}
			continue
		}
		for _, m := range ownerNodes[u.ownerKey(nd)] {
			if inSrc && u.dstM.has(m) || inDst && u.srcM.has(m) {
				if u.kind == unitSelf && c.nodes[m].User != nd.User {
					continue
				}
				b.set(m)
			}
		}
	}
	ps := &peerSet{}
	h := sha256.New()
	var buf [8]byte
	b.each(func(i int) {
		id := c.nodes[i].ID
		ps.ids = append(ps.ids, id)
		binary.BigEndian.PutUint64(buf[:], uint64(id))
		h.Write(buf[:])
	})
	h.Sum(ps.sum[:0])
	return ps
}
