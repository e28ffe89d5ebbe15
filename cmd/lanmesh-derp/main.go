// Command lanmesh-derp is the standalone lanmesh relay and STUN server.
package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lanmesh/lanmesh/derp"
	"github.com/lanmesh/lanmesh/derp/stun"
	"github.com/lanmesh/lanmesh/internal/connlimit"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

const usage = `lanmesh-derp: the lanmesh relay (encrypted packets between nodes) and STUN server.

Usage:
  lanmesh-derp [flags]               serve
  lanmesh-derp fingerprint [flags]   print the certificate pin and exit

On first start it makes a self-signed certificate in --state-dir and prints
its fingerprint; put that into the relay map (cert_fingerprint) so nodes pin it.

Who may relay comes from coord: the relay keeps a stream open to coord
(--watch-url, by default --verify-url with /verify replaced by /watch) that
pushes the set of live node keys, and cuts off a key the moment coord
drops it (node deleted or expired, user deleted or disabled). While the
stream has been silent for longer than --coord-max-stale, every key is
asked of --verify-url instead; when that cannot answer either, clients are
refused and dropped at the next --recheck (fail closed).

Example:
  lanmesh-derp --listen :443 --stun-port 3478 \
    --verify-url https://coord.example/v1/derp/verify --verify-token-file /etc/lanmesh-derp/token \
    --coord-fingerprint "$(lanmesh-coord fingerprint)"

Flags:
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type config struct {
	listen, stateDir, verifyURL, tokenFile, tlsCert, tlsKey, hostnames string
	watchURL, coordFP                                                  string
	stunPort                                                           int
	rate, burst                                                        int64
	queueBytes, maxHandshakes, maxHandshakesPerSource                  int
	maxConns, maxConnsPerSource                                        int
	queue                                                              int
	recheck, maxStale                                                  time.Duration
	openRelay, verbose                                                 bool
}

func run(args []string, stdout, stderr io.Writer) int {
	fingerprintOnly := len(args) > 0 && args[0] == "fingerprint"
	if fingerprintOnly {
		args = args[1:]
	}
	var c config
	fs := flag.NewFlagSet("lanmesh-derp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	fs.StringVar(&c.listen, "listen", ":443", "HTTPS address for the relay (GET /derp)")
	fs.IntVar(&c.stunPort, "stun-port", stun.DefaultPort, "UDP port for STUN on the --listen host; 0 turns STUN off")
	fs.StringVar(&c.verifyURL, "verify-url", "", "URL asked (POST {\"node_key\":...} -> {\"allowed\":bool}) whether a node may use the relay")
	fs.StringVar(&c.tokenFile, "verify-token-file", "", "file with a bearer token for --verify-url (or env LANMESH_DERP_VERIFY_TOKEN)")
	fs.StringVar(&c.watchURL, "watch-url", "", "coord's key stream (GET, same token) that pushes revocations; default: --verify-url ending in /verify with /watch instead; \"off\": poll only")
	fs.StringVar(&c.coordFP, "coord-fingerprint", "", "pin coord's TLS certificate (lanmesh-coord fingerprint) for --verify-url and --watch-url instead of the system's trusted CAs")
	fs.DurationVar(&c.maxStale, "coord-max-stale", 3*derp.WatchKeepAlive, "how long the pushed key set is trusted after coord's stream goes silent; then every key is asked of --verify-url")
	fs.BoolVar(&c.openRelay, "insecure-open-relay", false, "serve any node key without asking anyone (tests only: an open relay)")
	fs.StringVar(&c.stateDir, "state-dir", "/var/lib/lanmesh-derp", "directory for the certificate and relay key")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "PEM certificate (instead of the self-signed one)")
	fs.StringVar(&c.tlsKey, "tls-key", "", "PEM private key for --tls-cert")
	fs.StringVar(&c.hostnames, "hostname", "", "comma-separated names/IPs for the self-signed certificate")
	fs.Int64Var(&c.rate, "rate-limit", derp.DefaultRateBytesPerSec, "bytes per second one client may relay; 0 = unlimited")
	fs.Int64Var(&c.burst, "burst", 0, "burst bytes for --rate-limit (default one second's worth)")
	fs.IntVar(&c.queue, "queue", derp.DefaultQueueLen, "packets queued per receiving client before drop-tail")
	fs.IntVar(&c.queueBytes, "queue-bytes", derp.DefaultQueueBytes, "bytes queued per receiving client before drop-tail")
	fs.IntVar(&c.maxHandshakes, "max-handshakes", derp.DefaultMaxHandshakes, "relay handshakes in progress at once; more connections are closed")
	fs.IntVar(&c.maxHandshakesPerSource, "max-handshakes-per-source", derp.DefaultMaxHandshakesPerSource, "relay handshakes in progress from one source address (IPv6: per /64); more are closed")
	fs.IntVar(&c.maxConns, "max-conns", 4096, "open connections in total; more wait in the kernel's backlog")
	fs.IntVar(&c.maxConnsPerSource, "max-conns-per-source", 64, "open connections per source address (IPv6: per /64); more are closed")
	fs.DurationVar(&c.recheck, "recheck", 30*time.Second, "how often connected keys are verified again")
	fs.BoolVar(&c.verbose, "verbose", false, "debug logs")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "lanmesh-derp: unexpected argument %q; see --help\n", fs.Arg(0))
		return 2
	}
	for _, f := range []struct {
		name string
		v    int64
	}{{"rate-limit", c.rate}, {"burst", c.burst}, {"queue", int64(c.queue)}, {"queue-bytes", int64(c.queueBytes)},
		{"max-handshakes", int64(c.maxHandshakes)}, {"max-handshakes-per-source", int64(c.maxHandshakesPerSource)}, {"max-conns", int64(c.maxConns)}, {"max-conns-per-source", int64(c.maxConnsPerSource)}} {
		if f.v < 0 || (f.v == 0 && f.name != "rate-limit" && f.name != "burst") {
			fmt.Fprintf(stderr, "lanmesh-derp: --%s %d: want a positive number\n", f.name, f.v)
			return 2
		}
	}
	if c.rate == 0 {
		c.rate = derp.NoRateLimit
	}
	level := slog.LevelInfo
	if c.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	if err := os.MkdirAll(c.stateDir, 0o700); err != nil {
		fmt.Fprintf(stderr, "lanmesh-derp: state dir: %v\n", err)
		return 1
	}
	names := strings.Split(c.hostnames, ",")
	if h, err := os.Hostname(); err == nil {
		names = append(names, h)
	}
	cert, err := loadOrCreateCert(c.stateDir, c.tlsCert, c.tlsKey, names)
	if err != nil {
		fmt.Fprintf(stderr, "lanmesh-derp: certificate: %v\n", err)
		return 1
	}
	fp := wire.Fingerprint(cert.Certificate[0])
	if fingerprintOnly {
		fmt.Fprintln(stdout, fp)
		return 0
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, c, cert, fp, log, stdout); err != nil {
		fmt.Fprintf(stderr, "lanmesh-derp: %v\n", err)
		return 1
	}
	return 0
}

// verifier picks who decides which keys may relay. A *derp.CoordWatcher
// also needs Run and the server's Revoke/Recheck (serve wires them).
func verifier(c config, log *slog.Logger) (derp.Verifier, error) {
	switch {
	case c.maxStale <= 0:
		return nil, fmt.Errorf("--coord-max-stale %v: want a positive duration", c.maxStale)
	case c.verifyURL != "" && c.openRelay:
		return nil, errors.New("--verify-url and --insecure-open-relay exclude each other")
	case c.openRelay:
		log.Warn("open relay: any node key may relay (--insecure-open-relay); never on a public address")
		return derp.VerifierFunc(func(context.Context, key.NodePublic) (bool, error) { return true, nil }), nil
	case c.verifyURL == "":
		return nil, errors.New("no --verify-url: the relay must ask coord who may use it (S9); see --help")
	}
	token := os.Getenv("LANMESH_DERP_VERIFY_TOKEN")
	if c.tokenFile != "" {
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--verify-token-file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if _, err := url.Parse(c.verifyURL); err != nil {
		return nil, fmt.Errorf("--verify-url: %w", err)
	}
	tr, err := coordTransport(c.coordFP)
	if err != nil {
		return nil, err
	}
	hv := &derp.HTTPVerifier{URL: c.verifyURL, Token: token, Client: &http.Client{Transport: tr, Timeout: 5 * time.Second}}
	watch, err := watchURL(c.verifyURL, c.watchURL)
	if err != nil {
		return nil, err
	}
	if watch == "" {
		log.Warn("no coord key stream (--watch-url): revocations reach this relay only at the next --recheck")
		return hv, nil
	}
	return &derp.CoordWatcher{URL: watch, Token: token, Client: &http.Client{Transport: tr}, Fallback: hv, MaxStale: c.maxStale, Logger: log}, nil
}

// watchURL is --watch-url, or --verify-url's sibling .../watch; "" means
// none (a verify URL that is not coord's /v1/derp/verify, or "off").
func watchURL(verify, watch string) (string, error) {
	switch watch {
	case "off":
		return "", nil
	case "":
		if base, ok := strings.CutSuffix(verify, "/verify"); ok {
			return base + "/watch", nil
		}
		return "", nil
	}
	u, err := url.Parse(watch)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("--watch-url %q: want https://coord.example/v1/derp/watch (or \"off\")", watch)
	}
	return watch, nil
}

// coordTransport trusts the system's CAs, or only the certificate whose
// SHA-256 is fp.
func coordTransport(fp string) (*http.Transport, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if fp == "" {
		return tr, nil
	}
	pin, err := wire.ParseFingerprint(fp)
	if err != nil {
		return nil, fmt.Errorf("--coord-fingerprint: %w", err)
	}
	// The pin replaces CA verification: a self-signed coord is trusted
	// exactly when its certificate is the pinned one.
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("coord presented no certificate")
			}
			sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if !key.Equal(sum[:], pin) {
				return errors.New("coord's certificate does not match --coord-fingerprint")
			}
			return nil
		}}
	return tr, nil
}

func serve(ctx context.Context, c config, cert tls.Certificate, fp string, log *slog.Logger, stdout io.Writer) error {
	v, err := verifier(c, log)
	if err != nil {
		return err
	}
	nodeKey, err := loadOrCreateNodeKey(c.stateDir)
	if err != nil {
		return fmt.Errorf("relay key: %w", err)
	}
	srv, err := derp.NewServer(derp.Options{
		PrivateKey:             nodeKey,
		Verifier:               v,
		RateBytesPerSec:        c.rate,
		Burst:                  c.burst,
		QueueLen:               c.queue,
		QueueBytes:             c.queueBytes,
		MaxHandshakes:          c.maxHandshakes,
		MaxHandshakesPerSource: c.maxHandshakesPerSource,
		RecheckInterval:        c.recheck,
		Logger:                 log,
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	if cw, ok := v.(*derp.CoordWatcher); ok {
		cw.Revoke, cw.Recheck = srv.Revoke, srv.Recheck
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go cw.Run(wctx)
	}

	mux := http.NewServeMux()
	mux.Handle(derp.Path, srv)
	mux.HandleFunc(derp.Path+"/probe", func(w http.ResponseWriter, r *http.Request) {}) // latency probes
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "lanmesh relay\n")
	})

	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return err
	}
	ln = connlimit.New(ln, c.maxConns, c.maxConnsPerSource)
	hs := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second, // also bounds the TLS handshake
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    16 << 10,
		// The relay upgrades HTTP/1.1 connections; HTTP/2 cannot hijack.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		TLSConfig:    &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}},
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 2)
	go func() { errc <- hs.ServeTLS(ln, "", "") }()

	if c.stunPort > 0 {
		host, _, err := net.SplitHostPort(c.listen)
		if err != nil {
			return fmt.Errorf("--listen %q: %w", c.listen, err)
		}
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(c.stunPort)))
		if err != nil {
			hs.Close()
			return fmt.Errorf("STUN: %w", err)
		}
		st := &stun.Server{Logger: log}
		go func() { errc <- st.Serve(ctx, pc.(*net.UDPConn)) }()
		fmt.Fprintf(stdout, "stun: %s\n", pc.LocalAddr())
	}
	fmt.Fprintf(stdout, "relay: https://%s%s\nfingerprint: %s\nrelay key: %s\n", ln.Addr(), derp.Path, fp, srv.PublicKey())
	log.Info("lanmesh-derp serving", "listen", ln.Addr().String(), "stun_port", c.stunPort, "verify_url", c.verifyURL, "watch_url", watchOf(v))

	select {
	case <-ctx.Done():
	case err := <-errc:
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			hs.Close()
			return err
		}
	}
	srv.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hs.Shutdown(sctx)
	m := srv.Metrics()
	log.Info("lanmesh-derp stopped", "accepted", m.ClientsAccepted, "rejected", m.ClientsRejected, "forwarded", m.PacketsForwarded)
	return nil
}

func watchOf(v derp.Verifier) string {
	if cw, ok := v.(*derp.CoordWatcher); ok {
		return cw.URL
	}
	return ""
}
