package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/coord/policy"
	"github.com/lanmesh/lanmesh/coord/store"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// AdminHandler is the admin API. It has no authentication of its own: it
// must only be served on the 0600 unix socket (ListenAdmin), or behind
// apiAuth, which authenticates an API key and puts its Actor in the
// request's context. Without an actor in the context the caller is the
// socket's.
func (s *Server) AdminHandler() http.Handler {
	a := s.Admin()
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+adminapi.PathFingerprint, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, adminapi.Fingerprint{Fingerprint: s.fp})
	})
	type none = struct{}
	mux.HandleFunc("POST "+adminapi.PathKeys, handle(s, func(ctx context.Context, who Actor, r *http.Request, in adminapi.CreateKeyRequest) (adminapi.Key, error) {
		return a.CreateKey(ctx, who, in)
	}))
	mux.HandleFunc("GET "+adminapi.PathKeys, s.adminListKeys)
	mux.HandleFunc("GET "+adminapi.PathNodes, s.adminListNodes)
	mux.HandleFunc("DELETE "+adminapi.PathNodes+"/{ref}", handle(s, func(ctx context.Context, who Actor, r *http.Request, _ none) (adminapi.DeletedNode, error) {
		return a.DeleteNode(ctx, who, r.PathValue("ref"))
	}))
	mux.HandleFunc("GET "+adminapi.PathRoutes, s.adminListRoutes)
	mux.HandleFunc("POST "+adminapi.PathRoutesApprove, handle(s, func(ctx context.Context, who Actor, r *http.Request, in adminapi.ApproveRequest) (adminapi.ApprovedRoutes, error) {
		return a.ApproveRoutes(ctx, who, in)
	}))
	mux.HandleFunc("POST "+adminapi.PathNodes+"/{ref}/rename", handle(s, func(ctx context.Context, who Actor, r *http.Request, in adminapi.RenameRequest) (adminapi.RenamedNode, error) {
		return a.RenameNode(ctx, who, r.PathValue("ref"), in.Name)
	}))
	mux.HandleFunc("POST "+adminapi.PathUsers, handle(s, func(ctx context.Context, who Actor, r *http.Request, in adminapi.CreateUserRequest) (adminapi.User, error) {
		return a.CreateUser(ctx, who, in)
	}))
	mux.HandleFunc("GET "+adminapi.PathUsers, s.adminListUsers)
	mux.HandleFunc("DELETE "+adminapi.PathUsers+"/{name}", handle(s, func(ctx context.Context, who Actor, r *http.Request, _ none) (adminapi.DeletedUser, error) {
		return a.DeleteUser(ctx, who, r.PathValue("name"))
	}))
	for action, disabled := range map[string]bool{"disable": true, "enable": false} {
		mux.HandleFunc("POST "+adminapi.PathUsers+"/{name}/"+action, handle(s, func(ctx context.Context, who Actor, r *http.Request, _ none) (adminapi.User, error) {
			return a.SetUserDisabled(ctx, who, r.PathValue("name"), disabled)
		}))
	}
	mux.HandleFunc("POST "+adminapi.PathUsers+"/{name}/rename", handle(s, func(ctx context.Context, who Actor, r *http.Request, in adminapi.RenameRequest) (adminapi.User, error) {
		return a.RenameUser(ctx, who, r.PathValue("name"), in.Name)
	}))
	mux.HandleFunc("POST "+adminapi.PathUsers+"/{name}/role", handle(s, func(ctx context.Context, who Actor, r *http.Request, in adminapi.RoleRequest) (adminapi.User, error) {
		return a.SetUserRole(ctx, who, r.PathValue("name"), in.Role)
	}))
	mux.HandleFunc("POST "+adminapi.PathNodes+"/{ref}/tags", handle(s, func(ctx context.Context, who Actor, r *http.Request, in adminapi.TagsRequest) (adminapi.Node, error) {
		return a.SetNodeTags(ctx, who, r.PathValue("ref"), in.Tags)
	}))
	mux.HandleFunc("POST "+adminapi.PathNodes+"/{ref}/expiry", handle(s, func(ctx context.Context, who Actor, r *http.Request, in adminapi.ExpiryRequest) (adminapi.Node, error) {
		return a.SetNodeExpiry(ctx, who, r.PathValue("ref"), in)
	}))
	mux.HandleFunc("POST "+adminapi.PathKeys+"/{id}/revoke", handle(s, func(ctx context.Context, who Actor, r *http.Request, _ none) (adminapi.Key, error) {
		return a.RevokeKey(ctx, who, r.PathValue("id"))
	}))
	mux.HandleFunc("DELETE "+adminapi.PathKeys+"/{id}", handle(s, func(ctx context.Context, who Actor, r *http.Request, _ none) (adminapi.DeletedKey, error) {
		id := r.PathValue("id")
		return adminapi.DeletedKey{ID: id}, a.DeleteKey(ctx, who, id)
	}))
	mux.HandleFunc("POST "+adminapi.PathNodes+"/{ref}/expire", handle(s, func(ctx context.Context, who Actor, r *http.Request, _ none) (adminapi.Node, error) {
		return a.ExpireNode(ctx, who, r.PathValue("ref"))
	}))
	mux.HandleFunc("POST "+adminapi.PathPolicyCheck, handle(s, func(ctx context.Context, _ Actor, r *http.Request, in adminapi.PolicyRequest) (adminapi.PolicyResult, error) {
		return a.CheckPolicy(ctx, in)
	}))
	mux.HandleFunc("POST "+adminapi.PathPolicy, handle(s, func(ctx context.Context, who Actor, r *http.Request, in adminapi.PolicyRequest) (adminapi.PolicyResult, error) {
		return a.SetPolicy(ctx, who, in)
	}))
	mux.HandleFunc("GET "+adminapi.PathPolicy, s.adminGetPolicy)
	mux.HandleFunc("GET "+adminapi.PathPolicyHistory, s.adminPolicyHistory)
	s.auditRoutes(mux)
	return mux
}

