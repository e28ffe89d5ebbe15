package controlclient

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// Options configure a Client.
type Options struct {
	ServerURL string // https://host:port
	// Fingerprint optionally pins coord's certificate (wire.ParseFingerprint
	// form). When set, the leaf certificate must hash to it and normal CA
	// verification is skipped; when empty, the system roots are used.
	Fingerprint string
	MachineKey  key.MachinePrivate
	Logger      *slog.Logger
	// Control, when set, runs on each TCP socket before it connects (the
	// agent marks it with SO_MARK to route it around its exit node).
	Control func(network, address string, c syscall.RawConn) error
}

// StatusError is a non-2xx answer from coord. Message is coord's wire.Error
// text (e.g. "auth key expired at ..."), fit to show a user.
type StatusError struct {
	Code    int
	Message string
	// Reason is coord's wire.Reason* for a refusal that retrying cannot
	// fix ("" for every other error).
	Reason string
	// RetryAfter is coord's Retry-After (429 past a rate limit, 503), 0
	// when it sent none.
	RetryAfter time.Duration
}

// Busy reports an answer that says "not now" rather than "no": a rate
// limit (429) or coord over capacity (503). Retry after RetryAfter.
func (e *StatusError) Busy() bool {
	return e.Code == http.StatusTooManyRequests || e.Code == http.StatusServiceUnavailable
}

// NeedsLogin reports whether coord refused the node for good (deleted,
// expired, disabled, another node key): retrying cannot help.
func (e *StatusError) NeedsLogin() bool { return e.Reason != "" }

func (e *StatusError) Error() string {
	return fmt.Sprintf("coord: %s (HTTP %d)", e.Message, e.Code)
}

// Client talks to one coord server. It is safe for concurrent use.
type Client struct {
	base *url.URL
	mkey key.MachinePrivate
	log  *slog.Logger
	hc   *http.Client
	// idleTimeout is how long Map waits for any message before giving up;
	// a field so tests need not wait 45 s.
	idleTimeout time.Duration
}

// requestTimeout bounds the short requests (challenge, register).
const requestTimeout = 30 * time.Second

// New checks o and returns a Client.
func New(o Options) (*Client, error) {
	u, err := url.Parse(o.ServerURL)
	if err != nil {
		return nil, fmt.Errorf("coord server URL %q: %w", o.ServerURL, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("coord server URL %q: want https://host[:port]", o.ServerURL)
	}
	if o.MachineKey.IsZero() {
		return nil, errors.New("controlclient: machine key is not set")
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.Fingerprint != "" {
		pin, err := wire.ParseFingerprint(o.Fingerprint)
		if err != nil {
			return nil, err
		}
		// The pin replaces CA verification: a self-signed coord is trusted
		// exactly when its certificate is the one the auth key named.
		tc.InsecureSkipVerify = true
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("coord presented no certificate")
			}
			sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if !key.Equal(sum[:], pin) {
				return errors.New("coord certificate does not match the pinned fingerprint (wrong server, or its certificate changed)")
			}
			return nil
		}
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: o.Control}).DialContext,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: 10 * time.Second,
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        4,
		IdleConnTimeout:     90 * time.Second,
	}
	return &Client{
		base:        u,
		mkey:        o.MachineKey,
		log:         log,
		hc:          &http.Client{Transport: tr},
		idleTimeout: 3 * wire.KeepAliveInterval,
	}, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

func (c *Client) url(path string) string {
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	return u.String()
}

// challenge fetches a fresh single-use nonce.
func (c *Client) challenge(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(wire.PathChallenge), nil)
	if err != nil {
		return "", err
	}
	// Lets coord charge our own challenge budget when our address's is
	// spent (someone behind the same address floods it); docs/limits.md.
	req.Header.Set(wire.HeaderMachine, c.mkey.Public().String())
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("get challenge: %w", err)
	}
	defer resp.Body.Close()
	if err := statusErr(resp); err != nil {
		return "", fmt.Errorf("get challenge: %w", err)
	}
	var ch wire.Challenge
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&ch); err != nil {
		return "", fmt.Errorf("get challenge: bad answer: %w", err)
	}
	if ch.Nonce == "" {
		return "", errors.New("get challenge: empty nonce")
	}
	return ch.Nonce, nil
}

