package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/coord/netmap"
	"github.com/lanmesh/lanmesh/coord/store"
	"github.com/lanmesh/lanmesh/derp"
	"github.com/lanmesh/lanmesh/internal/connlimit"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// DefaultKeyLifetime is how long an untagged node key lives.
const DefaultKeyLifetime = 180 * 24 * time.Hour

// Config configures a Server.
type Config struct {
	Store       store.Store
	Cert        tls.Certificate
	Logger      *slog.Logger
	Domain      string           // mesh DNS domain; empty keeps the stored one
	KeyLifetime time.Duration    // node key lifetime; default DefaultKeyLifetime
	KeepAlive   time.Duration    // default wire.KeepAliveInterval
	Now         func() time.Time // default time.Now
	// Limits bound what clients may make coord spend; zero fields take
	// DefaultLimits.
	Limits Limits
	// DerpToken is the bearer token relays present on PathDerpVerify;
	// empty disables relay verification (every relay is refused).
	DerpToken string
	// LoginProviders are the identity providers nodes can log in with
	// (login.go); PublicURL is coord's URL as browsers reach it (the
	// --server-url), needed for their redirects.
	LoginProviders []LoginProvider
	PublicURL      string
	// EphemeralTimeout is how long an ephemeral node may stay
	// disconnected before it is deleted; default DefaultEphemeralTimeout.
	EphemeralTimeout time.Duration
	// IdPRefreshInterval is how often each IdP identity is checked with
	// its provider (refresh.go); default DefaultIdPRefreshInterval,
	// negative turns the check off.
	IdPRefreshInterval time.Duration
	// Audit bounds the audit log (audit.go); zero fields take the
	// defaults.
	Audit AuditConfig
}

// Server is a running coord.
type Server struct {
	cfg    Config
	st     store.Store
	log    *slog.Logger
	hub    *netmap.Hub
	nonces *nonceMinter
	fp     string
	lim    Limits

	machines *machines  // replay cache and budgets of known machines
	anon     *ipLimiter // challenges and health checks per source
	register *ipLimiter // signed requests of unknown machines per source
	streams  *streamSet // open netmap streams
	derp     relayState // embedded relay and DERP map (derp.go)
	logins   *logins    // pending interactive logins (login.go)
	reaper   *reaper    // deletes disconnected ephemeral nodes (ephemeral.go)
	audit    auditLog   // appends since the last prune (audit.go)
	apiAuth  *ipLimiter // HTTPS admin API requests per source (apiauth.go)

	policyMu sync.Mutex // one policy set at a time: check and store together

	mounts map[string]http.Handler // pages on the node API's listener (Mount)

	done     chan struct{} // closed by Close: ends every stream
	closeOne sync.Once
}

// New checks cfg and prepares a Server.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("server: no store")
	}
	if len(cfg.Cert.Certificate) == 0 {
		return nil, errors.New("server: no TLS certificate")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.KeyLifetime == 0 {
		cfg.KeyLifetime = DefaultKeyLifetime
	}
	if cfg.EphemeralTimeout <= 0 {
		cfg.EphemeralTimeout = DefaultEphemeralTimeout
	}
	if cfg.IdPRefreshInterval == 0 {
		cfg.IdPRefreshInterval = DefaultIdPRefreshInterval
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = wire.KeepAliveInterval
	}
	lim, err := cfg.Limits.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Audit, err = cfg.Audit.withDefaults(); err != nil {
		return nil, err
	}
	if cfg.Domain != "" {
		if err := cfg.Store.SetDomain(ctx, cfg.Domain); err != nil {
			return nil, err
		}
	}
	nonces, err := newNonceMinter(wire.NonceTTL, cfg.Now)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		st:       cfg.Store,
		log:      cfg.Logger,
		hub:      netmap.NewHub(cfg.Store, cfg.Now),
		nonces:   nonces,
		fp:       wire.Fingerprint(cfg.Cert.Certificate[0]),
		lim:      lim,
		machines: newMachines(lim.NoncesPerMachine, lim.KnownMachines, lim.MachineChallengeRate, float64(lim.MachineChallengeBurst)),
		anon:     newIPLimiter(lim.ChallengeRate, float64(lim.ChallengeBurst), lim.SourceTable),
		register: newIPLimiter(lim.RegisterRate, float64(lim.RegisterBurst), lim.SourceTable),
		streams:  newStreamSet(lim.MaxStreams, lim.MaxStreamsPerNode),
		done:     make(chan struct{}),
		logins:   newLogins(),
		reaper:   newReaper(),
		apiAuth:  newIPLimiter(lim.AdminRate, float64(lim.AdminBurst), lim.SourceTable),
	}
	s.pruneAudit()
	// Known machines get their own challenge budget from the start, so a
	// restarted coord does not leave them behind an attacker's address.
	nodes, err := cfg.Store.Nodes(ctx)
	if err != nil {
		return nil, fmt.Errorf("server: load nodes: %w", err)
	}
	now := cfg.Now()
	for i, n := range nodes {
		// Ephemeral nodes left over from before a restart get the full
		// timeout from now to reconnect.
		s.ephemeralOffline(n)
		if i >= lim.KnownMachines {
			continue
		}
		s.machines.add(n.MachineKey, now)
	}
	return s, nil
}

