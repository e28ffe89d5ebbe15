package webui

import (
	"crypto/rand"
	"crypto/subtle"
	_ "embed"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/lanmesh/lanmesh/agent/localapi"
)

// The page's files, embedded as bytes and served by a small handler:
// http.FileServer would link range requests and MIME sniffing, which the
// router binary's size budget does not pay for.
var (
	//go:embed static/index.html
	indexHTML []byte
	//go:embed static/app.js
	appJS []byte
	//go:embed static/style.css
	styleCSS []byte
)

var files = map[string]struct {
	body []byte
	typ  string
}{
	"/":          {indexHTML, "text/html; charset=utf-8"},
	"/app.js":    {appJS, "text/javascript; charset=utf-8"},
	"/style.css": {styleCSS, "text/css; charset=utf-8"},
}

// Paths of the JSON API.
const (
	PathSession = "/api/session"
	PathLogin   = "/api/login"
	PathLogout  = "/api/logout"
	PathStatus  = "/api/status"
	PathUp      = "/api/up"
	PathDown    = "/api/down"
)

// CSRFHeader must carry the token GET /api/session returned on every POST.
const CSRFHeader = "X-Lanmesh-CSRF"

// Cookie names.
const (
	csrfCookie    = "lanmesh_csrf"
	sessionCookie = "lanmesh_session"
)

// SessionTTL is how long a login lasts; the server forgets it then.
const SessionTTL = 12 * time.Hour

// maxSessions bounds the server's session table; the oldest goes first.
const maxSessions = 32

// Settings are the join settings the page changes; nil leaves one as is.
type Settings struct {
	AdvertiseRoutes   *[]netip.Prefix `json:"advertise_routes,omitempty"`
	AcceptRoutes      *bool           `json:"accept_routes,omitempty"`
	AdvertiseExitNode *bool           `json:"advertise_exit_node,omitempty"`
}

// Options configure a Handler.
type Options struct {
	Backend localapi.Backend
	// Hosts are the Host header values accepted, exactly (HostsFor).
	Hosts []string
	// Token is the access token a browser logs in with.
	Token string
	// Persist, when set, saves applied settings (to the UCI file) so they
	// survive a restart.
	Persist func(Settings) error
	Log     *slog.Logger
	Now     func() time.Time
}

// Handler serves the page and its API.
type Handler struct {
	o        Options
	mux      *http.ServeMux
	mu       sync.Mutex
	sessions map[string]time.Time // id -> expiry
}

// New returns the handler.
func New(o Options) *Handler {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	h := &Handler{o: o, mux: http.NewServeMux(), sessions: map[string]time.Time{}}
	h.mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		f, ok := files[r.URL.Path]
		if !ok {
			writeErr(w, http.StatusNotFound, "no such page: "+r.URL.Path)
			return
		}
		w.Header().Set("Content-Type", f.typ)
		w.Write(f.body)
	})
	h.mux.HandleFunc("GET "+PathSession, h.session)
	h.mux.HandleFunc("POST "+PathLogin, h.login)
	h.mux.HandleFunc("POST "+PathLogout, h.logout)
	h.mux.HandleFunc("GET "+PathStatus, h.authed(h.status))
	h.mux.HandleFunc("POST "+PathUp, h.authed(h.up))
	h.mux.HandleFunc("POST "+PathDown, h.authed(h.down))
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; form-action 'self'")
	hdr.Set("Cache-Control", "no-store")
	// DNS rebinding: a page on evil.example whose name now resolves to
	// this router still sends Host: evil.example.
	if !h.hostAllowed(r.Host) {
		writeErr(w, http.StatusForbidden, "host "+r.Host+" is not this router's web address (web.listen, web.hosts)")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if why := h.crossOrigin(r); why != "" {
			writeErr(w, http.StatusForbidden, why)
			return
		}
		c, err := r.Cookie(csrfCookie)
		got := r.Header.Get(CSRFHeader)
		if err != nil || got == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(got)) != 1 {
			writeErr(w, http.StatusForbidden, "missing or wrong CSRF token: reload the page")
			return
		}
	}
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) hostAllowed(host string) bool {
	for _, a := range h.o.Hosts {
		if strings.EqualFold(a, host) {
			return true
		}
	}
	return false
}

