package server

import (
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

// adminSetUserRole gives a user the admin role or takes it away; a web
// admin session of theirs loses access at its next request.
func (s *Server) adminSetUserRole(w http.ResponseWriter, r *http.Request) {
	var req adminapi.RoleRequest
	if !readAdmin(w, r, &req) {
		return
	}
	isAdmin, err := parseRole(req.Role)
	if err != nil || req.Role == "" {
		writeErr(w, http.StatusBadRequest, fmt.Sprintf("role %q: want %q or %q", req.Role, adminapi.RoleAdmin, adminapi.RoleMember))
		return
	}
	u, err := s.st.SetUserAdmin(r.Context(), r.PathValue("name"), isAdmin)
	if err != nil {
		s.adminFail(w, err)
		return
	}
	s.hub.Changed() // policies may name autogroup:admin
	n, err := s.userNodes(r, u.Name)
	if err != nil {
		s.adminFail(w, err)
		return
	}
	s.log.Info("user role changed", "user", u.Name, "admin", u.Admin)
	writeJSON(w, http.StatusOK, apiUser(u, n))
}

// adminRevokeKey makes a key fail every later registration at once; the
// check is in the registration's own transaction (store.consumeKey).
// Nodes that already joined with it are not touched.
func (s *Server) adminRevokeKey(w http.ResponseWriter, r *http.Request) {
	k, err := s.st.RevokePreAuthKey(r.Context(), r.PathValue("id"), s.cfg.Now())
	if err != nil {
		s.adminFail(w, err)
		return
	}
	s.log.Info("auth key revoked", "auth_key_id", k.ID, "user", k.User)
	writeJSON(w, http.StatusOK, apiKey(k))
}

func (s *Server) adminDeleteKey(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.st.DeletePreAuthKey(r.Context(), id); err != nil {
		s.adminFail(w, err)
		return
	}
	s.log.Info("auth key deleted", "auth_key_id", id)
	writeJSON(w, http.StatusOK, adminapi.DeletedKey{ID: id})
}

func (s *Server) userNodes(r *http.Request, name string) (int, error) {
	nodes, err := s.st.Nodes(r.Context())
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

// adminSetUserDisabled disables or enables a user. Disabling takes all
// of the user's nodes out of every netmap and off every relay in one
// change, like a delete, but keeps them stored so enable brings them
// back with the same names and addresses.
func (s *Server) adminSetUserDisabled(disabled bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		u, err := s.st.SetUserDisabled(r.Context(), name, disabled)
		if err != nil {
			s.adminFail(w, err)
			return
		}
		s.hub.Changed()
		n, err := s.userNodes(r, u.Name)
		if err != nil {
			s.adminFail(w, err)
			return
		}
		s.log.Info("user access changed", "user", u.Name, "disabled", u.Disabled, "nodes", n)
		writeJSON(w, http.StatusOK, apiUser(u, n))
	}
}

// adminRenameUser renames a user with their nodes and keys. A user
// without an email is "name@" in policies, so rules naming the old login
// stop matching; the CLI says so.
func (s *Server) adminRenameUser(w http.ResponseWriter, r *http.Request) {
	var req adminapi.RenameRequest
	if !readAdmin(w, r, &req) {
		return
	}
	if err := store.CheckUserName(req.Name); err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	old := r.PathValue("name")
	u, err := s.st.RenameUser(r.Context(), old, req.Name)
	if err != nil {
		s.adminFail(w, err)
		return
	}
	s.hub.Changed() // peers see the new user name; policies recompile
	n, err := s.userNodes(r, u.Name)
	if err != nil {
		s.adminFail(w, err)
		return
	}
	s.log.Info("user renamed", "from", old, "to", u.Name)
	out := apiUser(u, n)
	out.OldName = old
	writeJSON(w, http.StatusOK, out)
}

// adminExpireNode expires a node's key now: peers drop it and its stream
// closes as for a key that expired on its own; the node must register
// again with an auth key (S12).
func (s *Server) adminExpireNode(w http.ResponseWriter, r *http.Request) {
	n, err := s.findNode(r, r.PathValue("ref"))
	if err != nil {
		s.adminFail(w, err)
		return
	}
	n, err = s.st.ExpireNode(r.Context(), n.ID, s.cfg.Now())
	if err != nil {
		s.adminFail(w, err)
		return
	}
	s.hub.Changed()
	s.log.Info("node key expired by admin", "node", n.Name, "id", n.ID)
	writeJSON(w, http.StatusOK, s.apiNode(n, false))
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