// post signs body for path with a fresh nonce and sends it.
func (c *Client) post(ctx, reqCtx context.Context, path string, v any) (*http.Response, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	nonce, err := c.challenge(ctx)
	if err != nil {
		return nil, err
	}
	env := wire.Envelope{
		Version: wire.ProtocolVersion,
		Machine: c.mkey.Public(),
		Nonce:   nonce,
		Body:    body,
		Sig:     c.mkey.Sign(wire.SignedBytes(path, nonce, body)),
	}
	eb, err := json.Marshal(env)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, c.url(path), bytes.NewReader(eb))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if err := statusErr(resp); err != nil {
		resp.Body.Close()
		return nil, err
	}
	return resp, nil
}

// statusErr turns a non-2xx answer into a *StatusError.
func statusErr(resp *http.Response) error {
	if resp.StatusCode/100 == 2 {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var we wire.Error
	msg, reason := "", ""
	if json.Unmarshal(b, &we) == nil && we.Error != "" {
		msg = we.Error
		// Only a 4xx can be final; a reason on anything else is ignored.
		if resp.StatusCode/100 == 4 {
			reason = we.Reason
		}
	} else {
		msg = strings.TrimSpace(string(b))
		if msg == "" {
			msg = http.StatusText(resp.StatusCode)
		}
	}
	se := &StatusError{Code: resp.StatusCode, Message: msg, Reason: reason}
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		se.RetryAfter = min(time.Duration(secs)*time.Second, 5*time.Minute)
	}
	return se
}

// Register joins the node (or re-registers a known machine key).
func (c *Client) Register(ctx context.Context, req wire.RegisterRequest) (wire.RegisterResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := c.post(ctx, ctx, wire.PathRegister, req)
	if err != nil {
		return wire.RegisterResponse{}, fmt.Errorf("register: %w", err)
	}
	defer resp.Body.Close()
	var rr wire.RegisterResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, wire.MaxMapMessageBytes)).Decode(&rr); err != nil {
		return wire.RegisterResponse{}, fmt.Errorf("register: bad answer: %w", err)
	}
	c.log.Debug("registered", "node", rr.Node.Name, "id", rr.Node.ID)
	return rr, nil
}

// Map opens the netmap stream and calls fn for each message (including
// keep-alives) until ctx ends, the stream breaks, or fn returns an error,
// and returns the reason. It fails if no message arrives within
// 3*wire.KeepAliveInterval.
func (c *Client) Map(ctx context.Context, req wire.MapRequest, fn func(*wire.MapMessage) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	errIdle := fmt.Errorf("netmap stream: no message from coord in %v", c.idleTimeout)
	watchdog := time.AfterFunc(c.idleTimeout, func() { cancel(errIdle) })
	defer watchdog.Stop()

	shortCtx, shortCancel := context.WithTimeout(ctx, requestTimeout)
	defer shortCancel()
	resp, err := c.post(shortCtx, ctx, wire.PathMap, req)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && errors.Is(err, context.Canceled) {
			return cause
		}
		return fmt.Errorf("netmap stream: %w", err)
	}
	defer resp.Body.Close()

	br := bufio.NewReaderSize(resp.Body, 64<<10)
	for {
		line, err := readLine(br, wire.MaxMapMessageBytes)
		if err != nil {
			if cause := context.Cause(ctx); cause != nil {
				return cause
			}
			if err == io.EOF {
				return errors.New("netmap stream: coord closed the stream")
			}
			return fmt.Errorf("netmap stream: %w", err)
		}
		watchdog.Reset(c.idleTimeout)
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		msg := new(wire.MapMessage)
		if err := json.Unmarshal(line, msg); err != nil {
			return fmt.Errorf("netmap stream: bad message: %w", err)
		}
		if err := fn(msg); err != nil {
			return err
		}
	}
}

// readLine reads one newline-terminated line of at most max bytes.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var buf []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(buf)+len(frag) > max {
			return nil, fmt.Errorf("message longer than %d bytes", max)
		}
		buf = append(buf, frag...)
		switch {
		case err == nil:
			return buf, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF && len(buf) > 0:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}
