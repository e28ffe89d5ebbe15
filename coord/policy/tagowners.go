package policy

import (
	"fmt"
	"slices"
	"strings"
)

// TagOwnedBy reports whether a user may put tag on their nodes (a
// pre-auth key with the tag, or a node asking for it): the policy's
// tagOwners must list the tag, and one of its owners must be the user's
// login, a group the user is in (listed in the policy's groups, or one
// of the user's IdP groups), autogroup:member (every user), or the
// autogroup of one of the user's roles (autogroup:admin for a user with
// the admin role; the built-in admin user has admin and owner, as in
// selectors). A tag owning a tag grants nothing to a user here: keys and
// nodes belong to users. On a nil policy (none set) it is false.
func (p *Policy) TagOwnedBy(tag, login string, idpGroups, roles []string) bool {
	if p == nil {
		return false
	}
	owners, ok := p.TagOwners[tag]
	if !ok {
		return false
	}
	for _, o := range owners {
		switch {
		case o == "autogroup:member":
			return true
		case strings.HasPrefix(o, "autogroup:"):
			if hasRole(login, roles, strings.TrimPrefix(o, "autogroup:")) {
				return true
			}
		case strings.HasPrefix(o, "group:"):
			if p.groupUsers[o][login] || slices.Contains(idpGroups, strings.TrimPrefix(o, "group:")) {
				return true
			}
		case o == login:
			return true
		}
	}
	return false
}

// CheckTagOwners returns an error naming the first of tags the user may
// not own, with the fix; nil when it owns them all.
func (p *Policy) CheckTagOwners(tags []string, user, login string, idpGroups, roles []string) error {
	for _, t := range tags {
		if _, ok := p.TagOwners[t]; !ok {
			return fmt.Errorf("tag %q is not in the policy's tagOwners: add it there (e.g. \"tagOwners\": {%q: [%q]}) or use another tag", t, t, login)
		}
		if !p.TagOwnedBy(t, login, idpGroups, roles) {
			return fmt.Errorf("user %s (%s) does not own tag %q: the policy's tagOwners for it are %s; add the user (or one of their groups) there, or create the key for an owner (--user)",
				user, login, t, strings.Join(p.TagOwners[t], ", "))
		}
	}
	return nil
}
