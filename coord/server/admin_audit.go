package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/coord/store"
)

// Admin API endpoints for the audit log and API keys.

// maxAPIKeyExpiry bounds API keys: a forgotten key should not live
// forever.
const maxAPIKeyExpiry = 5 * 365 * 24 * time.Hour

func (s *Server) auditRoutes(mux *http.ServeMux) {
	a := s.Admin()
	type none = struct{}
	mux.HandleFunc("GET "+adminapi.PathAudit, s.adminListAudit)
	mux.HandleFunc("GET "+adminapi.PathAPIKeys, handle(s, func(ctx context.Context, _ Actor, r *http.Request, _ none) ([]adminapi.APIKey, error) {
		return a.APIKeys(ctx)
	}))
	mux.HandleFunc("POST "+adminapi.PathAPIKeys, handle(s, func(ctx context.Context, who Actor, r *http.Request, in adminapi.CreateAPIKeyRequest) (adminapi.APIKey, error) {
		return a.CreateAPIKey(ctx, who, in)
	}))
	mux.HandleFunc("POST "+adminapi.PathAPIKeys+"/{id}/revoke", handle(s, func(ctx context.Context, who Actor, r *http.Request, _ none) (adminapi.APIKey, error) {
		return a.RevokeAPIKey(ctx, who, r.PathValue("id"))
	}))
}

// APIEvent converts a stored audit event to its wire form.
func APIEvent(e store.AuditEvent) adminapi.AuditEvent {
	return adminapi.AuditEvent{ID: e.ID, Time: e.Time, ActorKind: e.ActorKind, Actor: e.Actor, Source: e.Source,
		Action: e.Action, Target: e.Target, Result: e.Result, Detail: e.Detail}
}

func (s *Server) adminListAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var aq store.AuditQuery
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			writeErr(w, http.StatusBadRequest, fmt.Sprintf("since %q: want an RFC 3339 time like 2026-12-01T00:00:00Z", v))
			return
		}
		aq.Since = t
	}
	aq.Actor = q.Get("actor")
	for name, dst := range map[string]*int64{"before": &aq.BeforeID} {
		if v := q.Get(name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				writeErr(w, http.StatusBadRequest, fmt.Sprintf("%s %q: want an event ID", name, v))
				return
			}
			*dst = n
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > store.MaxAuditQuery {
			writeErr(w, http.StatusBadRequest, fmt.Sprintf("limit %q: want 1 to %d", v, store.MaxAuditQuery))
			return
		}
		aq.Limit = n
	}
	evs, err := s.st.AuditEvents(r.Context(), aq)
	if err != nil {
		s.adminFail(w, err)
		return
	}
	out := make([]adminapi.AuditEvent, 0, len(evs))
	for _, e := range evs {
		out = append(out, APIEvent(e))
	}
	writeJSON(w, http.StatusOK, out)
}

// apiKeyPrefix starts every API key, so a leaked one is easy to spot
// (and to grep for in logs: S11).
const apiKeyPrefix = "lmapi_"

func apiKeyInfo(k store.APIKey) adminapi.APIKey {
	return adminapi.APIKey{ID: k.ID, Scope: k.Scope, Description: k.Description, CreatedBy: k.CreatedBy,
		Expiry: k.Expiry, Created: k.Created, Revoked: k.Revoked, LastUsed: k.LastUsed}
}

// APIKeys lists API keys (never their secrets or hashes).
func (a *Admin) APIKeys(ctx context.Context) ([]adminapi.APIKey, error) {
	keys, err := a.s.st.APIKeys(ctx)
	if err != nil {
		return nil, err
	}
	out := []adminapi.APIKey{}
	for _, k := range keys {
		out = append(out, apiKeyInfo(k))
	}
	return out, nil
}

// CreateAPIKey makes an API key for the HTTPS admin API. The answer's Key
// is the only copy of the secret: coord keeps its SHA-256 (the secret is
// 256 random bits, so a fast hash is enough).
func (a *Admin) CreateAPIKey(ctx context.Context, who Actor, req adminapi.CreateAPIKeyRequest) (adminapi.APIKey, error) {
	var out adminapi.APIKey
	var idb [6]byte
	rand.Read(idb[:])
	id := hex.EncodeToString(idb[:])
	err := a.do(ctx, who, "apikey.create", id, func() (string, error) {
		if req.Scope != store.ScopeRead && req.Scope != store.ScopeAdmin {
			return "", badRequest("scope %q: want %q (list and read only) or %q (everything)", req.Scope, store.ScopeRead, store.ScopeAdmin)
		}
		exp, err := adminapi.ParseExpiry(req.Expiry)
		if err != nil || exp > maxAPIKeyExpiry {
			return "", badRequest("expiry %q: want a positive duration up to %d days, e.g. 90d or 720h", req.Expiry, maxAPIKeyExpiry/(24*time.Hour))
		}
		if len(req.Description) > 200 {
			return "", badRequest("description: at most 200 bytes")
		}
		var sec [32]byte
		rand.Read(sec[:])
		secret := base64.RawURLEncoding.EncodeToString(sec[:])
		sum := sha256.Sum256([]byte(secret))
		now := a.s.cfg.Now()
		k := store.APIKey{ID: id, Hash: sum[:], Scope: req.Scope, Description: req.Description, CreatedBy: who.String(), Expiry: now.Add(exp), Created: now}
		if err := a.s.st.CreateAPIKey(ctx, k); err != nil {
			return "", err
		}
		a.s.log.Info("API key created", "api_key_id", id, "scope", k.Scope, "expiry", k.Expiry, "by", who.String())
		out = apiKeyInfo(k)
		out.Key = apiKeyPrefix + id + "_" + secret
		return fmt.Sprintf("scope %s, expires %s", k.Scope, k.Expiry.UTC().Format(time.RFC3339)), nil
	})
	return out, err
}

// RevokeAPIKey makes an API key fail its next request: every request
// reads the key from the store (no cache).
func (a *Admin) RevokeAPIKey(ctx context.Context, who Actor, id string) (adminapi.APIKey, error) {
	var out adminapi.APIKey
	err := a.do(ctx, who, "apikey.revoke", id, func() (string, error) {
		k, err := a.s.st.RevokeAPIKey(ctx, id, a.s.cfg.Now())
		if err != nil {
			return "", err
		}
		a.s.log.Info("API key revoked", "api_key_id", id, "by", who.String())
		out = apiKeyInfo(k)
		return "", nil
	})
	return out, err
}
