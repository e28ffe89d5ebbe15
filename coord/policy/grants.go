package policy

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/lanmesh/lanmesh/internal/wire"
)

// Grant is one rule of the policy's grants section (Tailscale's newer
// form of acls): src may reach dst over the ip protocols and ports, and
// src's connections carry the app capabilities to dst.
//
// A grant's network part compiles exactly as the equivalent ACL: each
// ip entry becomes one rule with that entry's protocol and ports on
// every dst (grant_test.go holds the equivalence).
type Grant struct {
	Src []string
	Dst []string
	IP  []string
	// App maps capability names ("example.com/cap/admin") to the JSON
	// values written in the policy, as Tailscale's peer capability map.
	App map[string][]json.RawMessage
	// Via limits the grant to traffic through subnet routers and exit
	// nodes with these tags: only they admit it into the routes they
	// serve (traffic to a node's own addresses is not routed, so via
	// does not change it).
	Via []string

	rules   []ACL // the network part, as ACLs
	posture bool  // requires a device posture: admits no one
	src     []selector
	dst     []selector
}

type rawGrant struct {
	Src []string           `json:"src"`
	Dst []string           `json:"dst"`
	IP  []string           `json:"ip"`
	App map[string]rawJSON `json:"app"`
	Via []string           `json:"via"`

	SrcPosture []string `json:"srcPosture"`
}

// parseGrantIP reads one entry of a grant's ip list: "*" (every port
// of TCP, UDP and ICMP, as an ACL without proto: Tailscale compiles it
// to exactly that), "PORTS" (the same protocols, those ports), or
// "PROTO:PORTS" ("tcp:443", "udp:53", "icmp:*", "47:*").
func parseGrantIP(s string) (proto string, ports []wire.PortRange, err error) {
	s = strings.TrimSpace(s)
	if s == "*" {
		return "", []wire.PortRange{wire.AllPorts}, nil
	}
	proto, portStr, hasProto := strings.Cut(s, ":")
	if !hasProto {
		proto, portStr = "", s
	} else if strings.Contains(portStr, ":") {
		return "", nil, fmt.Errorf("ip %q: write PROTO:PORTS, e.g. \"tcp:443\"", s)
	}
	ports, err = parsePorts(portStr)
	if err != nil {
		return "", nil, fmt.Errorf("ip %q: %v", s, err)
	}
	return proto, ports, nil
}

func (v *validator) grant(p path, r rawGrant) {
	g := Grant{Src: r.Src, Dst: r.Dst, IP: r.IP, Via: r.Via}
	g.posture = v.postureRefs(p.add("srcPosture"), r.SrcPosture) || r.SrcPosture == nil && v.p.defaultPosture
	// Empty src or dst lists are accepted, as Tailscale does (the grant
	// then matches nothing); missing ones are not.
	v.required(p, "src", len(r.Src)+boolInt(r.Src != nil))
	v.required(p, "dst", len(r.Dst)+boolInt(r.Dst != nil))
	if len(r.IP) == 0 && len(r.App) == 0 && !v.undecodable(p.add("ip")) && !v.undecodable(p.add("app")) {
		v.fail(p, "a grant needs \"ip\" (network access, e.g. [\"tcp:443\"] or [\"*\"]) or \"app\" (capabilities), or both")
	}
	for i, s := range r.Src {
		sel, err := v.selectorAt(p.add("src").add(i), s, ctxSrc)
		if err != nil {
			v.fail(p.add("src").add(i), "%v", err)
			continue
		}
		g.src = append(g.src, sel)
	}
	hasSelf, hasInternet := false, false
	for i, d := range r.Dst {
		dp := p.add("dst").add(i)
		sel, err := v.selectorAt(dp, d, ctxDst)
		if err != nil {
			v.fail(dp, "%v", err)
			continue
		}
		if (sel.kind == selPrefix) && sel.prefix.Bits() == 0 {
			v.fail(dp, "dst %q: to allow all IP addresses, use \"*\" or \"autogroup:internet\" (as Tailscale requires)", d)
			continue
		}
		hasSelf = hasSelf || sel.kind == selSelf
		hasInternet = hasInternet || sel.kind == selInternet
		g.dst = append(g.dst, sel)
	}
	if hasSelf {
		for i, s := range g.src {
			switch s.kind {
			case selUser, selGroup, selMember, selDomain, selRole:
			default:
				// Unlike in acls, Tailscale refuses "*" here.
				v.fail(p.add("src").add(i), "%q: with autogroup:self in dst, a grant's src may only name users, groups or autogroup:member", r.Src[i])
			}
		}
	}
	var via []selector
	for i, t := range r.Via {
		t = trimName(t)
		vp := p.add("via").add(i)
		if !strings.HasPrefix(t, "tag:") {
			v.fail(vp, "via %q: via can only name tags (the subnet routers or exit nodes to route through)", r.Via[i])
			continue
		}
		sel, err := v.selectorAt(vp, t, ctxIdentity)
		if err != nil {
			v.fail(vp, "%v", err)
			continue
		}
		via = append(via, sel)
	}
	if len(r.App) > 0 {
		g.App = map[string][]json.RawMessage{}
		if hasInternet {
			v.fail(p.add("app"), "app capabilities cannot be granted on autogroup:internet (as in Tailscale)")
		}
		for _, name := range sortedKeys(r.App) {
			ap := p.add("app").add(name)
			if err := checkCapName(name); err != nil {
				v.fail(ap, "%v", err)
				continue
			}
			var vals []json.RawMessage
			if err := json.Unmarshal(r.App[name], &vals); err != nil {
				v.fail(ap, "capability %q: expected a list of JSON values", name)
				continue
			}
			for j, val := range vals {
				if len(val) == 0 || val[0] != '{' {
					v.fail(ap.add(j), "capability %q: each value must be a JSON object", name)
				}
			}
			g.App[name] = vals
		}
	}
	// The network part: one ACL per ip entry, ports on every dst.
	for i, ipe := range r.IP {
		ip := p.add("ip").add(i)
		proto, ports, err := parseGrantIP(ipe)
		if err != nil {
			v.fail(ip, "%v", err)
			continue
		}
		a := ACL{Action: "accept", Src: r.Src, Proto: proto, src: g.src, via: via, posture: g.posture, origin: fmt.Sprintf("grants[%d].ip[%d]", p[1], i)}
		protos, portless, err := parseProto(proto)
		if err != nil {
			v.fail(ip, "%v", err)
			continue
		}
		if portless && !(len(ports) == 1 && ports[0] == wire.AllPorts) {
			v.fail(ip, "%q: proto %q has no ports; use %s:*", ipe, proto, proto)
			continue
		}
		a.protos = protos
		for _, d := range g.dst {
			a.Dst = append(a.Dst, d.name)
			for _, s := range expandIPSet(d) {
				a.dst = append(a.dst, dstEntry{sel: s, ports: ports})
			}
		}
		g.rules = append(g.rules, a)
	}
	v.p.Grants = append(v.p.Grants, g)
}

