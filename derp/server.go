package derp

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lanmesh/lanmesh/internal/connlimit"
	"github.com/lanmesh/lanmesh/internal/key"
)

// UpgradeProtocol is the value of the Upgrade header on GET /derp.
const UpgradeProtocol = "lanmesh-derp"

// Path is where the relay handler is mounted.
const Path = "/derp"

// Options configure a Server. Zero values pick the defaults noted.
type Options struct {
	// PrivateKey is the relay's Curve25519 key that clients seal their
	// handshake to. Zero: a fresh key (clients then cannot pin it, which
	// they do not need to: TLS authenticates the relay).
	PrivateKey key.NodePrivate
	// Verifier is required: without one the relay would be open (S9).
	Verifier Verifier
	// RateBytesPerSec caps what one client may send through the relay:
	// 0 means DefaultRateBytesPerSec, negative (NoRateLimit) no cap.
	// Burst defaults to one second of rate.
	RateBytesPerSec int64
	Burst           int64
	// QueueBytes bounds the bytes waiting to be written to one client
	// (default DefaultQueueBytes) and QueueLen the packets (default 256);
	// past either, new packets are dropped (drop-tail) and counted.
	QueueBytes int
	QueueLen   int
	// MaxHandshakes caps handshakes in progress (connections that have
	// not yet proven a node key), MaxHandshakesPerSource those from one
	// source address (IPv6: one /64), so one address cannot hold every
	// slot; past either, new connections are closed at once. Defaults
	// DefaultMaxHandshakes and DefaultMaxHandshakesPerSource.
	MaxHandshakes          int
	MaxHandshakesPerSource int
	// RecheckInterval is how often a connected client's key is asked of
	// the Verifier again. Default 30 s.
	RecheckInterval  time.Duration
	KeepAlive        time.Duration // default 15 s
	HandshakeTimeout time.Duration // default 5 s: the whole handshake, verifier included
	WriteTimeout     time.Duration // default 10 s: a client that cannot take a write in this time is dropped
	VerifyTimeout    time.Duration // default 5 s
	Logger           *slog.Logger
}

// Defaults of the per-client limits, sized so a 1 GiB VPS survives 1000
// clients that all stop reading: 1000 x 128 KiB of queues is 125 MiB
// (docs/limits.md).
const (
	// DefaultRateBytesPerSec, 8 MiB/s (67 Mbit/s) per sending client,
	// lets a relayed pair stream video while no single client can take
	// a small VPS's whole uplink.
	DefaultRateBytesPerSec        = 8 << 20
	DefaultQueueBytes             = 128 << 10
	DefaultQueueLen               = 256
	DefaultMaxHandshakes          = 256
	DefaultMaxHandshakesPerSource = 16
	// NoRateLimit as Options.RateBytesPerSec turns the rate limit off.
	NoRateLimit = -1
)

// Metrics are the server's counters, a snapshot.
type Metrics struct {
	ClientsConnected    int64 // now
	ClientsAccepted     int64 // handshakes that passed the verifier
	HandshakesFailed    int64 // malformed or unauthenticated handshakes
	ClientsRejected     int64 // authenticated, but the verifier said no or failed
	ClientsDropped      int64 // connected clients removed by re-check or Revoke
	PacketsReceived     int64 // SendPacket frames from clients
	BytesReceived       int64
	PacketsForwarded    int64 // queued to a connected destination
	BytesForwarded      int64
	PacketsDroppedQueue int64 // destination's queue was full
	PacketsUnknownDst   int64 // destination not connected
	PacketsToSelf       int64 // a client addressed itself: dropped
	HandshakesBusy      int64 // connections closed because MaxHandshakes (or the source's share) were in progress
	BadFrames           int64 // connections closed for a bad or oversized frame
}

type metrics struct {
	connected, accepted, hsFailed, rejected, dropped,
	pktsIn, bytesIn, pktsFwd, bytesFwd, dropQueue, unknownDst, badFrames,
	toSelf, hsBusy atomic.Int64
}

