package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/lanmesh/lanmesh/internal/wire"
)

type selKind uint8

const (
	selAll       selKind = iota + 1 // "*"
	selUser                         // alice@example.com
	selGroup                        // group:x
	selTag                          // tag:x
	selHost                         // host alias
	selPrefix                       // IP or CIDR
	selMember                       // autogroup:member: untagged devices
	selTagged                       // autogroup:tagged
	selSelf                         // autogroup:self (dst only)
	selInternet                     // autogroup:internet (dst only): via exit nodes
	selOwner                        // internal, default policy: a user's devices and their LANs
	selDomain                       // user:*@domain: untagged devices of users at domain
	selRole                         // autogroup:admin, autogroup:owner, ...: untagged devices of users with the role
	selNone                         // autogroup:shared: lanmesh has no sharing, so no device
	selDangerAll                    // autogroup:danger-all (src only): every address
	selIPSet                        // ipset:x: a set of prefixes
)

// selector is one resolved entry of a src or dst list.
type selector struct {
	kind   selKind
	name   string          // as written
	users  map[string]bool // selGroup: flattened members
	prefix netip.Prefix    // selHost, selPrefix
	domain string          // selDomain: "@example.com"; selRole: the role
	set    []netip.Prefix  // selIPSet
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
		case "autogroup:member", "autogroup:members":
			sel.kind = selMember
		case "autogroup:tagged":
			sel.kind = selTagged
		case "autogroup:admin", "autogroup:owner", "autogroup:it-admin", "autogroup:network-admin",
			"autogroup:billing-admin", "autogroup:auditor":
			sel.kind, sel.domain = selRole, strings.TrimPrefix(s, "autogroup:")
		case "autogroup:shared":
			sel.kind = selNone
		case "autogroup:danger-all":
			if ctx != ctxSrc {
				return sel, fmt.Errorf("autogroup:danger-all is only allowed in src (as in Tailscale)")
			}
			sel.kind = selDangerAll
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
		case "autogroup:nonroot":
			return sel, fmt.Errorf("autogroup:nonroot names SSH login users; it belongs in an ssh rule's users")
		default:
			return sel, fmt.Errorf("unknown autogroup %q (known: autogroup:member, autogroup:tagged, autogroup:self, autogroup:internet, autogroup:admin, autogroup:owner, autogroup:shared, autogroup:danger-all)", s)
		}
	case strings.HasPrefix(s, "user:"):
		dom, ok := strings.CutPrefix(s, "user:*@")
		if !ok || dom == "" || strings.ContainsAny(dom, "*@ /:") {
			return sel, fmt.Errorf("%q: write user:*@domain for every user at a domain", s)
		}
		sel.kind, sel.domain = selDomain, "@"+strings.ToLower(dom)
	case strings.HasPrefix(s, "ipset:"):
		set, ok := v.p.IPSets[s]
		if !ok {
			if v.bad[s] {
				return sel, errEchoed
			}
			return sel, fmt.Errorf("unknown ipset %q", s)
		}
		sel.kind, sel.set = selIPSet, set
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
	case selDomain:
		return !n.tagged && strings.HasSuffix(strings.ToLower(n.User), s.domain)
	case selRole:
		return !n.tagged && n.User != "" && hasRole(n.User, n.Roles, s.domain)
	}
	return false
}

// BuiltinAdmin is the login of coord's built-in admin user, which
// autogroup:admin and autogroup:owner always select.
const BuiltinAdmin = "admin@"

// hasRole reports whether the user with login and roles has role: one
// of its roles, or admin and owner for the built-in admin user.
func hasRole(login string, roles []string, role string) bool {
	return slices.Contains(roles, role) || (role == "admin" || role == "owner") && login == BuiltinAdmin
}

func isLetter(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }
