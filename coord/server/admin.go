package server

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
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
// must only be served on the 0600 unix socket (ListenAdmin).
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+adminapi.PathFingerprint, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, adminapi.Fingerprint{Fingerprint: s.fp})
	})
	mux.HandleFunc("POST "+adminapi.PathKeys, s.adminCreateKey)
	mux.HandleFunc("GET "+adminapi.PathKeys, s.adminListKeys)
	mux.HandleFunc("GET "+adminapi.PathNodes, s.adminListNodes)
	mux.HandleFunc("DELETE "+adminapi.PathNodes+"/{ref}", s.adminDeleteNode)
	mux.HandleFunc("GET "+adminapi.PathRoutes, s.adminListRoutes)
	mux.HandleFunc("POST "+adminapi.PathRoutesApprove, s.adminApproveRoutes)
	mux.HandleFunc("POST "+adminapi.PathNodes+"/{ref}/rename", s.adminRenameNode)
	mux.HandleFunc("POST "+adminapi.PathUsers, s.adminCreateUser)
	mux.HandleFunc("GET "+adminapi.PathUsers, s.adminListUsers)
	mux.HandleFunc("DELETE "+adminapi.PathUsers+"/{name}", s.adminDeleteUser)
	mux.HandleFunc("POST "+adminapi.PathUsers+"/{name}/disable", s.adminSetUserDisabled(true))
	mux.HandleFunc("POST "+adminapi.PathUsers+"/{name}/enable", s.adminSetUserDisabled(false))
	mux.HandleFunc("POST "+adminapi.PathUsers+"/{name}/rename", s.adminRenameUser)
	mux.HandleFunc("POST "+adminapi.PathUsers+"/{name}/role", s.adminSetUserRole)
	mux.HandleFunc("POST "+adminapi.PathKeys+"/{id}/revoke", s.adminRevokeKey)
	mux.HandleFunc("DELETE "+adminapi.PathKeys+"/{id}", s.adminDeleteKey)
	mux.HandleFunc("POST "+adminapi.PathNodes+"/{ref}/expire", s.adminExpireNode)
	mux.HandleFunc("POST "+adminapi.PathNodes+"/{ref}/expiry", s.adminSetNodeExpiry)
	mux.HandleFunc("POST "+adminapi.PathPolicyCheck, s.adminCheckPolicy)
	mux.HandleFunc("POST "+adminapi.PathPolicy, s.adminSetPolicy)
	mux.HandleFunc("GET "+adminapi.PathPolicy, s.adminGetPolicy)
	mux.HandleFunc("GET "+adminapi.PathPolicyHistory, s.adminPolicyHistory)
	return mux
}

var tagRE = regexp.MustCompile(`^tag:[a-z0-9][a-z0-9-]{0,62}$`)

// maxKeyExpiry bounds pre-auth keys: a forgotten key should not live forever.
const maxKeyExpiry = 10 * 365 * 24 * time.Hour