// Server is a relay. It is an http.Handler for GET /derp.
type Server struct {
	opts Options
	priv key.NodePrivate
	pub  key.NodePublic
	log  *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc

	handshakes chan struct{} // a slot per handshake in progress
	hsMu       sync.Mutex
	hsPer      map[netip.Addr]int // handshakes in progress per source

	mu      sync.Mutex
	clients map[key.NodePublic]*sclient

	// revocations counts Revoke and Recheck calls: a handshake that saw
	// it change while it was being verified asks again, so a key revoked
	// mid-handshake cannot slip in after the revoke looked for it (S15).
	revocations atomic.Uint64

	m metrics
}

// NewServer returns a relay server. It fails without a Verifier.
func NewServer(opts Options) (*Server, error) {
	if opts.Verifier == nil {
		return nil, errors.New("derp: a Verifier is required; a relay without one would be open to anyone (S9)")
	}
	if opts.PrivateKey.IsZero() {
		opts.PrivateKey = key.NewNode()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.RecheckInterval, 30*time.Second)
	def(&opts.KeepAlive, 15*time.Second)
	def(&opts.HandshakeTimeout, 5*time.Second)
	def(&opts.WriteTimeout, 10*time.Second)
	def(&opts.VerifyTimeout, 5*time.Second)
	if opts.QueueLen <= 0 {
		opts.QueueLen = DefaultQueueLen
	}
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = DefaultQueueBytes
	}
	if opts.QueueBytes < frameHeaderLen+MaxFrameSize {
		opts.QueueBytes = frameHeaderLen + MaxFrameSize // one max packet must always fit
	}
	if opts.MaxHandshakes <= 0 {
		opts.MaxHandshakes = DefaultMaxHandshakes
	}
	if opts.MaxHandshakesPerSource <= 0 {
		opts.MaxHandshakesPerSource = DefaultMaxHandshakesPerSource
	}
	switch {
	case opts.RateBytesPerSec == 0:
		opts.RateBytesPerSec = DefaultRateBytesPerSec
	case opts.RateBytesPerSec < 0:
		opts.RateBytesPerSec = 0 // internally: no cap
		opts.Burst = 0
	}
	if opts.Burst <= 0 {
		opts.Burst = opts.RateBytesPerSec
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		opts:    opts,
		priv:    opts.PrivateKey,
		pub:     opts.PrivateKey.Public(),
		log:     opts.Logger,
		ctx:     ctx,
		cancel:  cancel,
		clients: make(map[key.NodePublic]*sclient),

		handshakes: make(chan struct{}, opts.MaxHandshakes),
		hsPer:      make(map[netip.Addr]int),
	}, nil
}

// PublicKey is the key clients seal their handshake to.
func (s *Server) PublicKey() key.NodePublic { return s.pub }

// Metrics returns a snapshot of the counters.
func (s *Server) Metrics() Metrics {
	m := &s.m
	return Metrics{
		ClientsConnected: m.connected.Load(), ClientsAccepted: m.accepted.Load(),
		HandshakesFailed: m.hsFailed.Load(), ClientsRejected: m.rejected.Load(),
		ClientsDropped: m.dropped.Load(), PacketsReceived: m.pktsIn.Load(),
		BytesReceived: m.bytesIn.Load(), PacketsForwarded: m.pktsFwd.Load(),
		BytesForwarded: m.bytesFwd.Load(), PacketsDroppedQueue: m.dropQueue.Load(),
		PacketsUnknownDst: m.unknownDst.Load(), BadFrames: m.badFrames.Load(),
		PacketsToSelf: m.toSelf.Load(), HandshakesBusy: m.hsBusy.Load(),
	}
}

