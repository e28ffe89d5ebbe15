package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/coord/store"
)

// The admin API on coord's HTTPS listener, under adminapi.RemotePrefix,
// for lanmesh-coord --server and scripts. A request carries
// "Authorization: Bearer lmapi_ID_SECRET". In order, before any handler
// runs:
//
//  1. the source address spends a token of Limits.AdminRate (S18): a
//     client guessing keys costs coord a bounded number of store reads;
//  2. the key is read from the store by ID (no cache: a revoke or an
//     expiry holds from the next request on);
//  3. the secret's SHA-256 is compared in constant time (S8);
//  4. the key must be neither revoked nor expired, and a read-scoped key
//     may only read.
//
// Every request with a known key ID is audited: a refusal as
// "apikey.auth", a state change by its Admin method, anything else
// (reads, requests refused before the action) as "api.read" or
// "api.request". The key itself never reaches a log (S11).

// auditedKey marks, in a request's context, that an Admin method
// audited it, so apiAuth does not audit it twice.
type auditedKey struct{}

func markAudited(ctx context.Context) {
	if f, ok := ctx.Value(auditedKey{}).(*atomic.Bool); ok {
		f.Store(true)
	}
}

// readOnlyPost are POSTs a read-scoped key may make: they change nothing.
var readOnlyPost = map[string]bool{adminapi.PathPolicyCheck: true}

func (s *Server) remoteAdmin() http.Handler {
	inner := s.AdminHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if ok, retry := s.apiAuth.allow(sourceKey(r.RemoteAddr), s.cfg.Now()); !ok {
			tooMany(w, retry, "admin API requests")
			return
		}
		path, ok := adminapi.SocketPath(r.URL.Path)
		if !ok {
			http.NotFound(w, r)
			return
		}
		id, secret, ok := parseBearer(r.Header.Get("Authorization"))
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="lanmesh-coord"`)
			writeErr(w, http.StatusUnauthorized, "missing or malformed API key: send \"Authorization: Bearer lmapi_...\" (lanmesh-coord apikeys create)")
			return
		}
		who := Actor{Kind: ActorAPIKey, Name: id, Source: r.RemoteAddr}
		k, err := s.st.APIKey(r.Context(), id)
		if errors.Is(err, store.ErrNotFound) {
			// Not audited: an unknown ID is anyone's guess, and the
			// audit log is no place for anonymous noise.
			s.log.Debug("admin API: unknown API key", "api_key_id", id, "source", r.RemoteAddr)
			writeErr(w, http.StatusUnauthorized, "invalid API key")
			return
		}
		if err != nil {
			s.adminFail(w, err)
			return
		}
		sum := sha256.Sum256([]byte(secret))
		refuse := func(code int, reason, msg string) {
			s.log.Info("admin API: API key refused", "api_key_id", id, "source", r.RemoteAddr, "reason", reason)
			s.Audit(r.Context(), who, "apikey.auth", r.Method+" "+path, reason, &AdminError{Code: code, Msg: msg})
			writeErr(w, code, msg)
		}
		if subtle.ConstantTimeCompare(sum[:], k.Hash) != 1 {
			refuse(http.StatusUnauthorized, "wrong secret", "invalid API key")
			return
		}
		if err := k.Usable(s.cfg.Now()); err != nil {
			refuse(http.StatusUnauthorized, err.Error(), err.Error()+": ask an admin for a new one (lanmesh-coord apikeys create)")
			return
		}
		if k.Scope != store.ScopeAdmin && r.Method != http.MethodGet && !(r.Method == http.MethodPost && readOnlyPost[path]) {
			refuse(http.StatusForbidden, "read-only key", "this API key is read-only (scope "+k.Scope+"): it cannot change state; use a key made with --scope admin")
			return
		}
		if err := s.st.TouchAPIKey(r.Context(), id, s.cfg.Now()); err != nil {
			s.log.Warn("admin API: record key use", "api_key_id", id, "err", err)
		}
		audited := new(atomic.Bool)
		ctx := context.WithValue(WithActor(r.Context(), who), auditedKey{}, audited)
		r2 := r.Clone(ctx)
		r2.URL.Path, r2.URL.RawPath = path, ""
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		inner.ServeHTTP(sw, r2)
		if !audited.Load() {
			action := "api.request"
			if r.Method == http.MethodGet {
				action = "api.read"
			}
			var err error
			if sw.code >= 400 {
				err = &AdminError{Code: sw.code, Msg: http.StatusText(sw.code)}
			}
			s.Audit(r.Context(), who, action, r.Method+" "+path, "", err)
		}
	})
}

// parseBearer splits "Bearer lmapi_ID_SECRET".
func parseBearer(h string) (id, secret string, ok bool) {
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return "", "", false
	}
	tok, ok = strings.CutPrefix(strings.TrimSpace(tok), apiKeyPrefix)
	if !ok {
		return "", "", false
	}
	id, secret, ok = strings.Cut(tok, "_")
	if !ok || len(id) != 12 || len(secret) != 43 || strings.Trim(id, "0123456789abcdef") != "" {
		return "", "", false
	}
	return id, secret, true
}

// statusWriter remembers the status code of an answer.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}