// knownTailscaleCaps are the tailscale.com app capabilities Tailscale
// accepts in grants (its other names are refused). lanmesh carries them
// like any other capability; it implements none of them.
var knownTailscaleCaps = map[string]bool{
	"tailscale.com/cap/drive": true, "tailscale.com/cap/kubernetes": true,
	"tailscale.com/cap/relay": true, "tailscale.com/cap/webui": true, "tailscale.com/cap/tsidp": true,
	"tailscale.com/cap/drive-sharer": true, "tailscale.com/cap/golink": true,
}

// checkCapName checks an app capability name: {domain}/{path}, and not
// in Tailscale's own domain, which Tailscale reserves.
func checkCapName(name string) error {
	dom, rest, ok := strings.Cut(name, "/")
	if !ok || dom == "" || rest == "" || !strings.Contains(dom, ".") || strings.ContainsAny(name, " \t\n") {
		return fmt.Errorf("capability name %q must have the form {domain}/{path}, e.g. \"example.com/cap/admin\"", name)
	}
	if (dom == "tailscale.com" || strings.HasSuffix(dom, ".tailscale.com")) && !knownTailscaleCaps[name] {
		return fmt.Errorf("capability name %q must not be in the tailscale.com domain", name)
	}
	return nil
}

// rules lists every network rule: the acls, then each grant's ip part.
func (p *Policy) rules() []*ACL {
	out := make([]*ACL, 0, len(p.ACLs)+len(p.Grants))
	for i := range p.ACLs {
		out = append(out, &p.ACLs[i])
	}
	for i := range p.Grants {
		for j := range p.Grants[i].rules {
			out = append(out, &p.Grants[i].rules[j])
		}
	}
	return out
}

// ruleName names rule i of rules() in messages: "acls[3]", "grants[1].ip[0]".
func (a *ACL) ruleName(i int) string {
	if a.origin != "" {
		return a.origin
	}
	return fmt.Sprintf("acls[%d]", i)
}

