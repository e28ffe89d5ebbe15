package webadmin

import (
	"context"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/coord/server"
	"github.com/lanmesh/lanmesh/coord/store"
)

// Prefix is where the web admin is mounted on coord's HTTPS listener.
const Prefix = "/admin/"

// maxForm bounds a POSTed form; the policy editor's text is the largest
// (policies are at most 1 MiB, as on the admin API).
const maxForm = 1<<20 + 64<<10

// Config configures the web admin.
type Config struct {
	Server *server.Server
	Store  store.Store // reads: users and the policy, for admin roles
	Logger *slog.Logger
	// AdminGroups are policy groups ("group:netadmins") whose members
	// are admins besides users with the admin role (roles.go).
	AdminGroups []string
	// IdleTimeout and MaxAge end sessions server-side (S12); zero takes
	// DefaultIdleTimeout and DefaultMaxAge.
	IdleTimeout, MaxAge time.Duration
	Now                 func() time.Time // default time.Now
}

// App is the web admin.
type App struct {
	cfg      Config
	log      *slog.Logger
	sessions *sessions
	api      *adminapi.Client // coord's admin API, in-process
	origin   string           // scheme://host[:port] of --server-url
	host     string           // the Host browsers must send
	mux      *http.ServeMux
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"when":  when,
	"join":  func(s []string) string { return strings.Join(s, ", ") },
	"since": func(t time.Time) string { return ago(time.Since(t)) },
}).ParseFS(templateFS, "templates/*.html"))

// New prepares the web admin. The server must have a public URL
// (--server-url): the origin and host checks compare against it.
func New(cfg Config) (*App, error) {
	if cfg.Server == nil || cfg.Store == nil {
		return nil, errors.New("webadmin: server and store are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.IdleTimeout < 0 || cfg.MaxAge < 0 {
		return nil, errors.New("webadmin: session timeouts must be positive")
	}
	for _, g := range cfg.AdminGroups {
		if err := CheckAdminGroup(g); err != nil {
			return nil, err
		}
	}
	pub := cfg.Server.PublicURL()
	u, err := url.Parse(pub)
	if pub == "" || err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("webadmin: coord's public URL %q: want https://host[:port] (set --server-url)", pub)
	}
	host := strings.ToLower(u.Host)
	if strings.HasSuffix(host, ":443") {
		host = strings.TrimSuffix(host, ":443")
	}
	a := &App{
		cfg: cfg, log: cfg.Logger,
		sessions: newSessions(cfg.IdleTimeout, cfg.MaxAge),
		api:      adminapi.NewHandlerClient(cfg.Server.AdminHandler()),
		origin:   "https://" + host,
		host:     host,
	}
	a.routes()
	return a, nil
}

// Handler serves the web admin; mount it at Prefix.
func (a *App) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		// DNS rebinding: a page on another name that resolves to coord
		// must not reach the admin (S5's lesson, on coord).
		if !a.hostOK(r.Host) {
			a.refuse(w, http.StatusForbidden, "Wrong host", fmt.Sprintf("This admin answers only at %s (coord's --server-url); the request named host %q.", a.origin+Prefix, r.Host))
			return
		}
		a.mux.ServeHTTP(w, r)
	})
}

func (a *App) hostOK(h string) bool {
	h = strings.ToLower(h)
	return h == a.host || h == a.host+":443"
}

// checkPost refuses a state change that is not clearly the admin's own:
// it must come from coord's origin (Origin, else Referer; and
// Sec-Fetch-Site when the browser sends it) and carry the session's
// CSRF token. The message says which check failed.
func (a *App) checkPost(r *http.Request, s *session) error {
	if sfs := r.Header.Get("Sec-Fetch-Site"); sfs != "" && sfs != "same-origin" {
		return fmt.Errorf("the request came from another site (Sec-Fetch-Site: %s); use the admin's own pages", sfs)
	}
	if o := r.Header.Get("Origin"); o != "" {
		if !strings.EqualFold(o, a.origin) && !strings.EqualFold(o, a.origin+":443") {
			return fmt.Errorf("the request came from a foreign origin %q; this admin accepts forms only from %s", o, a.origin)
		}
	} else if ref := r.Header.Get("Referer"); ref != "" {
		ru, err := url.Parse(ref)
		if err != nil || ru.Scheme != "https" || !a.hostOK(ru.Host) {
			return fmt.Errorf("the request came from a foreign page (Referer %q); this admin accepts forms only from %s", ref, a.origin)
		}
	} else {
		return errors.New("the request has neither an Origin nor a Referer header, so its origin cannot be checked; use a current browser")
	}
	tok := r.PostFormValue("csrf")
	if tok == "" {
		return errors.New("the form has no CSRF token; reload the page and try again")
	}
	if subtle.ConstantTimeCompare([]byte(tok), []byte(s.csrf)) != 1 {
		return errors.New("the form's CSRF token is not this session's (an old page, or another session's); reload the page and try again")
	}
	return nil
}

// apiCtx carries the admin to coord's admin API (audited as them).
func apiCtx(s *session, r *http.Request) context.Context {
	return server.WithActor(r.Context(), server.Actor{Kind: server.ActorWeb, Name: s.user, Source: r.RemoteAddr})
}

// page is what every template gets.
type page struct {
	Title   string
	Nav     string
	User    string
	CSRF    string
	Flash   flash
	Data    any
	Message string // refusal and login pages
}

func (a *App) render(w http.ResponseWriter, code int, name string, p page) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	if err := pages.ExecuteTemplate(w, name, p); err != nil {
		a.log.Error("web admin: render", "page", name, "err", err)
	}
}

// refuse answers with a short page that says what was refused and why.
func (a *App) refuse(w http.ResponseWriter, code int, title, msg string) {
	a.render(w, code, "message.html", page{Title: title, Message: msg})
}

func staticHandler() http.Handler {
	sub, _ := fs.Sub(staticFS, "static")
	return http.StripPrefix(Prefix+"static/", http.FileServer(http.FS(sub)))
}

func when(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%d days ago", int(d/(24*time.Hour)))
}
