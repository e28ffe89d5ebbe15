package server

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/lanmesh/lanmesh/coord/netmap"
	"github.com/lanmesh/lanmesh/coord/store"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
	"github.com/lanmesh/lanmesh/plugins/sdk"
)

// LoginProvider is an identity provider coord logs people in with; in
// lanmesh-coord each is an IdP plugin run by plugins/host (host.IdP).
type LoginProvider interface {
	Name() string
	DisplayName() string
	BeginLogin(ctx context.Context, req sdk.BeginRequest) (sdk.BeginResponse, error)
	CompleteLogin(ctx context.Context, req sdk.CompleteRequest) (sdk.Identity, error)
	HTTP(ctx context.Context, r *http.Request, pluginURL, path string) (sdk.HTTPResponse, error)
	// Refresh is the periodic check that an identity may still have
	// access (refresh.go).
	Refresh(ctx context.Context, id sdk.Identity) (sdk.Identity, error)
}

const (
	maxPendingLogins = 1000 // S18: anonymous-ish state has a bound
	// maxPendingPerSource keeps one address (IPv6: one /64) from filling
	// the table with logins of throwaway machine keys (S18).
	maxPendingPerSource = 16
	loginCookie         = "lanmesh_login"
)

// pendingLogin is one login between PathLogin and the callback.
type pendingLogin struct {
	id       string
	machine  key.MachinePublic
	source   netip.Addr // connlimit.Source of the node's request
	req      wire.LoginRequest
	provider LoginProvider
	expires  time.Time

	// Set when the browser opens the login URL.
	state, nonce string
	session      []byte

	done   chan struct{} // closed with result set
	result wire.LoginWaitResponse

	// web is set for a login to a coord web page (weblogin.go): no
	// machine, no node; the user goes to web.
	web WebLoginDone
}

// logins holds pending logins. mu guards all fields.
type logins struct {
	mu        sync.Mutex
	byID      map[string]*pendingLogin
	byState   map[string]*pendingLogin
	byMachine map[key.MachinePublic]*pendingLogin
	bySource  map[netip.Addr]int // unfinished logins per source
}

