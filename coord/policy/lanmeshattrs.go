package policy

import (
	"fmt"
	"slices"
	"strings"
)

// AttrDisableKeyExpiry, as a nodeAttrs "attr", turns the key expiry of
// the nodes the entry targets off while the policy says so: they stay in
// the mesh past their stored key expiry, as if an admin had run
// lanmesh-coord nodes expiry --off, and peers see no expiry for them.
// The stored expiry is kept: once no policy entry gives a node the
// attribute, it expires at that stored instant again (at once if it has
// passed). Tailscale accepts any attribute string, so a policy using it
// still carries back (Tailscale ignores it).
const AttrDisableKeyExpiry = "lanmesh:disable-key-expiry"

// lanmeshAttrPrefix is lanmesh's namespace for node attributes: an
// attribute in it that lanmesh does not know is refused, so a typo never
// silently does nothing.
const lanmeshAttrPrefix = "lanmesh:"

// appliedAttrs are the node attributes lanmesh gives a meaning; every
// other attribute is carried to the node without effect.
var appliedAttrs = []string{AttrDisableKeyExpiry}

// checkAttr validates one nodeAttrs attribute. An unknown attribute in
// the lanmesh: namespace is an error (err) naming the known ones; one
// outside it that looks like a lanmesh attribute gets a hint (warn) with
// the right spelling. applied reports an attribute lanmesh acts on.
func checkAttr(at string) (applied bool, warn string, err error) {
	if slices.Contains(appliedAttrs, at) {
		return true, "", nil
	}
	near := nearAttr(at)
	if len(at) >= len(lanmeshAttrPrefix) && strings.EqualFold(at[:len(lanmeshAttrPrefix)], lanmeshAttrPrefix) {
		for _, a := range appliedAttrs {
			if rest, ok := strings.CutPrefix(at, a); ok && (rest[0] == ':' || rest[0] == '=') {
				return false, "", fmt.Errorf("node attribute %q: %s takes no value: write %q", at, a, a)
			}
		}
		if near != "" {
			return false, "", fmt.Errorf("unknown lanmesh node attribute %q: did you mean %q?", at, near)
		}
		return false, "", fmt.Errorf("unknown lanmesh node attribute %q (known: %s)", at, strings.Join(appliedAttrs, ", "))
	}
	if near != "" {
		return false, fmt.Sprintf("node attribute %q accepted without effect: did you mean %q (which lanmesh applies)?", at, near), nil
	}
	return false, "", nil
}

// nearAttr returns the applied attribute at is a misspelling of (case,
// '-', '_', spaces, or the lanmesh: prefix left out), or "".
func nearAttr(at string) string {
	fold := func(s string) string {
		s = strings.ToLower(s)
		s = strings.TrimPrefix(s, lanmeshAttrPrefix)
		return strings.Map(func(r rune) rune {
			if r == '-' || r == '_' || r == ' ' || r == '.' {
				return -1
			}
			return r
		}, s)
	}
	for _, a := range appliedAttrs {
		if fold(at) == fold(a) {
			return a
		}
	}
	return ""
}

// DisablesKeyExpiry reports whether the policy gives n the attribute
// AttrDisableKeyExpiry (its key expiry is off while it does).
func (p *Policy) DisablesKeyExpiry(n Node) bool {
	return p.UsesAttr(AttrDisableKeyExpiry) && slices.Contains(p.NodeAttrsFor(n), AttrDisableKeyExpiry)
}

// UsesAttr reports whether any nodeAttrs entry gives attr, so callers
// skip the per-node work when none does.
func (p *Policy) UsesAttr(attr string) bool {
	if p == nil {
		return false
	}
	for i := range p.NodeAttrs {
		for _, at := range p.NodeAttrs[i].Attr {
			if strings.TrimSpace(at) == attr {
				return true
			}
		}
	}
	return false
}
