package server

import (
	"crypto/sha256"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/lanmesh/lanmesh/coord/netmap"
	"github.com/lanmesh/lanmesh/coord/store"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	mk, body, nonce, ok := s.verify(w, r, wire.PathRegister)
	if !ok {
		return
	}
	req, err := decodeRegister(body)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	reg := store.Registration{
		MachineKey:  mk,
		NodeKey:     req.NodeKey,
		Hostname:    req.Hostname,
		OS:          req.OS,
		KeyLifetime: s.cfg.KeyLifetime,
		Now:         s.cfg.Now(),
	}
	keyID := ""
	if req.AuthKey != "" {
		ak, err := wire.ParseAuthKey(req.AuthKey)
		if err != nil {
			writeErr(w, http.StatusBadRequest, err.Error())
			return
		}
		sum := sha256.Sum256([]byte(ak.Secret))
		reg.AuthKeyID, reg.AuthKeyHash = ak.ID, sum[:]
		keyID = ak.ID
	}
	if reg.AuthKeyID == "" {
		// A known node coming back without an auth key: the policy may
		// keep it alive past its stored key expiry.
		if known, err := s.st.NodeByMachine(r.Context(), mk); err == nil && known.Expired(reg.Now) {
			if reg.KeyExpiryOff, err = s.keyExpiryOff(r.Context(), known.ID); err != nil {
				s.log.Error("register: key expiry", "machine", mk, "err", err)
				writeErr(w, http.StatusInternalServerError, "internal error; see coord's log")
				return
			}
		}
	}
	n, err := s.st.Register(r.Context(), reg)
	if err != nil {
		code, msg := registerError(err)
		if code >= 500 {
			s.log.Error("register failed", "machine", mk, "err", err)
		} else {
			s.log.Info("register refused", "machine", mk, "auth_key_id", keyID, "reason", msg)
		}
		writeErr(w, code, msg)
		return
	}
	s.hub.Changed()
	s.ephemeralOffline(n)                                // deleted unless its stream opens in time
	s.machines.use(mk, nonce.id, nonce.exp, s.cfg.Now()) // now known: a replay fails
	s.log.Info("node registered", "node", n.Name, "id", n.ID, "machine", mk, "auth_key_id", keyID)
	writeJSON(w, http.StatusOK, wire.RegisterResponse{Node: netmap.ToWire(n, false)})
}

func registerError(err error) (int, string) {
	var ke *store.KeyExpiredError
	var ne *store.NodeExpiredError
	switch {
	case errors.Is(err, store.ErrKeyNotFound), errors.Is(err, store.ErrKeyUsed), errors.Is(err, store.ErrNeedAuthKey),
		errors.Is(err, store.ErrKeyRevoked):
		return http.StatusUnauthorized, err.Error()
	case errors.Is(err, store.ErrUserDisabled):
		return http.StatusForbidden, err.Error() + ": ask the mesh admin to enable it (lanmesh-coord users enable)"
	case errors.As(err, &ke), errors.As(err, &ne):
		return http.StatusUnauthorized, err.Error()
	case errors.Is(err, store.ErrNodeKeyInUse):
		return http.StatusConflict, err.Error()
	case errors.Is(err, store.ErrAddressesFull):
		return http.StatusServiceUnavailable, err.Error()
	}
	return http.StatusInternalServerError, "internal error; see coord's log"
}

