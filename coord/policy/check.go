package policy

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/lanmesh/lanmesh/internal/wire"
)

// probeNet holds the made-up addresses of probe nodes: reserved
// (240.0.0.0/4), never a mesh or LAN address.
var probeNet = netip.MustParsePrefix("240.0.0.0/4")

// Check compiles p for nodes and runs the policy's own tests against
// the result. Coord must refuse a policy for which Check fails. Users
// and tags named in tests get a probe node each, so a test about a user
// with no device yet still means something.
func Check(p *Policy, nodes []Node) error {
	if p == nil || len(p.Tests)+len(p.SSHTests) == 0 {
		_, err := Compile(p, nodes)
		return err
	}
	all := slices.Clone(nodes)
	probes := map[string]netip.Addr{}
	next := probeNet.Addr().Next()
	minID := wire.NodeID(0)
	for _, n := range nodes {
		minID = min(minID, n.ID)
	}
	// A test is about the policy, not only about today's nodes: a user,
	// group or tag named in a test gets a stand-in device, and an
	// address no node owns or routes gets a stand-in node holding it,
	// so "deny thor -> webserver:8080" fails when a rule allows it even
	// before any node has that address.
	owned := func(a netip.Addr) bool {
		for _, n := range all {
			for _, q := range append(slices.Clip(n.Addresses), n.ApprovedRoutes...) {
				if q.Contains(a) {
					return true
				}
			}
		}
		return false
	}
	standIn := map[netip.Addr]bool{}
	addProbe := func(s selector, role string) {
		key := role + s.name
		if s.kind == selHost || s.kind == selPrefix {
			key = s.prefix.String()
		}
		if _, ok := probes[key]; ok {
			return
		}
		n := Node{ID: minID - 1}
		switch s.kind {
		case selUser:
			n.User = s.name
		case selGroup:
			users := sortedKeys(s.users)
			if len(users) == 0 {
				return
			}
			n.User = users[0]
		case selTag:
			n.Tags = []string{s.name}
		case selHost, selPrefix:
			a := s.prefix.Addr()
			if !s.prefix.IsSingleIP() || owned(a) {
				return
			}
			n.Addresses = []netip.Prefix{s.prefix}
			standIn[a] = true
			all = append(all, n)
			minID--
			probes[key] = a
			return
		default:
			return
		}
		n.Addresses = []netip.Prefix{netip.PrefixFrom(next, 32)}
		all = append(all, n)
		minID--
		probes[key] = next
		next = next.Next()
	}
	// Address probes first, so a user probe never takes an address a
	// test names.
	for pass := 0; pass < 2; pass++ {
		// A test's destination identity gets a stand-in of its own, so
		// "tag:web -> tag:web:443" is judged between two devices.
		var sels, dsts []selector
		for i := range p.Tests {
			t := &p.Tests[i]
			sels = append(sels, t.src)
			for _, d := range t.accept {
				dsts = append(dsts, d.sel)
			}
			for _, d := range t.deny {
				dsts = append(dsts, d.sel)
			}
		}
		for i := range p.SSHTests {
			sels = append(sels, p.SSHTests[i].src)
			sels = append(sels, p.SSHTests[i].dst...)
		}
		for _, s := range sels {
			if isAddr := s.kind == selHost || s.kind == selPrefix; isAddr == (pass == 0) {
				addProbe(s, "")
			}
		}
		for _, s := range dsts {
			if isAddr := s.kind == selHost || s.kind == selPrefix; isAddr == (pass == 0) {
				addProbe(s, "dst:")
			}
		}
	}
	c, err := Compile(p, all)
	if err != nil {
		return err
	}
	errs := p.runSSHTests(c, probes, standIn)
	for i := range p.Tests {
		t := &p.Tests[i]
		src := probes[t.src.name]
		if t.src.kind == selHost || t.src.kind == selPrefix {
			src = t.src.prefix.Addr()
		}
		if !src.IsValid() {
			continue // reported by Parse
		}
		for _, list := range []struct {
			name   string
			dsts   []testDst
			accept bool
		}{{"accept", t.accept, true}, {"deny", t.deny, false}} {
			for j, d := range list.dsts {
				dst := probes["dst:"+d.sel.name]
				if d.sel.kind == selHost || d.sel.kind == selPrefix {
					dst = d.sel.prefix.Addr()
				}
				if !dst.IsValid() {
					continue
				}
				for _, proto := range t.protos {
					ok, why := c.admits(src, dst, proto, d.port)
					if ok == list.accept {
						continue
					}
					verdict := "denied"
					if ok {
						verdict = "accepted" + why
					}
					errs = append(errs, p.src.errAt(path{"tests", i, list.name, j},
						"test failed: %s -> %s:%d/%s was %s", t.Src, d.sel.name, d.port, protoName(proto), verdict))
				}
			}
		}
	}
	return joinErrors(errs)
}

func protoName(p uint8) string {
	switch p {
	case wire.ProtoTCP:
		return "tcp"
	case wire.ProtoUDP:
		return "udp"
	case wire.ProtoICMP:
		return "icmp"
	case wire.ProtoICMPv6:
		return "icmpv6"
	}
	return fmt.Sprint(p)
}

// admits reports whether the compiled filters let a packet from src
// reach dst, and which ACL accepted it. The packet must pass the
// destination node's Inbound filter and, when src is a LAN host behind a
// router, that router's Forward filter (S1). A source that is neither a
// node nor inside an approved route cannot enter the mesh at all.
func (c *Compiled) admits(src, dst netip.Addr, proto uint8, port uint16) (bool, string) {
	srcNode, srcViaRoute := c.ownerOf(src)
	if srcNode == nil {
		return false, ""
	}
	if srcViaRoute {
		r := &c.results[srcNode.idx]
		if !wire.MatchAny(r.Filter.Forward, src, dst, proto, port) {
			return false, ""
		}
	}
	dstNode, _ := c.ownerOf(dst)
	if dstNode == nil {
		return false, ""
	}
	r := &c.results[dstNode.idx]
	if dstNode == srcNode {
		return false, "" // never crosses the mesh
	}
	for k, fr := range r.Filter.Inbound {
		if fr.Match(src, dst, proto, port) {
			if acl := r.inboundACL[k]; acl >= 0 {
				return true, " by " + c.policy.rules()[acl].ruleName(acl)
			}
			return true, " by the default policy"
		}
	}
	return false, ""
}

// ownerOf finds the node that has addr, or else the node whose approved
// route covers it most specifically (subnet routes before exit routes).
func (c *Compiled) ownerOf(addr netip.Addr) (*node, bool) {
	var best *node
	bestBits := -1
	for _, n := range c.nodes {
		for _, a := range n.addrs {
			if a.Contains(addr) {
				return n, false
			}
		}
		for _, r := range n.routes {
			if r.Contains(addr) && r.Bits() > bestBits {
				best, bestBits = n, r.Bits()
			}
		}
	}
	return best, best != nil
}