// compileCaps fills every node's Filter.Caps from the grants with app:
// a node a grant's dst selects gets the grant's capabilities for the
// sources its src selects. Sources are as in an ACL's src: an identity
// is its nodes' mesh addresses (never their LANs, S1), "*" is every mesh
// address and approved LAN, a host, prefix or ipset is itself. For
// autogroup:self the sources are the devices of the node's own user.
// One grant's source list is shared by every node it reaches.
func (c *Compiled) compileCaps() {
	if c.policy == nil {
		return
	}
	for gi := range c.policy.Grants {
		g := &c.policy.Grants[gi]
		if len(g.App) == 0 || g.posture {
			continue
		}
		caps := wire.CapMap(g.App)
		enc, _ := json.Marshal(caps) // raw JSON values: always marshals
		var shared []netip.Prefix
		sharedDone := false
		perUser := map[string][]netip.Prefix{}
		for _, d := range c.nodes {
			plain, self := g.dstKinds(d)
			var src []netip.Prefix
			switch {
			case plain:
				if !sharedDone {
					shared, sharedDone = c.capSources(g, nil), true
				}
				src = shared
			case self:
				var ok bool
				if src, ok = perUser[d.User]; !ok {
					src = c.capSources(g, d)
					perUser[d.User] = src
				}
			}
			if len(src) == 0 {
				continue
			}
			r := &c.results[d.idx]
			r.Filter.Caps = append(r.Filter.Caps, wire.CapGrant{Src: src, Caps: caps})
			r.capEnc = append(r.capEnc, enc)
		}
	}
}

// dstKinds reports whether one of g's dst entries other than
// autogroup:self selects n (plain), and whether autogroup:self does.
func (g *Grant) dstKinds(n *node) (plain, self bool) {
	for i := range g.dst {
		s := &g.dst[i]
		switch s.kind {
		case selSelf:
			self = self || !n.tagged && n.User != ""
		case selAll:
			plain = true
		case selHost, selPrefix:
			plain = plain || overlapsAny(s.prefix, n.addrs)
		case selIPSet:
			plain = plain || overlapsSome(s.set, n.addrs)
		default:
			plain = plain || s.matchesNode(n)
		}
	}
	return plain, self
}

// capSources lists the addresses g's src selects; with self set, only
// the untagged devices of self's user.
func (c *Compiled) capSources(g *Grant, self *node) []netip.Prefix {
	var out []netip.Prefix
	for i := range g.src {
		sel := &g.src[i]
		switch sel.kind {
		case selHost, selPrefix:
			if self == nil {
				out = append(out, sel.prefix)
			}
			continue
		case selIPSet:
			if self == nil {
				out = append(out, sel.set...)
			}
			continue
		case selDangerAll:
			if self == nil {
				out = append(out, allIPv4, allIPv6)
			}
			continue
		}
		for _, s := range c.nodes {
			if self != nil && (s.tagged || s.User != self.User) {
				continue
			}
			switch {
			case sel.kind == selAll && self == nil:
				out = append(out, s.addrs...)
				out = append(out, s.subnets...)
			case sel.kind == selAll || sel.matchesNode(s):
				out = append(out, s.addrs...)
			}
		}
	}
	return slices.Clip(normalize(out))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// compileVia fills each node's Filter.Via from the rules with via: for
// every source node of such a rule, the routed part of the rule's
// destination on each via router (what the router admits beyond its own
// addresses) goes through that router. Without it, a node whose LAN is
// served by two routers would pick one by ID, and the router that is
// not named would drop the traffic. autogroup:internet is not steered:
// which exit node to use stays the user's choice (--exit-node), and only
// the named exit nodes admit the traffic.
func (c *Compiled) compileVia(units []*unit) {
	type routed struct {
		dst netip.Prefix
		id  wire.NodeID
	}
	per := map[int]map[netip.Prefix][]wire.NodeID{}
	for _, u := range units {
		if len(u.via) == 0 || u.kind != unitPlain || u.dst.sel.kind == selInternet {
			continue
		}
		var rs []routed
		for _, r := range c.nodes {
			if len(r.subnets) == 0 || !u.dstM.has(r.idx) || !anyMatches(u.via, r) {
				continue
			}
			for _, d := range u.allDst(r) {
				if d.Bits() > 0 && !overlapsAny(d, r.addrs) && overlapsAny(d, r.subnets) {
					rs = append(rs, routed{d, r.ID})
				}
			}
		}
		if len(rs) == 0 {
			continue
		}
		u.srcM.each(func(i int) {
			m := per[i]
			if m == nil {
				m = map[netip.Prefix][]wire.NodeID{}
				per[i] = m
			}
			for _, x := range rs {
				if x.id != c.nodes[i].ID && !slices.Contains(m[x.dst], x.id) {
					m[x.dst] = append(m[x.dst], x.id)
				}
			}
		})
	}
	for i, m := range per {
		r := &c.results[i]
		for dst, ids := range m {
			slices.Sort(ids)
			r.Filter.Via = append(r.Filter.Via, wire.ViaRoute{Dst: dst, Peers: ids})
		}
		slices.SortFunc(r.Filter.Via, func(a, b wire.ViaRoute) int { return comparePrefix(a.Dst, b.Dst) })
	}
}
