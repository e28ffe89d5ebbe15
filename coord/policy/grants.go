package policy

import (
	"encoding/json"
	"fmt"
	"sort"
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

// PeerCaps returns, for the node dst, the app capabilities each of its
// peers has on it: for every grant with app whose src selects the peer
// and whose dst selects dst, the grant's capabilities (values of one
// name from several grants are concatenated, in policy order). This is
// the node's view of its peers that `lanmesh whois` would show.
func (c *Compiled) PeerCaps(dst wire.NodeID) map[wire.NodeID]map[string][]json.RawMessage {
	i, ok := c.byID[dst]
	if !ok || c.policy == nil {
		return nil
	}
	d := c.nodes[i]
	out := map[wire.NodeID]map[string][]json.RawMessage{}
	for gi := range c.policy.Grants {
		g := &c.policy.Grants[gi]
		if len(g.App) == 0 || g.posture || !g.selectsDst(d) {
			continue
		}
		for _, s := range c.nodes {
			if s == d || !g.selectsSrc(s, d) {
				continue
			}
			m := out[s.ID]
			if m == nil {
				m = map[string][]json.RawMessage{}
				out[s.ID] = m
			}
			names := make([]string, 0, len(g.App))
			for n := range g.App {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				m[n] = append(m[n], g.App[n]...)
			}
		}
	}
	return out
}

func (g *Grant) selectsDst(n *node) bool {
	for i := range g.dst {
		s := &g.dst[i]
		switch s.kind {
		case selAll:
			return true
		case selSelf:
			if !n.tagged && n.User != "" {
				return true
			}
		case selHost, selPrefix:
			if overlapsAny(s.prefix, n.addrs) {
				return true
			}
		case selIPSet:
			if overlapsSome(s.set, n.addrs) {
				return true
			}
		default:
			if s.matchesNode(n) {
				return true
			}
		}
	}
	return false
}

// selectsSrc: s is a source of g toward d (autogroup:self in dst limits
// sources to d's user).
func (g *Grant) selectsSrc(s, d *node) bool {
	self := true
	for i := range g.dst {
		if g.dst[i].kind != selSelf {
			self = false
		}
	}
	if self && (s.tagged || s.User != d.User) {
		return false
	}
	for i := range g.src {
		sel := &g.src[i]
		switch sel.kind {
		case selAll, selDangerAll:
			return true
		case selHost, selPrefix:
			if overlapsAny(sel.prefix, s.addrs) {
				return true
			}
		case selIPSet:
			if overlapsSome(sel.set, s.addrs) {
				return true
			}
		default:
			if sel.matchesNode(s) {
				return true
			}
		}
	}
	return false
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
