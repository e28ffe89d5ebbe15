package server

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/lanmesh/lanmesh/coord/netmap"
	"github.com/lanmesh/lanmesh/derp"
	"github.com/lanmesh/lanmesh/internal/key"
)

// PathDerpVerify is where relays (lanmesh-derp --verify-url) ask whether a
// node key may use them (S9); derp.WatchPath is where they keep a stream
// of the allowed keys open.
const PathDerpVerify = "/v1/derp/verify"

type derpVerifyRequest struct {
	NodeKey key.NodePublic `json:"node_key"`
}

type derpVerifyResponse struct {
	Allowed bool `json:"allowed"`
}

// derpAuth checks a relay's bearer token; on failure it has answered.
func (s *Server) derpAuth(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.DerpToken == "" {
		writeErr(w, http.StatusServiceUnavailable, "relay verification is not configured on this coord (--derp-token-file)")
		return false
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || !key.Equal([]byte(tok), []byte(s.cfg.DerpToken)) {
		writeErr(w, http.StatusUnauthorized, "missing or wrong relay token")
		return false
	}
	return true
}

// handleDerpVerify answers a relay: allowed only for the key of a live
// (registered, not expired, not deleted) node. The relay proves itself with
// the bearer token from Config.DerpToken; without one configured the
// endpoint refuses everything, so no relay is ever open by accident.
func (s *Server) handleDerpVerify(w http.ResponseWriter, r *http.Request) {
	if !s.derpAuth(w, r) {
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

// handleDerpWatch streams the set of node keys allowed on relays to a
// standalone relay (derp.CoordWatcher): the whole set first, then one
// delta per change of the mesh, and an empty line every
// derp.WatchKeepAlive. It reads the same snapshot as the netmap streams
// and the embedded relay, so a node deleted, expired, or whose user is
// deleted or disabled, leaves every relay in the same change (S15, S20).
func (s *Server) handleDerpWatch(w http.ResponseWriter, r *http.Request) {
	if !s.derpAuth(w, r) {
		return
	}
	ctx := r.Context()
	changes, unsub := s.hub.Subscribe()
	defer unsub()
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{}) // no body; the stream is long-lived
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	var seq int64
	send := func(u derp.KeysUpdate) bool {
		seq++
		u.Seq = seq
		b, err := json.Marshal(u)
		if err != nil {
			return false
		}
		rc.SetWriteDeadline(time.Now().Add(2 * derp.WatchKeepAlive))
		if _, err := w.Write(append(b, '\n')); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	log := s.log.With("relay", r.RemoteAddr)
	log.Info("relay watching the key set")
	defer log.Info("relay stopped watching the key set")
	var sent map[key.NodePublic]struct{}
	keep := time.NewTicker(derp.WatchKeepAlive)
	defer keep.Stop()
	var lastSnap *netmap.Snapshot
	for dirty := true; ; {
		if dirty {
			dirty = false
			snap, err := s.hub.Snapshot(ctx)
			if err != nil {
				if ctx.Err() == nil {
					log.Error("derp watch: snapshot", "err", err)
				}
				return
			}
			if snap != lastSnap {
				lastSnap = snap
				now := make(map[key.NodePublic]struct{}, len(snap.Nodes))
				for _, n := range snap.Nodes {
					now[n.Key] = struct{}{}
				}
				u := derp.KeysUpdate{Full: sent == nil}
				for k := range now {
					if _, ok := sent[k]; !ok {
						u.Add = append(u.Add, k)
					}
				}
				for k := range sent {
					if _, ok := now[k]; !ok {
						u.Remove = append(u.Remove, k)
					}
				}
				sent = now
				if u.Full || len(u.Add)+len(u.Remove) > 0 {
					if !send(u) {
						return
					}
					keep.Reset(derp.WatchKeepAlive)
				}
			}
		}
		select {
		case <-changes:
			dirty = true
		case <-keep.C:
			if !send(derp.KeysUpdate{}) {
				return
			}
		case <-ctx.Done():
			return
		case <-s.done:
			return
		}
	}
}