var tagRE = regexp.MustCompile(`^tag:[a-z0-9][a-z0-9-]{0,62}$`)

// maxKeyExpiry bounds pre-auth keys: a forgotten key should not live forever.
const maxKeyExpiry = 10 * 365 * 24 * time.Hour

func (s *Server) adminListKeys(w http.ResponseWriter, r *http.Request) {
	keys, err := s.st.PreAuthKeys(r.Context())
	if err != nil {
		s.adminFail(w, err)
		return
	}
	out := []adminapi.Key{}
	for _, k := range keys {
		out = append(out, apiKey(k))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) adminListNodes(w http.ResponseWriter, r *http.Request) {
	nodes, err := s.st.Nodes(r.Context())
	if err != nil {
		s.adminFail(w, err)
		return
	}
	snap, err := s.hub.Snapshot(r.Context())
	if err != nil {
		s.adminFail(w, err)
		return
	}
	out := []adminapi.Node{}
	for _, n := range nodes {
		live, _ := snap.Node(wire.NodeID(n.ID))
		out = append(out, s.apiNode(n, live.Online, snap.KeyExpiryOff(n.ID)))
	}
	writeJSON(w, http.StatusOK, out)
}

// apiNode is the admin API's form of a node; expiryOff says the policy
// in force turns its key expiry off (KeyExpiry stays the stored one).
func (s *Server) apiNode(n store.Node, online, expiryOff bool) adminapi.Node {
	return adminapi.Node{
		ID: n.ID, Name: n.Name, Hostname: n.Hostname, OS: n.OS,
		NodeKey: n.NodeKey.String(), Machine: n.MachineKey.String(),
		IPv4: n.IPv4, IPv6: n.IPv6, User: n.User, Tags: n.Tags,
		Online: online, Expired: !expiryOff && n.Expired(s.cfg.Now()), KeyExpiryOffByPolicy: expiryOff,
		Endpoints: n.Endpoints, AdvertisedRoutes: n.AdvertisedRoutes, ApprovedRoutes: n.ApprovedRoutes,
		KeyExpiry: n.KeyExpiry, LastSeen: n.LastSeen, Created: n.Created, Ephemeral: n.Ephemeral,
	}
}

// findNode resolves an ID or a name.
func (s *Server) findNode(ctx context.Context, ref string) (store.Node, error) {
	nodes, err := s.st.Nodes(ctx)
	if err != nil {
		return store.Node{}, err
	}
	id, idErr := strconv.ParseInt(ref, 10, 64)
	for _, n := range nodes {
		if (idErr == nil && n.ID == id) || strings.EqualFold(n.Name, ref) {
			return n, nil
		}
	}
	return store.Node{}, fmt.Errorf("node %q: %w", ref, store.ErrNotFound)
}

func (s *Server) adminListRoutes(w http.ResponseWriter, r *http.Request) {
	nodes, err := s.st.Nodes(r.Context())
	if err != nil {
		s.adminFail(w, err)
		return
	}
	// The snapshot's routes are the effective ones: approved by an admin
	// or by the policy's autoApprovers.
	snap, err := s.hub.Snapshot(r.Context())
	if err != nil {
		s.adminFail(w, err)
		return
	}
	out := []adminapi.Route{}
	for _, n := range nodes {
		live, _ := snap.Node(wire.NodeID(n.ID))
		for _, p := range n.AdvertisedRoutes {
			manual := containsPrefix(n.ApprovedRoutes, p)
			auto := !manual && containsPrefix(live.Routes, p.Masked())
			out = append(out, adminapi.Route{NodeID: n.ID, Node: n.Name, Prefix: p, Approved: manual || auto, AutoApproved: auto})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) adminFail(w http.ResponseWriter, err error) {
	code, msg := ErrorStatus(err)
	if code >= 500 {
		s.log.Error("admin request failed", "err", err)
	}
	writeErr(w, code, msg)
}

func readAdmin(w http.ResponseWriter, r *http.Request, v any) bool {
	// Room for the largest policy file, JSON-escaped (docs/policy.md).
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 3*policy.MaxPolicyBytes))
	if err != nil {
		writeErr(w, http.StatusRequestEntityTooLarge, "request body too large")
		return false
	}
	if err := strictJSON(b, v); err != nil {
		writeErr(w, http.StatusBadRequest, "malformed request: "+err.Error())
		return false
	}
	return true
}

func containsPrefix(list []netip.Prefix, p netip.Prefix) bool {
	for _, q := range list {
		if q == p {
			return true
		}
	}
	return false
}
