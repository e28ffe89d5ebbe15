package server

import (
	"context"
	"fmt"
	"net/http"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/coord/store"
)

// Admin handlers that take access away (and give it back): revoking and
// deleting pre-auth keys, disabling, enabling and renaming users, and
// expiring a node's key. Each store change that affects nodes is followed
// by one hub.Changed, so every netmap stream, coord's embedded relay and
// every standalone relay watching coord (derpwatch.go) act on it at once
// (S15, S20).

func apiKey(k store.PreAuthKey) adminapi.Key {
	return adminapi.Key{ID: k.ID, Reusable: k.Reusable, Tags: k.Tags, User: k.User, Expiry: k.Expiry, Used: k.Used, Created: k.Created, Revoked: k.Revoked, Ephemeral: k.Ephemeral}
}

func apiUser(u store.User, nodes int) adminapi.User {
	role := adminapi.RoleMember
	if u.Admin {
		role = adminapi.RoleAdmin
	}
	return adminapi.User{Name: u.Name, Email: u.Email, Login: u.Login(), Nodes: nodes, Created: u.Created, Disabled: u.Disabled, Role: role}
}

// parseRole reads an admin API role ("" is member).
func parseRole(role string) (bool, error) {
	switch role {
	case adminapi.RoleAdmin:
		return true, nil
	case adminapi.RoleMember, "":
		return false, nil
	}
	return false, fmt.Errorf("role %q: want %q or %q", role, adminapi.RoleAdmin, adminapi.RoleMember)
}

func (s *Server) userNodes(ctx context.Context, name string) (int, error) {
	nodes, err := s.st.Nodes(ctx)
	if err != nil {
		return 0, err
	}
	c := 0
	for _, n := range nodes {
		if n.User == name {
			c++
		}
	}
	return c, nil
}

// userDisabled reports whether name is a disabled user.
func (s *Server) userDisabled(r *http.Request, name string) (bool, error) {
	users, err := s.st.Users(r.Context())
	if err != nil {
		return false, err
	}
	for _, u := range users {
		if u.Name == name {
			return u.Disabled, nil
		}
	}
	return false, nil
}
