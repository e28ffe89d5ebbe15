package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/coord/server"
	"github.com/lanmesh/lanmesh/coord/store"
	"github.com/lanmesh/lanmesh/coord/webadmin"
	"github.com/lanmesh/lanmesh/derp"
	"github.com/lanmesh/lanmesh/internal/tlscert"
)

var serveCmd = &command{
	name:    "serve",
	summary: "run the coordination server",
	examples: []string{
		"lanmesh-coord serve --listen :443 --server-url https://coord.example.net",
		"lanmesh-coord serve --listen 198.18.0.10:8443 --server-url https://198.18.0.10:8443 --state-dir /tmp/coord --verbose",
		"lanmesh-coord serve --server-url https://coord.example.net --plugins-config /etc/lanmesh/plugins.json",
	},
	setup: func(fs *flag.FlagSet) func(context.Context, *globals, []string) error {
		listen := fs.String("listen", ":443", "address for the node API (HTTPS)")
		serverURL := fs.String("server-url", "", "URL nodes use to reach this server; its host goes into the self-signed certificate")
		domain := fs.String("domain", "", `mesh DNS domain (default: the stored one, initially "mesh.internal")`)
		certFile := fs.String("tls-cert", "", "TLS certificate (PEM); default: a self-signed one made in the state dir")
		keyFile := fs.String("tls-key", "", "TLS private key (PEM) for --tls-cert")
		keyExpiry := fs.Duration("node-key-expiry", server.DefaultKeyLifetime, "lifetime of an untagged node's key from its registration or login (tagged nodes' keys do not expire; per node: nodes expiry)")
		ephemeral := fs.Duration("ephemeral-inactivity-timeout", server.DefaultEphemeralTimeout, "how long a node that joined with an ephemeral key (keys create --ephemeral) may stay disconnected before it is deleted")
		refresh := fs.Duration("idp-refresh-interval", server.DefaultIdPRefreshInterval, "how often coord asks each IdP whether a logged-in person still has access (a refusal disables the user); 0 turns the check off")
		derpTokenFile := fs.String("derp-token-file", "", "file with the bearer token relays present on /v1/derp/verify (or env LANMESH_COORD_DERP_TOKEN); unset: relays are refused")
		var rf relayFlags
		fs.BoolVar(&rf.derp, "derp", true, "embed a relay at /derp on --listen and a STUN server; --derp=false turns both off")
		fs.IntVar(&rf.stunPort, "stun-port", 3478, "UDP port of the embedded STUN server, on --listen's host; 0 turns STUN off")
		fs.StringVar(&rf.mapFile, "derp-map", "", "JSON DERP map file ({\"regions\":[...]}) of lanmesh-derp relays to hand nodes besides coord's own (region 1)")
		fs.Int64Var(&rf.rate, "derp-rate-limit", derp.DefaultRateBytesPerSec, "bytes per second one client may send through the embedded relay; 0 = unlimited")
		fs.IntVar(&rf.queueBytes, "derp-queue-bytes", derp.DefaultQueueBytes, "bytes the embedded relay queues per receiving client before drop-tail")
		fs.IntVar(&rf.maxHandshakes, "derp-max-handshakes", derp.DefaultMaxHandshakes, "embedded relay handshakes in progress at once; more connections are closed")
		fs.IntVar(&rf.maxHandshakesPerSource, "derp-max-handshakes-per-source", derp.DefaultMaxHandshakesPerSource, "embedded relay handshakes in progress from one source address (IPv6: per /64); more are closed")
		lim := server.DefaultLimits
		fs.IntVar(&lim.MaxConns, "max-conns", lim.MaxConns, "open node-API connections in total; more wait in the kernel's backlog")
		fs.IntVar(&lim.MaxConnsPerSource, "max-conns-per-source", lim.MaxConnsPerSource, "open node-API connections per source address (IPv6: per /64); more are closed")
		fs.IntVar(&lim.MaxStreams, "max-streams", lim.MaxStreams, "open netmap streams in total; more get 503")
		fs.IntVar(&lim.MaxStreamsPerNode, "max-streams-per-node", lim.MaxStreamsPerNode, "open netmap streams per node; a new one ends the node's oldest")
		fs.Float64Var(&lim.ChallengeRate, "challenge-rate", lim.ChallengeRate, "challenges and health checks per second per source address")
		fs.IntVar(&lim.ChallengeBurst, "challenge-burst", lim.ChallengeBurst, "burst for --challenge-rate")
		fs.Float64Var(&lim.RegisterRate, "register-rate", lim.RegisterRate, "signed requests per second per source address from machines coord does not know (first registrations); known machines are not counted")
		fs.IntVar(&lim.RegisterBurst, "register-burst", lim.RegisterBurst, "burst for --register-rate")
		fs.Float64Var(&lim.AdminRate, "admin-api-rate", lim.AdminRate, "requests per second per source address to the HTTPS admin API (/api/v1/admin/, API keys), counted before the key is checked")
		fs.IntVar(&lim.AdminBurst, "admin-api-burst", lim.AdminBurst, "burst for --admin-api-rate")
		auditCfg := server.AuditConfig{Retention: server.DefaultAuditRetention, MaxEvents: server.DefaultAuditMaxEvents}
		fs.Func("audit-retention", "audit events older than this are deleted: days (365d) or a duration (8760h) (default 365d)", func(v string) error {
			d, err := adminapi.ParseExpiry(v)
			if err != nil {
				return err
			}
			auditCfg.Retention = d
			return nil
		})
		fs.IntVar(&auditCfg.MaxEvents, "audit-max-events", auditCfg.MaxEvents, "the audit log keeps at most this many events (the oldest go first)")
		var pf pluginFlags
		fs.StringVar(&pf.dir, "plugins-dir", defaultPluginsDir, "directory of plugin executables (docs/plugins.md)")
		fs.StringVar(&pf.config, "plugins-config", "", "JSON file saying which plugins run, with their settings; unset: none (docs/plugins.md)")
		var wf webFlags
		fs.BoolVar(&wf.on, "web-admin", true, "serve the web admin at /admin/ on --listen (needs --server-url and an IdP plugin to sign in; docs/identity.md)")
		fs.Func("admin-group", "policy group whose members are web admins besides users with the admin role, e.g. group:netadmins (repeat for more)", func(v string) error {
			for _, g := range strings.Split(v, ",") {
				if err := webadmin.CheckAdminGroup(strings.TrimSpace(g)); err != nil {
					return err
				}
				wf.groups = append(wf.groups, strings.TrimSpace(g))
			}
			return nil
		})
		fs.DurationVar(&wf.idle, "admin-session-idle", webadmin.DefaultIdleTimeout, "a web admin session ends after this long without a request")
		fs.DurationVar(&wf.max, "admin-session-max", webadmin.DefaultMaxAge, "a web admin session ends this long after sign-in, however active")
		verbose := fs.Bool("verbose", false, "log every request-level event (debug)")
		return func(ctx context.Context, g *globals, args []string) error {
			if len(args) != 0 {
				return usageError{"serve takes no arguments"}
			}
			if (*certFile == "") != (*keyFile == "") {
				return usageError{"--tls-cert and --tls-key go together"}
			}
			if *keyExpiry <= 0 {
				return usageError{"--node-key-expiry must be positive"}
			}
			if wf.idle <= 0 || wf.max <= 0 {
				return usageError{"--admin-session-idle and --admin-session-max must be positive"}
			}
			if *ephemeral <= 0 {
				return usageError{"--ephemeral-inactivity-timeout must be positive, e.g. 2m"}
			}
			if *refresh < 0 {
				return usageError{"--idp-refresh-interval must be positive (e.g. 10m), or 0 to turn the check off"}
			}
			if *refresh == 0 {
				*refresh = -1 // server.Config: negative is off
			}
			if err := checkLimitFlags(lim, rf); err != nil {
				return err
			}
			if auditCfg.MaxEvents <= 0 {
				return usageError{"--audit-max-events must be positive"}
			}
			level := slog.LevelWarn
			if *verbose {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			token, err := derpToken(*derpTokenFile)
			if err != nil {
				return err
			}
			return serve(ctx, g, log, *listen, *serverURL, *domain, *certFile, *keyFile, lifetimes{key: *keyExpiry, ephemeral: *ephemeral, refresh: *refresh, audit: auditCfg}, token, rf, lim, pf, wf)
		}
	},
}

// checkLimitFlags refuses zero or negative limits (--derp-rate-limit 0
// means unlimited).
func checkLimitFlags(lim server.Limits, rf relayFlags) error {
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"max-conns", float64(lim.MaxConns)}, {"max-conns-per-source", float64(lim.MaxConnsPerSource)},
		{"max-streams", float64(lim.MaxStreams)}, {"max-streams-per-node", float64(lim.MaxStreamsPerNode)},
		{"challenge-rate", lim.ChallengeRate}, {"challenge-burst", float64(lim.ChallengeBurst)},
		{"register-rate", lim.RegisterRate}, {"register-burst", float64(lim.RegisterBurst)},
		{"admin-api-rate", lim.AdminRate}, {"admin-api-burst", float64(lim.AdminBurst)},
		{"derp-queue-bytes", float64(rf.queueBytes)}, {"derp-max-handshakes", float64(rf.maxHandshakes)},
		{"derp-max-handshakes-per-source", float64(rf.maxHandshakesPerSource)},
	} {
		if !(f.v > 0) {
			return usageError{fmt.Sprintf("--%s %v: want a positive number", f.name, f.v)}
		}
	}
	if rf.rate < 0 {
		return usageError{fmt.Sprintf("--derp-rate-limit %d: want bytes per second, or 0 for unlimited", rf.rate)}
	}
	return nil
}

