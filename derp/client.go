package derp

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// ClientOptions tune a relay client; the zero value is fine.
type ClientOptions struct {
	// Fingerprint pins the relay's TLS certificate (wire.Fingerprint of
	// its DER) instead of verifying it against the system roots, for
	// relays with a self-signed certificate.
	Fingerprint string
	// TLSConfig is the base TLS config (e.g. custom roots); cloned.
	TLSConfig *tls.Config
	// KeepAlive is how often the client proves it is alive. Default 15 s.
	KeepAlive time.Duration
	// DialContext opens the TCP connection; nil: a net.Dialer (tests use
	// it to dial from inside a network namespace).
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Client is one connection to a relay. Send may be called from many
// goroutines; Recv/RecvMessage from one. Reconnecting is the caller's job:
// after an error, Close and Connect again.
type Client struct {
	conn      net.Conn
	br        *bufio.Reader
	pub       key.NodePublic
	serverKey key.NodePublic
	info      ServerInfo
	idle      time.Duration

	wmu sync.Mutex

	ctx    context.Context
	cancel context.CancelFunc
	buf    []byte
}

// MessageKind says what a Message carries.
type MessageKind int

const (
	MsgPacket   MessageKind = iota + 1 // Key sent Data
	MsgPeerGone                        // Key is not (or no longer) on the relay
	MsgPong                            // Data echoes a Ping
	MsgHealth                          // Text describes a relay problem; empty = healthy
)

// Message is one thing received from the relay.
type Message struct {
	Kind   MessageKind
	Key    key.NodePublic
	Data   []byte
	Reason PeerGoneReason
	Text   string
}

// Connect dials the relay at rawURL (https://host[:port][/derp], or
// http:// behind a TLS-terminating proxy or in tests), proves possession
// of priv and returns the ready client. fingerprint, if not empty, pins
// the relay's certificate.
func Connect(ctx context.Context, rawURL string, priv key.NodePrivate, fingerprint string) (*Client, error) {
	return ConnectWith(ctx, rawURL, priv, ClientOptions{Fingerprint: fingerprint})
}

// ConnectWith is Connect with options.
func ConnectWith(ctx context.Context, rawURL string, priv key.NodePrivate, opts ClientOptions) (*Client, error) {
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = 15 * time.Second
	}
	conn, br, err := dialUpgrade(ctx, rawURL, opts)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			conn.Close()
		}
	}()
	deadline, has := ctx.Deadline()
	if !has {
		deadline = time.Now().Add(15 * time.Second)
	}
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	c := &Client{conn: conn, br: br, pub: priv.Public(), idle: 2*opts.KeepAlive + 5*time.Second}
	if err := c.handshake(priv); err != nil {
		return nil, fmt.Errorf("relay %s: %w", rawURL, err)
	}
	conn.SetDeadline(time.Time{})
	ok = true
	c.ctx, c.cancel = context.WithCancel(context.Background())
	go c.keepAlive(opts.KeepAlive)
	return c, nil
}

func (c *Client) handshake(priv key.NodePrivate) error {
	t, p, err := ReadFrame(c.br, nil)
	if err != nil {
		return fmt.Errorf("read ServerKey: %w", err)
	}
	if t == FrameError {
		s, _ := parseText(t, p)
		return fmt.Errorf("relay refused: %s", s)
	}
	if t != FrameServerKey {
		return fmt.Errorf("expected ServerKey, got %s", t)
	}
	spub, challenge, err := parseServerKey(p)
	if err != nil {
		return err
	}
	ci, err := sealClientInfo(priv, spub, challenge, ClientInfo{Version: ProtocolVersion})
	if err != nil {
		return err
	}
	if err := WriteFrame(c.conn, FrameClientInfo, ci); err != nil {
		return fmt.Errorf("send ClientInfo: %w", err)
	}
	t, p, err = ReadFrame(c.br, nil)
	if err != nil {
		return fmt.Errorf("read ServerInfo: %w", err)
	}
	switch t {
	case FrameServerInfo:
	case FrameError:
		s, _ := parseText(t, p)
		return fmt.Errorf("relay refused: %s", s)
	default:
		return fmt.Errorf("expected ServerInfo, got %s", t)
	}
	if err := json.Unmarshal(p, &c.info); err != nil {
		return fmt.Errorf("ServerInfo: %w", err)
	}
	c.serverKey = spub
	return nil
}

// ServerKey is the relay's Curve25519 key from the handshake.
func (c *Client) ServerKey() key.NodePublic { return c.serverKey }

// ServerInfo is what the relay said about itself (e.g. the rate limit).
func (c *Client) ServerInfo() ServerInfo { return c.info }

// PublicKey is this client's node key.
func (c *Client) PublicKey() key.NodePublic { return c.pub }

// Close ends the connection.
func (c *Client) Close() error {
	c.cancel()
	return c.conn.Close()
}

func (c *Client) writeFrame(t FrameType, parts ...[]byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return WriteFrame(c.conn, t, parts...)
}

// Send relays pkt to the node dst.
func (c *Client) Send(dst key.NodePublic, pkt []byte) error {
	if len(pkt) > MaxPacketSize {
		return fmt.Errorf("relay: packet of %d bytes over the %d limit", len(pkt), MaxPacketSize)
	}
	return c.writeFrame(FrameSendPacket, dst[:], pkt)
}

