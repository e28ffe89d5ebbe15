package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/coord/netmap"
	"github.com/lanmesh/lanmesh/coord/policy"
	"github.com/lanmesh/lanmesh/coord/store"
)

// Admin handlers for users, the policy and node names.

func (s *Server) adminCreateUser(w http.ResponseWriter, r *http.Request) {
	var req adminapi.CreateUserRequest
	if !readAdmin(w, r, &req) {
		return
	}
	if err := store.CheckUserName(req.Name); err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Email != "" {
		if err := store.CheckEmail(req.Email); err != nil {
			writeErr(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	isAdmin, err := parseRole(req.Role)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	u, err := s.st.CreateUser(r.Context(), store.User{Name: req.Name, Email: req.Email, Admin: isAdmin, Created: s.cfg.Now()})
	if err != nil {
		s.adminFail(w, err)
		return
	}
	// A new user may make a stored policy's user names resolve.
	s.hub.Changed()
	s.log.Info("user created", "user", u.Name)
	writeJSON(w, http.StatusOK, apiUser(u, 0))
}

func (s *Server) adminListUsers(w http.ResponseWriter, r *http.Request) {
	users, err := s.st.Users(r.Context())
	if err != nil {
		s.adminFail(w, err)
		return
	}
	nodes, err := s.st.Nodes(r.Context())
	if err != nil {
		s.adminFail(w, err)
		return
	}
	count := map[string]int{}
	for _, n := range nodes {
		count[n.User]++
	}
	out := []adminapi.User{}
	for _, u := range users {
		out = append(out, apiUser(u, count[u.Name]))
	}
	writeJSON(w, http.StatusOK, out)
}

// adminDeleteUser removes a user with their keys and nodes in one store
// transaction and one netmap change: every peer loses all of the user's
// nodes in the same delta, and their streams close (S15).
func (s *Server) adminDeleteUser(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	// The built-in user "admin" may go too: administering needs only the
	// admin socket, never a user. Keys made without --user then fail with
	// an error that says how to create it again (CreatePreAuthKey).
	ids, err := s.st.DeleteUser(r.Context(), name)
	if err != nil {
		s.adminFail(w, err)
		return
	}
	s.hub.Changed()
	s.log.Info("user deleted", "user", name, "nodes", ids)
	if ids == nil {
		ids = []int64{}
	}
	writeJSON(w, http.StatusOK, adminapi.DeletedUser{Name: name, Nodes: ids})
}

func (s *Server) adminRenameNode(w http.ResponseWriter, r *http.Request) {
	var req adminapi.RenameRequest
	if !readAdmin(w, r, &req) {
		return
	}
	n, err := s.findNode(r, r.PathValue("ref"))
	if err != nil {
		s.adminFail(w, err)
		return
	}
	if store.DNSLabel(req.Name) != req.Name {
		writeErr(w, http.StatusBadRequest, "name "+quote(req.Name)+": want a DNS label (lower-case letters, digits, inner hyphens, at most 59 characters)")
		return
	}
	old := n.Name
	n, err = s.st.RenameNode(r.Context(), n.ID, req.Name)
	if err != nil {
		s.adminFail(w, err)
		return
	}
	s.hub.Changed() // peers get PeersChanged, the node a new Self
	s.log.Info("node renamed", "id", n.ID, "from", old, "to", n.Name)
	writeJSON(w, http.StatusOK, map[string]any{"id": n.ID, "name": n.Name, "old_name": old})
}

// checkPolicy parses a policy and runs its tests against the live nodes;
// an error is the user's to fix and lists every problem with positions.
func (s *Server) checkPolicy(ctx context.Context, req adminapi.PolicyRequest) (*policy.Policy, adminapi.PolicyResult, error, error) {
	var res adminapi.PolicyResult
	name := req.Name
	if name == "" {
		name = "policy"
	}
	p, err := policy.Parse(name, []byte(req.Body))
	if err != nil {
		return nil, res, err, nil
	}
	nodes, err := s.st.Nodes(ctx)
	if err != nil {
		return nil, res, nil, err
	}
	users, err := s.st.Users(ctx)
	if err != nil {
		return nil, res, nil, err
	}
	now := s.cfg.Now()
	live := nodes[:0]
	for _, n := range nodes {
		if !n.Expired(now) {
			live = append(live, n)
		}
	}
	if err := policy.Check(p, netmap.PolicyNodes(live, netmap.Logins(users), netmap.UserGroups(users))); err != nil {
		return nil, res, err, nil
	}
	res.Nodes, res.Tests = len(live), len(p.Tests)
	return p, res, nil, nil
}

func (s *Server) adminCheckPolicy(w http.ResponseWriter, r *http.Request) {
	var req adminapi.PolicyRequest
	if !readAdmin(w, r, &req) {
		return
	}
	_, res, bad, err := s.checkPolicy(r.Context(), req)
	switch {
	case err != nil:
		s.adminFail(w, err)
	case bad != nil:
		writeErr(w, http.StatusBadRequest, bad.Error())
	default:
		writeJSON(w, http.StatusOK, res)
	}
}

// adminSetPolicy stores a policy only if it parses, compiles and passes
// its own tests: a broken policy never reaches nodes.
func (s *Server) adminSetPolicy(w http.ResponseWriter, r *http.Request) {
	var req adminapi.PolicyRequest
	if !readAdmin(w, r, &req) {
		return
	}
	s.policyMu.Lock()
	defer s.policyMu.Unlock()
	_, res, bad, err := s.checkPolicy(r.Context(), req)
	switch {
	case err != nil:
		s.adminFail(w, err)
		return
	case bad != nil:
		s.log.Info("policy refused", "name", req.Name)
		writeErr(w, http.StatusBadRequest, bad.Error())
		return
	}
	v, err := s.st.SetPolicy(r.Context(), req.Body, s.cfg.Now())
	if err != nil {
		s.adminFail(w, err)
		return
	}
	s.hub.Changed()
	res.Version = v.Version
	s.log.Info("policy set", "version", v.Version, "tests", res.Tests)
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) adminGetPolicy(w http.ResponseWriter, r *http.Request) {
	p, err := s.st.Policy(r.Context())
	if errors.Is(err, store.ErrNotFound) {
		writeJSON(w, http.StatusOK, adminapi.Policy{Default: true})
		return
	}
	if err != nil {
		s.adminFail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, adminapi.Policy{Version: p.Version, Body: p.Body, Created: p.Created})
}

func (s *Server) adminPolicyHistory(w http.ResponseWriter, r *http.Request) {
	hist, err := s.st.PolicyHistory(r.Context())
	if err != nil {
		s.adminFail(w, err)
		return
	}
	out := []adminapi.Policy{}
	for _, p := range hist {
		out = append(out, adminapi.Policy{Version: p.Version, Body: p.Body, Created: p.Created})
	}
	writeJSON(w, http.StatusOK, out)
}

// Snapshot exposes the current netmap snapshot (tests, load tests).
func (s *Server) Snapshot(ctx context.Context) (*netmap.Snapshot, error) {
	return s.hub.Snapshot(ctx)
}

// NotifyChanged tells the server that the store was written behind its
// back (load tests insert nodes directly).
func (s *Server) NotifyChanged() { s.hub.Changed() }

func quote(s string) string { return strconv.Quote(s) }