func (s *Server) adminCreateKey(w http.ResponseWriter, r *http.Request) {
	var req adminapi.CreateKeyRequest
	if !readAdmin(w, r, &req) {
		return
	}
	exp, err := time.ParseDuration(req.Expiry)
	if err != nil || exp <= 0 || exp > maxKeyExpiry {
		writeErr(w, http.StatusBadRequest, fmt.Sprintf("expiry %q: want a positive duration up to %v, e.g. 1h or 720h", req.Expiry, maxKeyExpiry))
		return
	}
	for _, t := range req.Tags {
		if !tagRE.MatchString(t) {
			writeErr(w, http.StatusBadRequest, fmt.Sprintf("tag %q: want tag:name (lower-case letters, digits, hyphens)", t))
			return
		}
	}
	var idb [6]byte
	var sec [24]byte
	rand.Read(idb[:])
	rand.Read(sec[:])
	ak := wire.AuthKey{ID: hex.EncodeToString(idb[:]), Secret: base64.RawURLEncoding.EncodeToString(sec[:]), Fingerprint: s.fp}
	sum := sha256.Sum256([]byte(ak.Secret))
	now := s.cfg.Now()
	if req.User == "" {
		req.User = store.DefaultUser
	}
	// Tags must be the key user's to give (the policy's tagOwners).
	if err := s.checkTagOwners(r.Context(), req.Tags, req.User); err != nil {
		var te errTagOwner
		if errors.As(err, &te) {
			s.log.Info("auth key refused", "user", req.User, "tags", req.Tags, "reason", err)
			writeErr(w, http.StatusForbidden, "create auth key: "+err.Error())
			return
		}
		s.adminFail(w, err)
		return
	}
	k := store.PreAuthKey{ID: ak.ID, Hash: sum[:], Reusable: req.Reusable, Tags: req.Tags, User: req.User, Expiry: now.Add(exp), Created: now, Ephemeral: req.Ephemeral}
	if err := s.st.CreatePreAuthKey(r.Context(), k); err != nil {
		s.adminFail(w, err) // unknown or disabled user: the error says what to do
		return
	}
	s.log.Info("auth key created", "auth_key", ak.Redacted(), "user", k.User, "reusable", k.Reusable, "ephemeral", k.Ephemeral, "tags", k.Tags, "expiry", k.Expiry)
	writeJSON(w, http.StatusOK, adminapi.Key{ID: k.ID, Key: ak.String(), Reusable: k.Reusable, Tags: k.Tags, User: k.User, Expiry: k.Expiry, Created: k.Created, Ephemeral: k.Ephemeral})
}

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
		out = append(out, s.apiNode(n, live.Online))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiNode(n store.Node, online bool) adminapi.Node {
	return adminapi.Node{
		ID: n.ID, Name: n.Name, Hostname: n.Hostname, OS: n.OS,
		NodeKey: n.NodeKey.String(), Machine: n.MachineKey.String(),
		IPv4: n.IPv4, IPv6: n.IPv6, User: n.User, Tags: n.Tags,
		Online: online, Expired: n.Expired(s.cfg.Now()),
		Endpoints: n.Endpoints, AdvertisedRoutes: n.AdvertisedRoutes, ApprovedRoutes: n.ApprovedRoutes,
		KeyExpiry: n.KeyExpiry, LastSeen: n.LastSeen, Created: n.Created, Ephemeral: n.Ephemeral,
	}
}

// findNode resolves an ID or a name.
func (s *Server) findNode(r *http.Request, ref string) (store.Node, error) {
	nodes, err := s.st.Nodes(r.Context())
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

func (s *Server) adminDeleteNode(w http.ResponseWriter, r *http.Request) {
	n, err := s.findNode(r, r.PathValue("ref"))
	if err != nil {
		s.adminFail(w, err)
		return
	}
	if err := s.st.DeleteNode(r.Context(), n.ID); err != nil {
		s.adminFail(w, err)
		return
	}
	// Every stream re-reads the mesh now: peers get PeersRemoved and the
	// node's own stream closes (S15).
	s.hub.Changed()
	s.log.Info("node deleted", "node", n.Name, "id", n.ID)
	writeJSON(w, http.StatusOK, map[string]any{"deleted": n.ID, "name": n.Name})
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

func (s *Server) adminApproveRoutes(w http.ResponseWriter, r *http.Request) {
	var req adminapi.ApproveRequest
	if !readAdmin(w, r, &req) {
		return
	}
	var routes []netip.Prefix
	for _, c := range req.Routes {
		p, err := netip.ParsePrefix(strings.TrimSpace(c))
		if err != nil {
			writeErr(w, http.StatusBadRequest, fmt.Sprintf("route %q: not a CIDR prefix like 192.168.1.0/24", c))
			return
		}
		if err := checkRoute(p); err != nil {
			writeErr(w, http.StatusBadRequest, "route "+err.Error())
			return
		}
		routes = append(routes, p)
	}
	if len(routes) == 0 {
		writeErr(w, http.StatusBadRequest, "no routes given")
		return
	}
	n, err := s.findNode(r, req.Node)
	if err != nil {
		s.adminFail(w, err)
		return
	}
	n, err = s.st.ApproveRoutes(r.Context(), n.ID, routes)
	if err != nil {
		s.adminFail(w, err)
		return
	}
	s.hub.Changed()
	s.log.Info("routes approved", "node", n.Name, "routes", routes)
	writeJSON(w, http.StatusOK, map[string]any{"node": n.Name, "approved_routes": n.ApprovedRoutes})
}

func (s *Server) adminFail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeErr(w, http.StatusNotFound, err.Error())
	case errors.Is(err, store.ErrExists), errors.Is(err, store.ErrNameTaken), errors.Is(err, store.ErrUserDisabled):
		writeErr(w, http.StatusConflict, err.Error())
	case errors.Is(err, store.ErrNotAdvertised):
		writeErr(w, http.StatusBadRequest, err.Error()+": the node must advertise it first (lanmesh up --advertise-routes)")
	default:
		s.log.Error("admin request failed", "err", err)
		writeErr(w, http.StatusInternalServerError, "internal error; see coord's log")
	}
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