// crossOrigin says why a state-changing request came from another site,
// or "" when it came from this page.
func (h *Handler) crossOrigin(r *http.Request) string {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return "cross-origin request refused (Sec-Fetch-Site: " + r.Header.Get("Sec-Fetch-Site") + ")"
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || !strings.EqualFold(u.Host, r.Host) {
			return "cross-origin request refused (Origin " + o + ")"
		}
	}
	return ""
}

func (h *Handler) session(w http.ResponseWriter, r *http.Request) {
	tok := ""
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) == 64 {
		tok = c.Value
	} else {
		tok = randHex()
		http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: tok, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
	}
	writeJSON(w, map[string]any{"csrf": tok, "logged_in": h.loggedIn(r)})
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Token string `json:"token"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if h.o.Token == "" || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(req.Token)), []byte(h.o.Token)) != 1 {
		h.o.Log.Warn("web login refused", "remote", r.RemoteAddr)
		time.Sleep(500 * time.Millisecond) // slows guessing; the token is 256 bits anyway
		writeErr(w, http.StatusUnauthorized, "wrong token: it is in the file web.token_file names")
		return
	}
	id := randHex()
	now := h.o.Now()
	h.mu.Lock()
	for k, exp := range h.sessions {
		if !now.Before(exp) {
			delete(h.sessions, k)
		}
	}
	for len(h.sessions) >= maxSessions {
		var oldest string
		for k, exp := range h.sessions {
			if oldest == "" || exp.Before(h.sessions[oldest]) {
				oldest = k
			}
		}
		delete(h.sessions, oldest)
	}
	h.sessions[id] = now.Add(SessionTTL)
	h.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: int(SessionTTL / time.Second)})
	h.o.Log.Info("web login", "remote", r.RemoteAddr)
	writeJSON(w, struct{}{})
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		h.mu.Lock()
		delete(h.sessions, c.Value)
		h.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	writeJSON(w, struct{}{})
}

func (h *Handler) loggedIn(r *http.Request) bool {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	exp, ok := h.sessions[c.Value]
	if ok && !h.o.Now().Before(exp) {
		delete(h.sessions, c.Value)
		return false
	}
	return ok
}

func (h *Handler) authed(f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !h.loggedIn(r) {
			writeErr(w, http.StatusUnauthorized, "log in first")
			return
		}
		f(w, r)
	}
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, h.o.Backend.Status(r.Context()))
}

func (h *Handler) up(w http.ResponseWriter, r *http.Request) {
	var s Settings
	if !readJSON(w, r, &s) {
		return
	}
	req := localapi.UpRequest{AdvertiseRoutes: s.AdvertiseRoutes, AcceptRoutes: s.AcceptRoutes, AdvertiseExitNode: s.AdvertiseExitNode}
	if _, err := h.o.Backend.Up(r.Context(), req); err != nil {
		h.fail(w, "up", err)
		return
	}
	if h.o.Persist != nil {
		if err := h.o.Persist(s); err != nil {
			h.o.Log.Error("web: settings applied but not saved", "err", err)
			writeErr(w, http.StatusInternalServerError, "applied, but not saved for the next start: "+err.Error())
			return
		}
	}
	h.o.Log.Info("web: settings changed", "remote", r.RemoteAddr)
	writeJSON(w, struct{}{})
}

func (h *Handler) down(w http.ResponseWriter, r *http.Request) {
	if err := h.o.Backend.Down(r.Context()); err != nil {
		h.fail(w, "down", err)
		return
	}
	writeJSON(w, struct{}{})
}

func (h *Handler) fail(w http.ResponseWriter, op string, err error) {
	code := http.StatusInternalServerError
	var e *localapi.Error
	if errors.As(err, &e) {
		code = e.Code
	}
	h.o.Log.Info("web request failed", "op", op, "err", err)
	writeErr(w, code, err.Error())
}

func randHex() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// The web page answers like the local API: same JSON bodies and errors,
// a smaller body limit.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	return localapi.ReadJSON(w, r, v, 16<<10)
}

func writeJSON(w http.ResponseWriter, v any) { localapi.WriteJSON(w, v) }

func writeErr(w http.ResponseWriter, code int, msg string) { localapi.WriteError(w, code, msg) }
