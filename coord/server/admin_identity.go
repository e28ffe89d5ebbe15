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
	// Live as they will be once p is in force: p's nodeAttrs may keep
	// nodes past their stored key expiry.
	off := netmap.KeyExpiryOff(p, nodes, users)
	live := nodes[:0]
	for _, n := range nodes {
		if off[n.ID] || !n.Expired(now) {
			live = append(live, n)
		}
	}
	if err := policy.Check(p, netmap.PolicyNodes(live, users)); err != nil {
		return nil, res, err, nil
	}
	res.Nodes, res.Tests = len(live), len(p.Tests)
	return p, res, nil, nil
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
