package policy

import (
	"encoding/json"
	"net/netip"
	"sort"
	"strings"

	"github.com/lanmesh/lanmesh/internal/wire"
)

// NodeAttr is one entry of the policy's nodeAttrs: the attributes in
// Attr (and app capabilities in App) apply to every node Target selects.
// lanmesh parses all of it and carries Attr and App to the targeted
// nodes (wire.Node.CapMap on their self); the attributes lanmesh gives
// no meaning get a warning naming each.
type NodeAttr struct {
	Target []string
	Attr   []string
	App    map[string][]json.RawMessage
	IPPool []netip.Prefix

	target []selector
}

type rawNodeAttr struct {
	Target []string           `json:"target"`
	Attr   []string           `json:"attr"`
	App    map[string]rawJSON `json:"app"`
	IPPool []string           `json:"ipPool"`
}

// reservedPool is Tailscale's service range, never a node pool.
var reservedPool = netip.MustParsePrefix("100.100.100.0/24")

func (v *validator) nodeAttr(p path, r rawNodeAttr) {
	a := NodeAttr{Target: r.Target, Attr: r.Attr}
	// As in Tailscale, empty lists and an entry with nothing to apply
	// are accepted (they do nothing).
	for i, t := range r.Target {
		sel, err := v.selectorAt(p.add("target").add(i), t, ctxSrc)
		if err != nil {
			v.fail(p.add("target").add(i), "%v", err)
			continue
		}
		a.target = append(a.target, sel)
	}
	for i, at := range r.Attr {
		at = strings.TrimSpace(at)
		if at == "" {
			v.fail(p.add("attr").add(i), "empty attribute")
			continue
		}
		applied, hint, err := checkAttr(at)
		switch {
		case err != nil:
			v.fail(p.add("attr").add(i), "%v", err)
			continue
		case applied:
			continue
		case hint != "":
			v.warn(p.add("attr").add(i), "%s", hint)
			continue
		}
		v.warn(p.add("attr").add(i), "node attribute %q accepted without effect (carried to the node in self.cap_map; lanmesh gives it no meaning)", at)
	}
	if len(r.App) > 0 {
		a.App = map[string][]json.RawMessage{}
		for _, name := range sortedKeys(r.App) {
			ap := p.add("app").add(name)
			var vals []json.RawMessage
			if err := json.Unmarshal(r.App[name], &vals); err != nil {
				v.fail(ap, "capability %q: expected a list of JSON values", name)
				continue
			}
			a.App[name] = vals
			v.warn(ap, "node capability %q accepted without effect (carried to the node in self.cap_map)", name)
		}
	}
	for i, s := range r.IPPool {
		ip := p.add("ipPool").add(i)
		pfx, err := v.prefix(ip, strings.TrimSpace(s))
		if err != nil {
			v.fail(ip, "ipPool %v", err)
			continue
		}
		if pfx.Overlaps(reservedPool) {
			v.fail(ip, "ipPool %s overlaps the reserved range %s", pfx, reservedPool)
			continue
		}
		a.IPPool = append(a.IPPool, pfx)
		v.warn(ip, "ipPool %s accepted without effect (coord assigns addresses from its own range)", pfx)
	}
	v.p.NodeAttrs = append(v.p.NodeAttrs, a)
}

// NodeAttrsFor lists the attributes the policy's nodeAttrs give n,
// sorted and without duplicates.
func (p *Policy) NodeAttrsFor(n Node) []string {
	if p == nil {
		return nil
	}
	nd := &node{Node: n, tags: map[string]bool{}, tagged: len(n.Tags) > 0}
	for _, t := range n.Tags {
		nd.tags[t] = true
	}
	for _, g := range n.Groups {
		if nd.groups == nil {
			nd.groups = map[string]bool{}
		}
		nd.groups["group:"+g] = true
	}
	nd.addrs = n.Addresses
	set := map[string]bool{}
	for i := range p.NodeAttrs {
		a := &p.NodeAttrs[i]
		if a.selects(nd) {
			for _, at := range a.Attr {
				set[strings.TrimSpace(at)] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// selects reports whether one of a's targets selects nd.
func (a *NodeAttr) selects(nd *node) bool {
	for j := range a.target {
		s := &a.target[j]
		if s.matchesNode(nd) || s.kind == selAll ||
			(s.kind == selHost || s.kind == selPrefix) && overlapsAny(s.prefix, nd.addrs) ||
			s.kind == selIPSet && overlapsSome(s.set, nd.addrs) {
			return true
		}
	}
	return false
}

// nodeCaps is what the policy's nodeAttrs give nd, as the node gets it
// in its netmap (wire.Node.CapMap): each attribute a name without
// values, each app capability its values (of every entry that gives it,
// in policy order). nil when none applies.
func (p *Policy) nodeCaps(nd *node) wire.CapMap {
	if p == nil {
		return nil
	}
	var out wire.CapMap
	for i := range p.NodeAttrs {
		a := &p.NodeAttrs[i]
		if (len(a.Attr) == 0 && len(a.App) == 0) || !a.selects(nd) {
			continue
		}
		if out == nil {
			out = wire.CapMap{}
		}
		for _, at := range a.Attr {
			at = strings.TrimSpace(at)
			if _, ok := out[at]; !ok {
				out[at] = []json.RawMessage{}
			}
		}
		for name, vals := range a.App {
			if _, ok := out[name]; !ok {
				out[name] = []json.RawMessage{}
			}
			out[name] = append(out[name], vals...)
		}
	}
	return out
}