func newLogins() *logins {
	return &logins{byID: map[string]*pendingLogin{}, byState: map[string]*pendingLogin{}, byMachine: map[key.MachinePublic]*pendingLogin{}, bySource: map[netip.Addr]int{}}
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// finishLocked ends pl with res. The result stays (by ID) for a while:
// the node may ask for it just after the browser finished.
func (l *logins) finishLocked(pl *pendingLogin, res wire.LoginWaitResponse) {
	select {
	case <-pl.done:
		return
	default:
	}
	pl.result = res
	close(pl.done)
	if l.bySource[pl.source]--; l.bySource[pl.source] <= 0 {
		delete(l.bySource, pl.source)
	}
	pl.expires = time.Now().Add(2 * wire.LoginWaitMax)
	if pl.state != "" {
		delete(l.byState, pl.state)
	}
	if l.byMachine[pl.machine] == pl {
		delete(l.byMachine, pl.machine)
	}
}

func (l *logins) expireLocked(now time.Time) {
	for _, pl := range l.byID {
		select {
		case <-pl.done:
			if time.Now().After(pl.expires) {
				delete(l.byID, pl.id) // nobody came for the result
			}
		default:
			if now.After(pl.expires) {
				l.finishLocked(pl, wire.LoginWaitResponse{Done: true, Error: "the login expired: run lanmesh up again"})
			}
		}
	}
}

// loginRoutes adds the login endpoints to the node API's mux.
func (s *Server) loginRoutes(mux *http.ServeMux) {
	mux.HandleFunc(wire.PathLogin, s.handleLogin)
	mux.HandleFunc(wire.PathLoginWait, s.handleLoginWait)
	mux.HandleFunc(wire.PathLogout, s.handleLogout)
	mux.HandleFunc("GET /login/{provider}", s.handleLoginStart)
	mux.HandleFunc("/login/{provider}/p/{rest...}", s.handleLoginPlugin)
	mux.HandleFunc("GET /callback", s.handleCallback)
}

func (s *Server) provider(name string) (LoginProvider, bool) {
	for _, p := range s.cfg.LoginProviders {
		if name == "" || p.Name() == name {
			return p, true
		}
	}
	return nil, false
}

func (s *Server) publicURL() string { return strings.TrimRight(s.cfg.PublicURL, "/") }

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	mk, body, _, ok := s.verify(w, r, wire.PathLogin)
	if !ok {
		return
	}
	var req wire.LoginRequest
	if err := strictJSON(body, &req); err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Sprintf("malformed login request: %v", err))
		return
	}
	if _, err := decodeRegister(mustMarshal(wire.RegisterRequest{NodeKey: req.NodeKey, Hostname: req.Hostname, OS: req.OS})); err != nil {
		writeErr(w, http.StatusBadRequest, strings.Replace(err.Error(), "register request", "login request", 1))
		return
	}
	if len(s.cfg.LoginProviders) == 0 || s.cfg.PublicURL == "" {
		writeErr(w, http.StatusNotImplemented, "this coord has no identity provider: join with --auth-key, or configure an IdP plugin and --server-url on coord")
		return
	}
	p, ok := s.provider(req.Provider)
	if !ok {
		names := make([]string, 0, len(s.cfg.LoginProviders))
		for _, p := range s.cfg.LoginProviders {
			names = append(names, p.Name())
		}
		writeErr(w, http.StatusBadRequest, fmt.Sprintf("unknown login provider %q; this coord has %s", req.Provider, strings.Join(names, ", ")))
		return
	}
	now := s.cfg.Now()
	pl := &pendingLogin{id: randomToken(), machine: mk, source: sourceKey(r.RemoteAddr), req: req, provider: p, expires: now.Add(wire.LoginTTL), done: make(chan struct{})}
	s.logins.mu.Lock()
	s.logins.expireLocked(now)
	if old := s.logins.byMachine[mk]; old != nil {
		s.logins.finishLocked(old, wire.LoginWaitResponse{Done: true, Error: "a newer login for this machine replaced this one"})
	}
	if len(s.logins.byID) >= maxPendingLogins {
		s.logins.mu.Unlock()
		writeErr(w, http.StatusServiceUnavailable, "too many logins in progress; try again in a few minutes")
		return
	}
	if s.logins.bySource[pl.source] >= maxPendingPerSource {
		s.logins.mu.Unlock()
		w.Header().Set("Retry-After", "60")
		writeErr(w, http.StatusTooManyRequests, "too many logins in progress from this address; finish one or wait a few minutes")
		return
	}
	s.logins.bySource[pl.source]++
	s.logins.byID[pl.id] = pl
	s.logins.byMachine[mk] = pl
	s.logins.mu.Unlock()
	s.log.Info("login started", "machine", mk, "provider", p.Name(), "hostname", req.Hostname)
	writeJSON(w, http.StatusOK, wire.LoginResponse{
		ID: pl.id, Provider: p.Name(), ExpiresAt: now.Add(wire.LoginTTL),
		URL: s.publicURL() + "/login/" + p.Name() + "?id=" + pl.id,
	})
}

// handleLoginStart is where the user's browser starts: coord asks the
// provider for its auth URL and redirects there. A cookie binds the
// login's state to this browser, so a callback only completes here.
func (s *Server) handleLoginStart(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("provider")
	id := r.URL.Query().Get("id")
	s.logins.mu.Lock()
	s.logins.expireLocked(s.cfg.Now())
	pl := s.logins.byID[id]
	if pl != nil && pl.web != nil {
		pl = nil // started by StartWebLogin, not by a node
	}
	finished := false
	if pl != nil {
		select {
		case <-pl.done:
			finished = true
		default:
		}
	}
	if pl == nil || finished || pl.provider.Name() != name {
		s.logins.mu.Unlock()
		loginPage(w, http.StatusNotFound, "Unknown or expired login", "Run lanmesh up again for a new link.")
		return
	}
	if pl.state != "" {
		delete(s.logins.byState, pl.state) // a reload starts a fresh attempt
	}
	pl.state, pl.nonce = randomToken(), randomToken()
	s.logins.byState[pl.state] = pl
	state, nonce := pl.state, pl.nonce
	s.logins.mu.Unlock()

	resp, err := pl.provider.BeginLogin(r.Context(), sdk.BeginRequest{
		RedirectURL: s.publicURL() + "/callback", State: state, Nonce: nonce,
		PluginURL: s.publicURL() + "/login/" + name + "/p/",
	})
	if err != nil {
		s.log.Warn("login: provider failed to begin", "provider", name, "err", err)
		loginPage(w, http.StatusBadGateway, "The identity provider is unavailable", err.Error())
		return
	}
	s.logins.mu.Lock()
	pl.session = resp.Session
	s.logins.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: state, Path: "/callback", MaxAge: int(wire.LoginTTL / time.Second),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, resp.AuthURL, http.StatusFound)
}