// Fingerprint is the pin of the server's certificate.
func (s *Server) Fingerprint() string { return s.fp }

// Close ends every netmap stream. It does not close the store.
func (s *Server) Close() {
	s.closeOne.Do(func() {
		close(s.done)
		s.closeReaper()
		s.hub.Close()
		s.closeRelay()
	})
}

// Handler is the node-facing API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+wire.PathChallenge, s.handleChallenge)
	mux.HandleFunc(wire.PathRegister, s.handleRegister)
	mux.HandleFunc(wire.PathMap, s.handleMap)
	mux.HandleFunc("GET "+wire.PathHealth, s.handleHealth)
	s.loginRoutes(mux)
	mux.HandleFunc("POST "+PathDerpVerify, s.handleDerpVerify)
	mux.HandleFunc("GET "+derp.WatchPath, s.handleDerpWatch)
	mux.HandleFunc(derp.Path, s.serveRelay)
	mux.HandleFunc(derp.Path+"/probe", s.serveRelay)
	for pattern, h := range s.mounts {
		mux.Handle(pattern, h)
	}
	mux.Handle(adminapi.RemotePrefix, s.remoteAdmin())
	return s.deadlines(mux)
}

// Mount serves h for pattern (an http.ServeMux pattern such as
// "/admin/") on the node API's HTTPS listener, e.g. the web admin
// (coord/webadmin). Call it before Serve or Handler.
func (s *Server) Mount(pattern string, h http.Handler) {
	if s.mounts == nil {
		s.mounts = map[string]http.Handler{}
	}
	s.mounts[pattern] = h
}

// Serve runs the node API on ln (TLS is added here) and the admin API on
// adminLn until ctx ends.
func (s *Server) Serve(ctx context.Context, ln, adminLn net.Listener) error {
	// No ReadTimeout/WriteTimeout: they would cut netmap streams; the
	// handler sets per-request deadlines instead (deadlines).
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: s.lim.HeaderTimeout, // also bounds the TLS handshake
		IdleTimeout:       s.lim.IdleTimeout,
		MaxHeaderBytes:    s.lim.MaxHeaderBytes,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: s.lim.MaxConcurrentStreams},
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{s.cfg.Cert}, MinVersion: tls.VersionTLS12},
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	ln = connlimit.New(ln, s.lim.MaxConns, s.lim.MaxConnsPerSource)
	as := &http.Server{Handler: s.AdminHandler(), ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return WithActor(ctx, Actor{Kind: ActorSocket, Name: socketPeer(c), Source: "unix socket"})
		}}
	errc := make(chan error, 2)
	go s.refreshLoop(ctx)
	go func() { errc <- hs.Serve(tls.NewListener(ln, hs.TLSConfig)) }()
	go func() { errc <- as.Serve(adminLn) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.Close() // streams end, so Shutdown need not wait for them
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hs.Shutdown(sctx)
	as.Shutdown(sctx)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// ListenAdmin opens the admin unix socket at path, mode 0600: whoever can
// reach it administers the mesh. The socket is made under a temporary name
// and renamed into place after chmod, so it is never reachable with the
// umask's looser mode.
func ListenAdmin(path string) (net.Listener, error) {
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	os.Remove(tmp)
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	fail := func(err error) (net.Listener, error) {
		ul.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	return &adminListener{UnixListener: ul, path: path}, nil
}

// adminListener removes the socket file on Close.
type adminListener struct {
	*net.UnixListener
	path string
	once sync.Once
}

func (l *adminListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() { os.Remove(l.path) })
	return err
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if ok, retry := s.anon.allow(sourceKey(r.RemoteAddr), s.cfg.Now()); !ok {
		tooMany(w, retry, "health checks")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := s.st.Ping(ctx); err != nil {
		s.log.Warn("health check failed", "err", err)
		writeErr(w, http.StatusServiceUnavailable, "store unavailable")
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write([]byte("ok\n"))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, wire.Error{Error: msg})
}
