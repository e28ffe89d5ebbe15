package server

import (
	"io"
	"net/http"
	"strings"

	"github.com/lanmesh/lanmesh/internal/key"
)

// PathDerpVerify is where relays (lanmesh-derp --verify-url) ask whether a
// node key may use them (S9).
const PathDerpVerify = "/v1/derp/verify"

type derpVerifyRequest struct {
	NodeKey key.NodePublic `json:"node_key"`
}

type derpVerifyResponse struct {
	Allowed bool `json:"allowed"`
}

// handleDerpVerify answers a relay: allowed only for the key of a live
// (registered, not expired, not deleted) node. The relay proves itself with
// the bearer token from Config.DerpToken; without one configured the
// endpoint refuses everything, so no relay is ever open by accident.
func (s *Server) handleDerpVerify(w http.ResponseWriter, r *http.Request) {
	if s.cfg.DerpToken == "" {
		writeErr(w, http.StatusServiceUnavailable, "relay verification is not configured on this coord (--derp-token-file)")
		return
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || !key.Equal([]byte(tok), []byte(s.cfg.DerpToken)) {
		writeErr(w, http.StatusUnauthorized, "missing or wrong relay token")
		return
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4096))
	if err != nil {
		writeErr(w, http.StatusRequestEntityTooLarge, "request body too large")
		return
	}
	var req derpVerifyRequest
	if err := strictJSON(b, &req); err != nil || req.NodeKey.IsZero() {
		writeErr(w, http.StatusBadRequest, "malformed verify request: want {\"node_key\":\"<base64>\"}")
		return
	}
	snap, err := s.hub.Snapshot(r.Context())
	if err != nil {
		s.log.Error("derp verify: snapshot", "err", err)
		writeErr(w, http.StatusInternalServerError, "internal error; see coord's log")
		return
	}
	allowed := false
	for _, n := range snap.Nodes {
		if n.Key == req.NodeKey {
			allowed = true
			break
		}
	}
	s.log.Debug("relay asked about node key", "key", req.NodeKey.ShortString(), "allowed", allowed)
	writeJSON(w, http.StatusOK, derpVerifyResponse{Allowed: allowed})
}