// handleLoginPlugin forwards a browser request to the provider's own
// pages (e.g. the local-users form).
func (s *Server) handleLoginPlugin(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("provider")
	p, ok := s.provider(name)
	if !ok || name == "" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		writeErr(w, http.StatusMethodNotAllowed, "use GET or POST")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, sdk.MaxHTTPBody)
	resp, err := p.HTTP(r.Context(), r, s.publicURL()+"/login/"+name+"/p/", r.PathValue("rest"))
	if err != nil {
		s.log.Warn("login: provider page failed", "provider", name, "err", err)
		loginPage(w, http.StatusBadGateway, "The identity provider is unavailable", err.Error())
		return
	}
	for _, k := range []string{"Content-Type", "Location", "Cache-Control"} {
		if v := resp.Header.Get(k); v != "" {
			w.Header().Set(k, v)
		}
	}
	secureHeaders(w)
	w.WriteHeader(resp.Status)
	w.Write(resp.Body)
}

func secureHeaders(w http.ResponseWriter) {
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	w.Header().Set("Referrer-Policy", "no-referrer")
}

// handleCallback completes a login: the state must be one coord issued,
// unused, to this browser; the provider then checks everything else.
func (s *Server) handleCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state := q.Get("state")
	s.logins.mu.Lock()
	s.logins.expireLocked(s.cfg.Now())
	pl := s.logins.byState[state]
	if pl != nil {
		delete(s.logins.byState, state) // single use, whatever happens next
	}
	s.logins.mu.Unlock()
	if pl == nil || state == "" {
		s.log.Info("login callback refused", "reason", "unknown or used state")
		loginPage(w, http.StatusBadRequest, "Login refused", "This login is unknown, was already used, or expired. Run lanmesh up again.")
		return
	}
	c, err := r.Cookie(loginCookie)
	if err != nil || subtle.ConstantTimeCompare([]byte(c.Value), []byte(state)) != 1 {
		s.failLogin(r, pl, "", "login callback refused", "this login was started in another browser")
		loginPage(w, http.StatusBadRequest, "Login refused", "This login was started in another browser. Run lanmesh up again and open the link here.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: "", Path: "/callback", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
	id, err := pl.provider.CompleteLogin(r.Context(), sdk.CompleteRequest{
		RedirectURL: s.publicURL() + "/callback", State: state, Nonce: pl.nonce, Session: pl.session, Query: q,
	})
	if err != nil {
		msg := err.Error()
		s.failLogin(r, pl, "", "login refused by provider", msg)
		code := http.StatusBadGateway
		if errors.Is(err, sdk.ErrBadCallback) || errors.Is(err, sdk.ErrRefused) {
			code = http.StatusForbidden
		}
		loginPage(w, code, "Login refused", msg)
		return
	}
	now := s.cfg.Now()
	u, err := s.st.LoginIdentity(r.Context(), store.Identity{Provider: pl.provider.Name(), Subject: id.Subject, Email: id.Email, Name: id.Name, Groups: id.Groups, Secret: id.Secret, Now: now})
	if err != nil {
		msg := "internal error; see coord's log"
		if errors.Is(err, store.ErrUserDisabled) {
			msg = "your user is disabled on this mesh"
		}
		s.log.Warn("login: user refused", "provider", pl.provider.Name(), "subject", id.Subject, "err", err)
		s.failLogin(r, pl, id.Subject, "login refused", msg)
		loginPage(w, http.StatusForbidden, "Login refused", msg)
		return
	}
	if pl.web != nil {
		s.completeWebLogin(w, r, pl, u)
		return
	}
	n, err := s.st.Register(r.Context(), store.Registration{
		MachineKey: pl.machine, NodeKey: pl.req.NodeKey, Hostname: pl.req.Hostname, OS: pl.req.OS,
		LoginUser: u.Name, KeyLifetime: s.cfg.KeyLifetime, Now: now,
	})
	if err != nil {
		_, msg := registerError(err)
		s.log.Warn("login: register failed", "user", u.Name, "machine", pl.machine, "err", err)
		s.failLogin(r, pl, u.Name, "login register failed", msg)
		loginPage(w, http.StatusForbidden, "Login failed", msg)
		return
	}
	s.hub.Changed()
	s.machines.add(pl.machine, now) // registered: its nonces are tracked from now on
	s.log.Info("login", "user", u.Name, "provider", pl.provider.Name(), "groups", len(u.Groups), "node", n.Name, "id", n.ID, "machine", pl.machine)
	s.Audit(r.Context(), Actor{Kind: ActorUser, Name: u.Name, Source: r.RemoteAddr}, "login", n.Name,
		fmt.Sprintf("provider %s, node id %d, %d groups", pl.provider.Name(), n.ID, len(u.Groups)), nil)
	wn := netmap.ToWire(n, false)
	s.logins.mu.Lock()
	s.logins.finishLocked(pl, wire.LoginWaitResponse{Done: true, Node: &wn, User: u.Name})
	s.logins.mu.Unlock()
	loginPage(w, http.StatusOK, "Logged in", fmt.Sprintf("You are logged in as %s; the device %s joined the mesh. You can close this window.", u.Name, n.Name))
}

// failLogin ends a pending login that failed at its callback and audits
// it; who is the user or IdP subject if known. Callbacks that match no
// pending login are logged but not audited: anyone can send them.
func (s *Server) failLogin(r *http.Request, pl *pendingLogin, who, logMsg, reason string) {
	s.log.Info(logMsg, "provider", pl.provider.Name(), "machine", pl.machine, "reason", reason)
	action, target := "login", pl.req.Hostname
	if pl.web != nil {
		action, target = "weblogin", "web admin"
	}
	s.Audit(r.Context(), Actor{Kind: ActorUser, Name: who, Source: r.RemoteAddr}, action, target,
		"provider "+pl.provider.Name(), &AdminError{Code: http.StatusForbidden, Msg: logMsg + ": " + reason})
	s.logins.mu.Lock()
	s.logins.finishLocked(pl, wire.LoginWaitResponse{Done: true, Error: "login failed: " + reason})
	s.logins.mu.Unlock()
}

func (s *Server) handleLoginWait(w http.ResponseWriter, r *http.Request) {
	mk, body, _, ok := s.verify(w, r, wire.PathLoginWait)
	if !ok {
		return
	}
	var req wire.LoginWaitRequest
	if err := strictJSON(body, &req); err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Sprintf("malformed login wait request: %v", err))
		return
	}
	s.logins.mu.Lock()
	pl := s.logins.byID[req.ID]
	var expires time.Time
	if pl != nil {
		expires = pl.expires // finishLocked moves it: read it under mu
	}
	s.logins.mu.Unlock()
	if pl == nil || pl.machine != mk {
		writeErr(w, http.StatusNotFound, "unknown, finished or expired login: run lanmesh up again")
		return
	}
	wait := time.NewTimer(min(wire.LoginWaitMax, time.Until(expires)+time.Second))
	defer wait.Stop()
	consumed := func() {
		s.logins.mu.Lock()
		delete(s.logins.byID, pl.id)
		s.logins.mu.Unlock()
	}
	select {
	case <-pl.done:
		consumed()
		writeJSON(w, http.StatusOK, pl.result)
	case <-wait.C:
		s.logins.mu.Lock()
		s.logins.expireLocked(s.cfg.Now())
		s.logins.mu.Unlock()
		select {
		case <-pl.done:
			consumed()
			writeJSON(w, http.StatusOK, pl.result)
		default:
			writeJSON(w, http.StatusOK, wire.LoginWaitResponse{})
		}
	case <-r.Context().Done():
	case <-s.done:
		writeErr(w, http.StatusServiceUnavailable, "coord is shutting down")
	}
}

// handleLogout expires the calling machine's node key: it leaves every
// netmap now and must log in again to come back.
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	mk, body, _, ok := s.verify(w, r, wire.PathLogout)
	if !ok {
		return
	}
	var req wire.LogoutRequest
	if err := strictJSON(body, &req); err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Sprintf("malformed logout request: %v", err))
		return
	}
	n, err := s.st.NodeByMachine(r.Context(), mk)
	if errors.Is(err, store.ErrNotFound) {
		writeErr(w, http.StatusNotFound, "this machine has no node")
		return
	}
	if err == nil {
		_, err = s.st.ExpireNode(r.Context(), n.ID, s.cfg.Now())
	}
	if err != nil {
		s.log.Error("logout failed", "machine", mk, "err", err)
		writeErr(w, http.StatusInternalServerError, "internal error; see coord's log")
		return
	}
	s.hub.Changed()
	s.log.Info("logout", "node", n.Name, "id", n.ID, "user", n.User)
	s.Audit(r.Context(), Actor{Kind: ActorNode, Name: n.Name, Source: r.RemoteAddr}, "logout", n.Name, "user "+n.User, nil)
	writeJSON(w, http.StatusOK, struct{}{})
}
