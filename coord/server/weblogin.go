package server

import (
	"net/http"
	"time"

	"github.com/lanmesh/lanmesh/coord/store"
	"github.com/lanmesh/lanmesh/internal/wire"
	"github.com/lanmesh/lanmesh/plugins/sdk"
)

// Web logins: a person logs in to a page coord serves (the web admin),
// not a node. They go through the same providers, state, nonce, browser
// cookie and /callback as node logins (login.go), and count against the
// same bounds (S18); only the end differs: no node is registered, the
// user goes to the page's WebLoginDone.

// WebLoginDone receives the user a browser login ended with (already
// recorded by LoginIdentity, so never a disabled one) and answers the
// browser. Only the page knows whether it lets the user in, so it audits
// the login (action "weblogin"); failures before it are audited here.
type WebLoginDone func(w http.ResponseWriter, r *http.Request, u store.User, provider string)

// ProviderInfo names a login provider for a login page.
type ProviderInfo struct {
	Name, DisplayName string
}

// Providers lists the identity providers people can log in with.
func (s *Server) Providers() []ProviderInfo {
	out := make([]ProviderInfo, 0, len(s.cfg.LoginProviders))
	for _, p := range s.cfg.LoginProviders {
		d := p.DisplayName()
		if d == "" {
			d = p.Name()
		}
		out = append(out, ProviderInfo{Name: p.Name(), DisplayName: d})
	}
	return out
}

// PublicURL is coord's URL as browsers reach it (--server-url), without
// a trailing slash; empty when not configured.
func (s *Server) PublicURL() string { return s.publicURL() }

// StartWebLogin sends the browser to provider's login; when it comes
// back to /callback, done gets the user. Errors are answered here.
func (s *Server) StartWebLogin(w http.ResponseWriter, r *http.Request, provider string, done WebLoginDone) {
	p, ok := s.provider(provider)
	if !ok || provider == "" || s.cfg.PublicURL == "" {
		loginPage(w, http.StatusNotFound, "Unknown login provider", "This coord has no identity provider of that name.")
		return
	}
	now := s.cfg.Now()
	pl := &pendingLogin{id: randomToken(), source: sourceKey(r.RemoteAddr), provider: p, expires: now.Add(wire.LoginTTL),
		done: make(chan struct{}), web: done, state: randomToken(), nonce: randomToken()}
	s.logins.mu.Lock()
	s.logins.expireLocked(now)
	if len(s.logins.byID) >= maxPendingLogins {
		s.logins.mu.Unlock()
		loginPage(w, http.StatusServiceUnavailable, "Too many logins in progress", "Try again in a few minutes.")
		return
	}
	if s.logins.bySource[pl.source] >= maxPendingPerSource {
		s.logins.mu.Unlock()
		w.Header().Set("Retry-After", "60")
		loginPage(w, http.StatusTooManyRequests, "Too many logins in progress from this address", "Finish one or wait a few minutes.")
		return
	}
	s.logins.bySource[pl.source]++
	s.logins.byID[pl.id] = pl
	s.logins.byState[pl.state] = pl
	s.logins.mu.Unlock()

	resp, err := p.BeginLogin(r.Context(), sdk.BeginRequest{
		RedirectURL: s.publicURL() + "/callback", State: pl.state, Nonce: pl.nonce,
		PluginURL: s.publicURL() + "/login/" + p.Name() + "/p/",
	})
	if err != nil {
		s.log.Warn("web login: provider failed to begin", "provider", p.Name(), "err", err)
		s.failLogin(r, pl, "", "web login failed", "the provider failed to begin")
		loginPage(w, http.StatusBadGateway, "The identity provider is unavailable", err.Error())
		return
	}
	s.logins.mu.Lock()
	pl.session = resp.Session
	s.logins.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: pl.state, Path: "/callback", MaxAge: int(wire.LoginTTL / time.Second),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, resp.AuthURL, http.StatusFound)
}

// completeWebLogin ends a web login whose identity the provider vouched
// for and the store recorded.
func (s *Server) completeWebLogin(w http.ResponseWriter, r *http.Request, pl *pendingLogin, u store.User) {
	s.logins.mu.Lock()
	s.logins.finishLocked(pl, wire.LoginWaitResponse{Done: true, User: u.Name})
	delete(s.logins.byID, pl.id) // nobody waits for a web login's result
	s.logins.mu.Unlock()
	s.log.Info("web login", "user", u.Name, "provider", pl.provider.Name())
	pl.web(w, r, u, pl.provider.Name())
}