func (s *Server) handleMap(w http.ResponseWriter, r *http.Request) {
	mk, body, _, ok := s.verify(w, r, wire.PathMap)
	if !ok {
		return
	}
	req, err := decodeMap(body)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx := r.Context()
	n, err := s.st.NodeByMachine(ctx, mk)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeRefusal(w, http.StatusUnauthorized, wire.ReasonNotRegistered, "machine not registered: join with an auth key first")
		return
	case err != nil:
		s.log.Error("map: load node", "machine", mk, "err", err)
		writeErr(w, http.StatusInternalServerError, "internal error; see coord's log")
		return
	case !key.Equal(n.NodeKey[:], req.NodeKey[:]):
		writeRefusal(w, http.StatusUnauthorized, wire.ReasonNodeKeyMismatch, "node key does not match the registered one: register again")
		return
	}
	if expired, err := s.nodeExpired(ctx, n); err != nil {
		s.log.Error("map: key expiry", "node", n.Name, "err", err)
		writeErr(w, http.StatusInternalServerError, "internal error; see coord's log")
		return
	} else if expired {
		writeRefusal(w, http.StatusUnauthorized, wire.ReasonNodeExpired, (&store.NodeExpiredError{At: n.KeyExpiry}).Error())
		return
	}
	if off, err := s.userDisabled(r, n.User); err != nil {
		s.log.Error("map: read users", "err", err)
		writeErr(w, http.StatusInternalServerError, "internal error; see coord's log")
		return
	} else if off {
		writeRefusal(w, http.StatusForbidden, wire.ReasonUserDisabled, "user "+quote(n.User)+": user is disabled: ask the mesh admin to enable it (lanmesh-coord users enable)")
		return
	}
	before := n
	n, err = s.st.UpdateNodeStatus(ctx, n.ID, store.NodeStatus{
		Hostname:         req.Hostname,
		Endpoints:        req.Endpoints,
		AdvertisedRoutes: req.AdvertiseRoutes,
		LANHosts:         req.LANHosts,
		HomeRegion:       req.HomeRegion,
		LastSeen:         s.cfg.Now(),
	})
	if err != nil {
		s.log.Error("map: update node", "node", n.Name, "err", err)
		writeErr(w, http.StatusInternalServerError, "internal error; see coord's log")
		return
	}
	if statusChanged(before, n) {
		s.hub.Changed()
	}
	s.stream(w, r, n)
}

// stream serves one node's netmap until the client goes, the node is
// deleted or expires, or the server closes.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, n store.Node) {
	log := s.log.With("node", n.Name, "id", n.ID)
	ctx, release, ok := s.streams.open(r.Context(), n.ID)
	if !ok {
		w.Header().Set("Retry-After", "10")
		writeErr(w, http.StatusServiceUnavailable, "too many open netmap streams; retry later")
		return
	}
	defer release()
	changes, unsub := s.hub.Subscribe()
	defer unsub()
	s.hub.StreamOpened(n.ID)
	s.ephemeralOnline(n.ID)
	defer func() {
		s.hub.StreamClosed(n.ID)
		s.ephemeralOffline(n)
	}()

	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{}) // the body is read; the stream is long-lived
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	send := func(line []byte) bool {
		// A stuck reader must not pin this goroutine forever.
		rc.SetWriteDeadline(time.Now().Add(2 * s.cfg.KeepAlive))
		if _, err := w.Write(line); err != nil {
			log.Debug("netmap stream write failed", "err", err)
			return false
		}
		return rc.Flush() == nil
	}

	// The snapshot carries the DERP map (hub.SetDERPMap), so full maps
	// and changes include it.
	st := netmap.NewStream(wire.NodeID(n.ID))
	keep := time.NewTicker(s.cfg.KeepAlive)
	defer keep.Stop()
	log.Debug("netmap stream opened")
	defer log.Debug("netmap stream closed")
	for dirty := true; ; {
		if dirty {
			dirty = false
			snap, err := s.hub.Snapshot(ctx)
			if err != nil {
				if ctx.Err() == nil {
					log.Error("netmap snapshot failed", "err", err)
				}
				return
			}
			m, ok := st.Next(snap)
			if !ok {
				log.Info("node gone from the mesh (deleted or expired): closing its stream")
				return
			}
			if m != nil {
				if !send(m) {
					return
				}
				keep.Reset(s.cfg.KeepAlive)
			}
		}
		select {
		case <-changes:
			dirty = true
		case <-keep.C:
			if !send(st.KeepAlive()) {
				return
			}
		case <-ctx.Done():
			return
		case <-s.done:
			return
		}
	}
}

// statusChanged reports whether a map request changed what peers see,
// so an unchanged reconnect costs no recompile.
func statusChanged(a, b store.Node) bool {
	return a.Name != b.Name || !slices.Equal(a.Endpoints, b.Endpoints) ||
		!slices.Equal(a.AdvertisedRoutes, b.AdvertisedRoutes) || !slices.Equal(a.LANHosts, b.LANHosts) || a.HomeRegion != b.HomeRegion
}

// writeRefusal answers a map request that retrying cannot fix, with a
// machine-readable reason so the agent stops and asks for login instead
// of retrying (and keeping its peers) forever.
func writeRefusal(w http.ResponseWriter, code int, reason, msg string) {
	writeJSON(w, code, wire.Error{Error: msg, Reason: reason})
}