// webFlags configure the web admin.
type webFlags struct {
	on        bool
	groups    []string
	idle, max time.Duration
}

// lifetimes are serve's durations of node keys, ephemeral nodes and
// IdP identities.
type lifetimes struct {
	key, ephemeral, refresh time.Duration
	audit                   server.AuditConfig // how long audit events are kept
}

func serve(ctx context.Context, g *globals, log *slog.Logger, listen, serverURL, domain, certFile, keyFile string, lt lifetimes, derpToken string, rf relayFlags, lim server.Limits, pf pluginFlags, wf webFlags) error {
	host := ""
	if serverURL != "" {
		u, err := url.Parse(serverURL)
		if err != nil || u.Scheme != "https" || u.Hostname() == "" {
			return usageError{fmt.Sprintf("--server-url %q: want https://host[:port]", serverURL)}
		}
		host = u.Hostname()
	}
	if err := os.MkdirAll(g.stateDir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	cert, err := tlscert.Load(certFile, keyFile)
	if certFile == "" {
		cert, err = tlscert.LoadOrCreate(g.stateDir, "lanmesh-coord", host)
	}
	if err != nil {
		return err
	}
	st, err := store.OpenSQLite(ctx, filepath.Join(g.stateDir, "coord.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	providers, stopPlugins, err := startPlugins(ctx, pf, serverURL, log)
	if err != nil {
		return err
	}
	defer stopPlugins()
	srv, err := server.New(ctx, server.Config{Store: st, Cert: cert, Logger: log, Domain: domain, KeyLifetime: lt.key, DerpToken: derpToken, Limits: lim,
		LoginProviders: providers, PublicURL: serverURL, EphemeralTimeout: lt.ephemeral, IdPRefreshInterval: lt.refresh, Audit: lt.audit})
	if err != nil {
		return err
	}
	if wf.on && serverURL != "" {
		web, err := webadmin.New(webadmin.Config{Server: srv, Store: st, Logger: log, AdminGroups: wf.groups, IdleTimeout: wf.idle, MaxAge: wf.max})
		if err != nil {
			srv.Close()
			return err
		}
		srv.Mount(webadmin.Prefix, web.Handler())
	} else if wf.on {
		log.Warn("web admin off: it needs --server-url")
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", listen, err)
	}
	if err := setupRelay(srv, rf, serverURL, ln, os.Stderr); err != nil {
		ln.Close()
		srv.Close()
		return err
	}
	aln, err := server.ListenAdmin(filepath.Join(g.stateDir, "admin.sock"))
	if err != nil {
		ln.Close()
		srv.Close()
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Always shown, even when quiet: the operator needs the pin.
	fmt.Fprintf(os.Stderr, "lanmesh-coord: serving on %s, state in %s\nlanmesh-coord: certificate fingerprint %s\n", ln.Addr(), g.stateDir, srv.Fingerprint())
	log.Info("serving", "listen", ln.Addr().String(), "fingerprint", srv.Fingerprint())
	return srv.Serve(ctx, ln, aln)
}

// derpToken reads the relay token; it is a secret, so errors never quote it.
func derpToken(file string) (string, error) {
	tok := os.Getenv("LANMESH_COORD_DERP_TOKEN")
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--derp-token-file: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	if tok != "" && len(tok) < 16 {
		return "", errors.New("relay token: want at least 16 characters")
	}
	return tok, nil
}