// Close disconnects every client; the server accepts none afterwards.
func (s *Server) Close() error {
	s.cancel()
	s.mu.Lock()
	cs := make([]*sclient, 0, len(s.clients))
	for _, c := range s.clients {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, c := range cs {
		c.close("relay shutting down")
	}
	return nil
}

// Revoke drops k's connection at once (S15) and forgets any cached
// verdict, so a reconnect asks the verifier again.
func (s *Server) Revoke(k key.NodePublic) {
	s.revocations.Add(1)
	if f, ok := s.opts.Verifier.(forgetter); ok {
		f.Forget(k)
	}
	s.mu.Lock()
	c := s.clients[k]
	s.mu.Unlock()
	if c != nil {
		s.m.dropped.Add(1)
		s.log.Info("relay client revoked", "node", k.ShortString())
		c.close("node key revoked")
	}
}

// Recheck asks the verifier about every connected client now and drops
// those it refuses or cannot answer for; coord calls it after a change.
func (s *Server) Recheck(ctx context.Context) {
	s.revocations.Add(1)
	s.mu.Lock()
	cs := make([]*sclient, 0, len(s.clients))
	for _, c := range s.clients {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() { c.recheck(ctx) })
	}
	wg.Wait()
}

// ServeHTTP upgrades GET /derp to the relay protocol.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "lanmesh relay: use GET with Upgrade: "+UpgradeProtocol, http.StatusMethodNotAllowed)
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), UpgradeProtocol) || !headerHasToken(r.Header, "Connection", "upgrade") {
		http.Error(w, "lanmesh relay: this endpoint speaks only the lanmesh relay protocol (Upgrade: "+UpgradeProtocol+")", http.StatusUpgradeRequired)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "lanmesh relay: connection cannot be upgraded (HTTP/2?); serve the relay over HTTP/1.1", http.StatusInternalServerError)
		return
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		s.log.Warn("relay: hijack failed", "err", err)
		return
	}
	if _, err := brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + UpgradeProtocol + "\r\nConnection: Upgrade\r\n\r\n"); err != nil {
		conn.Close()
		return
	}
	if err := brw.Flush(); err != nil {
		conn.Close()
		return
	}
	s.ServeConn(conn, brw.Reader)
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) { //lint:notsecret an HTTP header list token (Upgrade, Connection), public
				return true
			}
		}
	}
	return false
}

// ServeConn runs the relay protocol on an already upgraded connection
// until it ends. br may hold bytes already read from conn; nil is fine.
// It closes conn.
func (s *Server) ServeConn(conn net.Conn, br *bufio.Reader) {
	if br == nil {
		br = bufio.NewReader(conn)
	}
	// Handshakes are what an anonymous client can start: cap them (S18).
	src := connlimit.Source(conn.RemoteAddr().String())
	if !s.startHandshake(src) {
		s.m.hsBusy.Add(1)
		conn.Close()
		return
	}
	c, err := s.handshake(conn, br)
	s.endHandshake(src)
	if err != nil {
		conn.Close()
		return
	}
	defer c.close("")
	go c.writeLoop()
	go c.recheckLoop()
	err = c.readLoop()
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), c.ctx.Err() != nil:
		c.log.Debug("relay client left", "err", err)
	default:
		c.log.Info("relay client dropped", "err", err)
	}
}

// startHandshake takes a handshake slot for src, or reports false when
// every slot, or src's share, is taken.
func (s *Server) startHandshake(src netip.Addr) bool {
	s.hsMu.Lock()
	defer s.hsMu.Unlock()
	if s.hsPer[src] >= s.opts.MaxHandshakesPerSource {
		return false
	}
	select {
	case s.handshakes <- struct{}{}:
	default:
		return false
	}
	s.hsPer[src]++
	return true
}

func (s *Server) endHandshake(src netip.Addr) {
	s.hsMu.Lock()
	defer s.hsMu.Unlock()
	if s.hsPer[src]--; s.hsPer[src] <= 0 {
		delete(s.hsPer, src)
	}
	<-s.handshakes
}