// Ping asks the relay to echo data in a Pong message.
func (c *Client) Ping(data [8]byte) error { return c.writeFrame(FramePing, data[:]) }

func (c *Client) keepAlive(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
			if c.writeFrame(FrameKeepAlive) != nil {
				return
			}
		}
	}
}

// Recv returns the next relayed packet and its sender, skipping other
// messages. The packet is the caller's.
func (c *Client) Recv() (key.NodePublic, []byte, error) {
	for {
		m, err := c.RecvMessage()
		if err != nil {
			return key.NodePublic{}, nil, err
		}
		if m.Kind == MsgPacket {
			return m.Key, m.Data, nil
		}
	}
}

// RecvMessage returns the next message from the relay. Keepalives and
// the relay's pings are handled here. An Error frame from the relay, or
// silence past twice the keepalive interval, is an error.
func (c *Client) RecvMessage() (Message, error) {
	for {
		c.conn.SetReadDeadline(time.Now().Add(c.idle))
		t, p, err := ReadFrame(c.br, c.buf)
		if err != nil {
			return Message{}, fmt.Errorf("relay: %w", err)
		}
		if cap(p) > cap(c.buf) {
			c.buf = p[:0]
		}
		switch t {
		case FrameRecvPacket:
			src, pkt, err := parseKeyPacket(t, p)
			if err != nil {
				return Message{}, err
			}
			return Message{Kind: MsgPacket, Key: src, Data: append([]byte(nil), pkt...)}, nil
		case FrameKeepAlive:
		case FramePing:
			if len(p) != pingLen {
				return Message{}, fmt.Errorf("relay: Ping of %d bytes", len(p))
			}
			if err := c.writeFrame(FramePong, p); err != nil {
				return Message{}, fmt.Errorf("relay: answer ping: %w", err)
			}
		case FramePong:
			return Message{Kind: MsgPong, Data: append([]byte(nil), p...)}, nil
		case FramePeerGone:
			k, r, err := parsePeerGone(p)
			if err != nil {
				return Message{}, err
			}
			return Message{Kind: MsgPeerGone, Key: k, Reason: r}, nil
		case FrameHealth:
			s, err := parseText(t, p)
			if err != nil {
				return Message{}, err
			}
			return Message{Kind: MsgHealth, Text: s}, nil
		case FrameError:
			s, _ := parseText(t, p)
			return Message{}, fmt.Errorf("relay closed the connection: %s", s)
		default:
			return Message{}, fmt.Errorf("relay: unexpected %s frame", t)
		}
	}
}

// dialUpgrade dials the relay and completes TLS and the HTTP upgrade.
func dialUpgrade(ctx context.Context, rawURL string, opts ClientOptions) (net.Conn, *bufio.Reader, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, fmt.Errorf("relay URL %q: %w", rawURL, err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, nil, fmt.Errorf("relay URL %q: want https:// (or http://)", rawURL)
	}
	if u.Host == "" {
		return nil, nil, fmt.Errorf("relay URL %q: no host", rawURL)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = Path
	}
	host := u.Host
	if u.Port() == "" {
		if u.Scheme == "https" {
			host = net.JoinHostPort(u.Hostname(), "443")
		} else {
			host = net.JoinHostPort(u.Hostname(), "80")
		}
	}
	var fp []byte
	if opts.Fingerprint != "" {
		if fp, err = wire.ParseFingerprint(opts.Fingerprint); err != nil {
			return nil, nil, fmt.Errorf("relay fingerprint: %w", err)
		}
	}

	dial := opts.DialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	conn, err := dial(ctx, "tcp", host)
	if err != nil {
		return nil, nil, fmt.Errorf("relay %s: %w", u.Host, err)
	}
	ok := false
	defer func() {
		if !ok {
			conn.Close()
		}
	}()
	// Bounded by ctx, or 15 s if ctx has no deadline.
	deadline, has := ctx.Deadline()
	if !has {
		deadline = time.Now().Add(15 * time.Second)
	}
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if u.Scheme == "https" {
		cfg := &tls.Config{}
		if opts.TLSConfig != nil {
			cfg = opts.TLSConfig.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		cfg.NextProtos = []string{"http/1.1"} // upgrade needs HTTP/1.1
		if fp != nil {
			// The pin replaces CA verification; it is checked below, so
			// skipping the chain check is not skipping verification.
			cfg.InsecureSkipVerify = true
			cfg.VerifyConnection = func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return errors.New("relay presented no certificate")
				}
				sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
				if !key.Equal(sum[:], fp) {
					return errors.New("relay certificate does not match the pinned fingerprint")
				}
				return nil
			}
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, nil, fmt.Errorf("relay %s: TLS: %w", u.Host, err)
		}
		conn = tc
	}

	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUser-Agent: lanmesh\r\nUpgrade: " + UpgradeProtocol + "\r\nConnection: Upgrade\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return nil, nil, fmt.Errorf("relay %s: send upgrade: %w", u.Host, err)
	}
	br := bufio.NewReaderSize(conn, 32<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("relay %s: read upgrade answer: %w", u.Host, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		resp.Body.Close()
		return nil, nil, fmt.Errorf("relay %s: upgrade refused: %s: %q", u.Host, resp.Status, b)
	}

	ok = true
	return conn, br, nil
}
