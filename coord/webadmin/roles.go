package webadmin

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/lanmesh/lanmesh/coord/policy"
	"github.com/lanmesh/lanmesh/coord/store"
)

// Who is an admin (docs/identity.md, "Web admin"):
//
//   - a user with the admin role (lanmesh-coord users create --admin,
//     users role NAME admin, or the Users page): Tailscale's Admin role,
//     which policies name autogroup:admin;
//   - a member of one of the policy groups given to coord with
//     --admin-group (e.g. group:netadmins): the users the current policy
//     lists under it (nested groups included), and users whose IdP groups
//     include its name (netadmins), as group:netadmins selects them in ACLs.
//
// It is checked at login and again on every request, so taking the role
// away, editing the policy's group or disabling the user ends access at
// the next click.

// adminReason says why u is an admin, or "" if they are not.
func (a *App) adminReason(ctx context.Context, u store.User) (string, error) {
	if u.Disabled {
		return "", nil
	}
	if u.Admin {
		return "role admin", nil
	}
	if len(a.cfg.AdminGroups) == 0 {
		return "", nil
	}
	var groups map[string][]string
	pv, err := a.cfg.Store.Policy(ctx)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return "", err
	default:
		// A stored policy parsed when it was set; if a newer coord
		// refuses it, its groups grant nothing.
		if p, err := policy.Parse("policy", []byte(pv.Body)); err == nil {
			groups = p.Groups
		}
	}
	for _, g := range a.cfg.AdminGroups {
		if slices.Contains(u.Groups, strings.TrimPrefix(g, "group:")) {
			return "IdP group " + strings.TrimPrefix(g, "group:") + " (" + g + ")", nil
		}
		if groupHas(groups, g, u.Login(), map[string]bool{}) {
			return "policy " + g, nil
		}
	}
	return "", nil
}

// groupHas reports whether group g of the policy lists login, directly
// or through nested groups (the policy refuses cycles; seen guards anyway).
func groupHas(groups map[string][]string, g, login string, seen map[string]bool) bool {
	if seen[g] {
		return false
	}
	seen[g] = true
	for _, m := range groups[g] {
		if strings.HasPrefix(m, "group:") {
			if groupHas(groups, m, login, seen) {
				return true
			}
		} else if strings.EqualFold(m, login) {
			return true
		}
	}
	return false
}

// CheckAdminGroup validates an --admin-group value.
func CheckAdminGroup(g string) error {
	name, ok := strings.CutPrefix(g, "group:")
	if !ok || name == "" || strings.ContainsAny(name, " \t,:") {
		return errors.New("admin group " + quote(g) + ": want a policy group name like group:netadmins")
	}
	return nil
}

func quote(s string) string { return "\"" + s + "\"" }