func (s *Server) handshake(conn net.Conn, br *bufio.Reader) (*sclient, error) {
	if s.ctx.Err() != nil {
		return nil, errors.New("server closed")
	}
	conn.SetDeadline(time.Now().Add(s.opts.HandshakeTimeout))
	var challenge [challengeLen]byte
	if _, err := rand.Read(challenge[:]); err != nil {
		return nil, err
	}
	if err := WriteFrame(conn, FrameServerKey, encodeServerKey(s.pub, challenge)); err != nil {
		return nil, err
	}
	fail := func(counter *atomic.Int64, msg string, err error) error {
		counter.Add(1)
		WriteFrame(conn, FrameError, textPayload(msg))
		s.log.Info("relay handshake refused", "remote", conn.RemoteAddr().String(), "reason", msg, "err", err)
		return fmt.Errorf("%s: %w", msg, err)
	}
	// Unauthenticated input: read no more than a ClientInfo can be.
	t, p, err := readFrameMax(br, maxClientInfoLen)
	if err != nil {
		return nil, fail(&s.m.hsFailed, "handshake: cannot read ClientInfo", err)
	}
	if t != FrameClientInfo {
		return nil, fail(&s.m.hsFailed, "handshake: expected ClientInfo", fmt.Errorf("got %s", t))
	}
	pub, _, err := openClientInfo(p, s.priv, challenge)
	if err != nil {
		return nil, fail(&s.m.hsFailed, "handshake: bad ClientInfo", err)
	}
	log := s.log.With("node", pub.ShortString(), "remote", conn.RemoteAddr().String())
	gen := s.revocations.Load()
	vctx, cancel := context.WithTimeout(s.ctx, s.opts.VerifyTimeout)
	ok, err := s.opts.Verifier.Allowed(vctx, pub)
	cancel()
	if err != nil {
		// Fail closed (S9): no answer is no.
		return nil, fail(&s.m.rejected, "node key not verified (relay cannot reach its verifier); retry later", err)
	}
	if !ok {
		return nil, fail(&s.m.rejected, "node key not allowed on this relay", errors.New("verifier said no"))
	}

	c := &sclient{
		s:       s,
		key:     pub,
		conn:    conn,
		br:      br,
		log:     log,
		packets: make(chan []byte, s.opts.QueueLen),
		control: make(chan []byte, 16),
		peers:   make(map[key.NodePublic]struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(s.ctx)
	c.queueMax = int64(s.opts.QueueBytes)
	if s.opts.RateBytesPerSec > 0 {
		c.bucket = newTokenBucket(s.opts.RateBytesPerSec, s.opts.Burst, time.Now())
	}

	// Register before ServerInfo: once the client hears it is in, peers
	// must be able to reach it. Packets queue until writeLoop starts.
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		return nil, errors.New("server closed")
	}
	old := s.clients[pub]
	s.clients[pub] = c
	s.mu.Unlock()
	if old != nil {
		old.close("replaced by a newer connection with the same node key")
	}
	s.m.accepted.Add(1)
	s.m.connected.Add(1)
	if s.revocations.Load() != gen {
		vctx, cancel := context.WithTimeout(s.ctx, s.opts.VerifyTimeout)
		ok, err := s.opts.Verifier.Allowed(vctx, pub)
		cancel()
		if err != nil || !ok {
			c.close("")
			return nil, fail(&s.m.rejected, "node key not allowed on this relay", errors.New("revoked during the handshake"))
		}
	}
	info, _ := json.Marshal(ServerInfo{Version: ProtocolVersion, RateBytesPerSec: s.opts.RateBytesPerSec, Burst: s.opts.Burst})
	if err := WriteFrame(conn, FrameServerInfo, info); err != nil {
		c.close("")
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	log.Debug("relay client connected")
	return c, nil
}

func (s *Server) lookup(k key.NodePublic) *sclient {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clients[k]
}
