package policy

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/lanmesh/lanmesh/internal/wire"
)

type selKind uint8

const (
	selAll      selKind = iota + 1 // "*"
	selUser                        // alice@example.com
	selGroup                       // group:x
	selTag                         // tag:x
	selHost                        // host alias
	selPrefix                      // IP or CIDR
	selMember                      // autogroup:member: untagged devices
	selTagged                      // autogroup:tagged
	selSelf                        // autogroup:self (dst only)
	selInternet                    // autogroup:internet (dst only): via exit nodes
	selOwner                       // internal, default policy: a user's devices and their LANs
)

// selector is one resolved entry of a src or dst list.
type selector struct {
	kind   selKind
	name   string          // as written
	users  map[string]bool // selGroup: flattened members
	prefix netip.Prefix    // selHost, selPrefix
}

// selContext says where a selector appears; some only make sense in one.
type selContext uint8

const (
	ctxSrc selContext = iota
	ctxDst
	ctxIdentity // autoApprovers, tagOwners: who, not where
)

func (v *validator) selector(s string, ctx selContext) (selector, error) {
	sel := selector{name: s}
	switch {
	case s == "":
		return sel, fmt.Errorf("empty selector")
	case s == "*":
		if ctx == ctxIdentity {
			return sel, fmt.Errorf("%q is not allowed here; name users, groups or tags", s)
		}
		sel.kind = selAll
	case strings.HasPrefix(s, "autogroup:"):
		switch s {
		case "autogroup:member":
			sel.kind = selMember
		case "autogroup:tagged":
			sel.kind = selTagged
		case "autogroup:self":
			if ctx != ctxDst {
				return sel, fmt.Errorf("autogroup:self is only allowed in dst")
			}
			sel.kind = selSelf
		case "autogroup:internet":
			if ctx != ctxDst {
				return sel, fmt.Errorf("autogroup:internet is only allowed in dst")
			}
			sel.kind = selInternet
		default:
			return sel, fmt.Errorf("unknown autogroup %q (known: autogroup:member, autogroup:tagged, autogroup:self, autogroup:internet)", s)
		}
	case strings.HasPrefix(s, "group:"):
		users, ok := v.p.groupUsers[s]
		if !ok {
			return sel, fmt.Errorf("unknown group %q", s)
		}
		sel.kind, sel.users = selGroup, users
	case strings.HasPrefix(s, "tag:"):
		if _, ok := v.p.TagOwners[s]; !ok {
			return sel, fmt.Errorf("unknown tag %q (tags must be listed in tagOwners)", s)
		}
		sel.kind = selTag
	case strings.Contains(s, "@"):
		if !validUser(s) {
			return sel, fmt.Errorf("%q is not a valid user (name@domain)", s)
		}
		sel.kind = selUser
	default:
		if pfx, ok := v.p.Hosts[s]; ok {
			sel.kind, sel.prefix = selHost, pfx
			break
		}
		if ctx == ctxIdentity {
			return sel, fmt.Errorf("%q is not a user, group or tag", s)
		}
		pfx, err := parsePrefix(s)
		if err != nil {
			if validName(s) && strings.IndexFunc(s, isLetter) >= 0 {
				return sel, fmt.Errorf("unknown host alias %q", s)
			}
			return sel, err
		}
		sel.kind, sel.prefix = selPrefix, pfx
	}
	return sel, nil
}

// dstEntry is one dst of a rule: what and which ports.
type dstEntry struct {
	sel   selector
	ports []wire.PortRange
}

// matchesNode reports whether an identity selector selects n. Address
// selectors (host, prefix) and "*" are handled by the compiler.
func (s *selector) matchesNode(n *node) bool {
	switch s.kind {
	case selUser:
		return !n.tagged && n.User == s.name
	case selGroup:
		return !n.tagged && (s.users[n.User] || n.groups[s.name])
	case selTag:
		return n.tags[s.name]
	case selMember:
		return !n.tagged && n.User != ""
	case selTagged:
		return n.tagged
	}
	return false
}

func isLetter(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }
