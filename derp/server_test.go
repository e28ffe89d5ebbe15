package derp

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// allowList is a Verifier double: a real map, so tests change verdicts live.
type allowList struct {
	mu    sync.Mutex
	keys  map[key.NodePublic]bool
	err   error
	calls int
}

func (a *allowList) Allowed(_ context.Context, k key.NodePublic) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	if a.err != nil {
		return false, a.err
	}
	return a.keys[k], nil
}

func (a *allowList) set(k key.NodePublic, ok bool) {
	a.mu.Lock()
	a.keys[k] = ok
	a.mu.Unlock()
}

func (a *allowList) setErr(err error) {
	a.mu.Lock()
	a.err = err
	a.mu.Unlock()
}

type relay struct {
	s   *Server
	url string
	fp  string
	al  *allowList
}

// newRelay runs a real relay over TLS on 127.0.0.1.
func newRelay(t *testing.T, opts Options) *relay {
	t.Helper()
	al := &allowList{keys: map[key.NodePublic]bool{}}
	if opts.Verifier == nil {
		opts.Verifier = al
	}
	s, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(Path, s)
	ts := httptest.NewUnstartedServer(mux)
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // wrong-pin tests make TLS noise
	ts.StartTLS()
	t.Cleanup(func() { s.Close(); ts.Close() })
	return &relay{s: s, url: ts.URL + Path, fp: wire.Fingerprint(ts.Certificate().Raw), al: al}
}

// join makes an allowed node and connects it.
func (r *relay) join(t *testing.T) (*Client, key.NodePublic) {
	t.Helper()
	priv := key.NewNode()
	r.al.set(priv.Public(), true)
	c, err := r.connect(priv)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c, priv.Public()
}

func (r *relay) connect(priv key.NodePrivate) (*Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return Connect(ctx, r.url, priv, r.fp)
}

// recvOne waits for one message with a timeout.
func recvOne(t *testing.T, c *Client, within time.Duration) (Message, error) {
	t.Helper()
	type res struct {
		m   Message
		err error
	}
	ch := make(chan res, 1)
	go func() { m, err := c.RecvMessage(); ch <- res{m, err} }()
	select {
	case r := <-ch:
		return r.m, r.err
	case <-time.After(within):
		t.Fatalf("nothing received within %v", within)
		return Message{}, nil
	}
}

func expectPacket(t *testing.T, c *Client, from key.NodePublic, want []byte) {
	t.Helper()
	for {
		m, err := recvOne(t, c, 5*time.Second)
		if err != nil {
			t.Fatalf("recv: %v", err)
		}
		if m.Kind != MsgPacket {
			continue
		}
		if m.Key != from || !bytes.Equal(m.Data, want) {
			t.Fatalf("got %q from %s, want %q from %s", m.Data, m.Key.ShortString(), want, from.ShortString())
		}
		return
	}
}

// exchange proves a and b still relay both ways.
func exchange(t *testing.T, a *Client, ak key.NodePublic, b *Client, bk key.NodePublic, tag string) {
	t.Helper()
	if err := a.Send(bk, []byte("a->b "+tag)); err != nil {
		t.Fatalf("send a->b: %v", err)
	}
	expectPacket(t, b, ak, []byte("a->b "+tag))
	if err := b.Send(ak, []byte("b->a "+tag)); err != nil {
		t.Fatalf("send b->a: %v", err)
	}
	expectPacket(t, a, bk, []byte("b->a "+tag))
}

func expectClosed(t *testing.T, c *Client, within time.Duration) error {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		_, err := recvOne(t, c, within)
		if err != nil {
			return err
		}
	}
	t.Fatalf("connection still open after %v", within)
	return nil
}

func TestTwoClientsExchange(t *testing.T) {
	r := newRelay(t, Options{})
	a, ak := r.join(t)
	b, bk := r.join(t)
	if a.ServerKey() != r.s.PublicKey() {
		t.Fatal("client saw a different server key")
	}
	for i := range 3 {
		exchange(t, a, ak, b, bk, string(rune('0'+i)))
	}
	big := bytes.Repeat([]byte{0xab}, MaxPacketSize)
	if err := a.Send(bk, big); err != nil {
		t.Fatal(err)
	}
	expectPacket(t, b, ak, big)
	if err := a.Send(bk, make([]byte, MaxPacketSize+1)); err == nil {
		t.Fatal("client sent a packet over the limit")
	}

	// Unknown destination: PeerGone, not silence.
	nobody := key.NewNode().Public()
	if err := a.Send(nobody, []byte("x")); err != nil {
		t.Fatal(err)
	}
	m, err := recvOne(t, a, 5*time.Second)
	if err != nil || m.Kind != MsgPeerGone || m.Key != nobody || m.Reason != PeerGoneNotHere {
		t.Fatalf("got %+v, %v; want PeerGone(NotHere) for the unknown key", m, err)
	}

	// Ping/Pong.
	if err := a.Ping([8]byte{1, 2, 3, 4, 5, 6, 7, 8}); err != nil {
		t.Fatal(err)
	}
	m, err = recvOne(t, a, 5*time.Second)
	if err != nil || m.Kind != MsgPong || !bytes.Equal(m.Data, []byte{1, 2, 3, 4, 5, 6, 7, 8}) {
		t.Fatalf("got %+v, %v; want Pong", m, err)
	}

	// When b leaves, a (which talked to b) hears PeerGone(Disconnected).
	b.Close()
	m, err = recvOne(t, a, 5*time.Second)
	if err != nil || m.Kind != MsgPeerGone || m.Key != bk || m.Reason != PeerGoneDisconnected {
		t.Fatalf("got %+v, %v; want PeerGone(Disconnected) for b", m, err)
	}

	met := r.s.Metrics()
	if met.PacketsForwarded < 7 || met.BytesForwarded < MaxPacketSize || met.PacketsUnknownDst != 1 || met.ClientsAccepted != 2 {
		t.Fatalf("metrics %+v", met)
	}
}

// S9: a client whose key the verifier refuses can neither send nor receive.
func TestRejectedKeyCannotSendOrReceive(t *testing.T) {
	r := newRelay(t, Options{})
	a, ak := r.join(t)
	bad := key.NewNode()
	r.al.set(bad.Public(), false)
	if c, err := r.connect(bad); err == nil {
		c.Close()
		t.Fatal("relay accepted a key the verifier refused")
	} else if !strings.Contains(err.Error(), "not allowed") {
		t.Fatalf("error %q does not say why", err)
	}
	// Nobody can deliver to it either: the relay has no such client.
	if err := a.Send(bad.Public(), []byte("hi")); err != nil {
		t.Fatal(err)
	}
	m, err := recvOne(t, a, 5*time.Second)
	if err != nil || m.Kind != MsgPeerGone || m.Key != bad.Public() {
		t.Fatalf("got %+v, %v; want PeerGone for the refused key", m, err)
	}
	_ = ak
	if got := r.s.Metrics().ClientsRejected; got != 1 {
		t.Fatalf("ClientsRejected = %d, want 1", got)
	}
}

// S9: when the verifier cannot answer, the relay fails closed, both at
// handshake and at re-check.
func TestVerifierErrorFailsClosed(t *testing.T) {
	r := newRelay(t, Options{})
	a, _ := r.join(t)
	r.al.setErr(errors.New("coord unreachable"))
	priv := key.NewNode()
	r.al.set(priv.Public(), true) // even a known key
	if c, err := r.connect(priv); err == nil {
		c.Close()
		t.Fatal("relay accepted a client while its verifier failed")
	}
	r.s.Recheck(context.Background())
	if err := expectClosed(t, a, 2*time.Second); err == nil {
		t.Fatal("no error")
	}
}

// S9/S15: Revoke drops the client at once, and a periodic re-check drops a
// client the verifier stops allowing.
func TestRevokeAndRecheck(t *testing.T) {
	r := newRelay(t, Options{RecheckInterval: 100 * time.Millisecond})
	a, ak := r.join(t)
	b, bk := r.join(t)
	exchange(t, a, ak, b, bk, "before")

	start := time.Now()
	r.s.Revoke(ak)
	err := expectClosed(t, a, time.Second)
	if el := time.Since(start); el > time.Second {
		t.Fatalf("revocation took %v", el)
	}
	if !strings.Contains(err.Error(), "revoked") {
		t.Logf("revoked client saw %v", err) // the reason is best effort
	}
	// b cannot reach a any more.
	b.Send(ak, []byte("still there?"))
	for {
		m, err := recvOne(t, b, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if m.Kind == MsgPacket {
			t.Fatal("packet from a revoked client")
		}
		if m.Kind == MsgPeerGone && m.Key == ak && m.Reason == PeerGoneNotHere {
			break
		}
	}

	// Periodic re-check: coord stops allowing b.
	r.al.set(bk, false)
	expectClosed(t, b, 2*time.Second)
	if got := r.s.Metrics().ClientsDropped; got != 2 {
		t.Fatalf("ClientsDropped = %d, want 2", got)
	}
	if got := r.s.Metrics().ClientsConnected; got != 0 {
		t.Fatalf("ClientsConnected = %d, want 0", got)
	}
}

// A client that cannot prove its key (bad box, replayed challenge) is refused.
func TestUnauthenticatedClientRejected(t *testing.T) {
	r := newRelay(t, Options{})
	victim := key.NewNode()
	r.al.set(victim.Public(), true)
	attacker := key.NewNode()

	cases := map[string]func(spub key.NodePublic, ch [challengeLen]byte) []byte{
		"box sealed with another key": func(spub key.NodePublic, ch [challengeLen]byte) []byte {
			ci, _ := sealClientInfo(attacker, spub, ch, ClientInfo{Version: 1})
			vp := victim.Public()
			copy(ci, vp[:]) // claim the victim's key
			return ci
		},
		"wrong challenge": func(spub key.NodePublic, ch [challengeLen]byte) []byte {
			ch[0] ^= 1
			ci, _ := sealClientInfo(victim, spub, ch, ClientInfo{Version: 1})
			return ci
		},
		"truncated": func(spub key.NodePublic, ch [challengeLen]byte) []byte {
			ci, _ := sealClientInfo(victim, spub, ch, ClientInfo{Version: 1})
			return ci[:40]
		},
		"garbage": func(key.NodePublic, [challengeLen]byte) []byte { return bytes.Repeat([]byte{7}, 200) },
	}
	for name, mk := range cases {
		t.Run(name, func(t *testing.T) {
			err := rawHandshake(t, r, mk)
			if err == nil || !strings.Contains(err.Error(), "relay refused") {
				t.Fatalf("got %v, want a refusal", err)
			}
		})
	}
	if got := r.s.Metrics().HandshakesFailed; got != int64(len(cases)) {
		t.Fatalf("HandshakesFailed = %d, want %d", got, len(cases))
	}
}

// rawHandshake upgrades a connection like Connect, then answers the
// challenge with whatever mk makes.
func rawHandshake(t *testing.T, r *relay, mk func(key.NodePublic, [challengeLen]byte) []byte) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, br, err := dialUpgrade(ctx, r.url, ClientOptions{Fingerprint: r.fp})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	typ, p, err := ReadFrame(br, nil)
	if err != nil || typ != FrameServerKey {
		t.Fatalf("ServerKey: %v %v", typ, err)
	}
	spub, ch, err := parseServerKey(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFrame(conn, FrameClientInfo, mk(spub, ch)); err != nil {
		t.Fatal(err)
	}
	typ, p, err = ReadFrame(br, nil)
	if err != nil {
		return err
	}
	if typ == FrameError {
		return errors.New("relay refused: " + string(p))
	}
	return nil
}

// Oversized and garbage frames close only the offending connection.
func TestBadFramesCloseOnlyThatClient(t *testing.T) {
	r := newRelay(t, Options{})
	a, ak := r.join(t)
	b, bk := r.join(t)

	hdr := func(typ byte, n uint32) []byte {
		return binary.BigEndian.AppendUint32([]byte{typ}, n)
	}
	bad := map[string][]byte{
		"oversized":        hdr(byte(FrameSendPacket), 1<<30),
		"just over limit":  append(hdr(byte(FrameSendPacket), MaxFrameSize+1), make([]byte, MaxFrameSize+1)...),
		"unknown type":     append(hdr(0xee, 3), 1, 2, 3),
		"short SendPacket": append(hdr(byte(FrameSendPacket), 5), 1, 2, 3, 4, 5),
		"server frame":     hdr(byte(FrameServerKey), 0),
		"bad ping":         append(hdr(byte(FramePing), 3), 1, 2, 3),
	}
	for name, raw := range bad {
		t.Run(name, func(t *testing.T) {
			m, _ := r.join(t)
			m.wmu.Lock()
			m.conn.Write(raw)
			m.wmu.Unlock()
			expectClosed(t, m, 5*time.Second)
			exchange(t, a, ak, b, bk, name)
		})
	}
	if got := r.s.Metrics().BadFrames; got != int64(len(bad)) {
		t.Fatalf("BadFrames = %d, want %d", got, len(bad))
	}
}

// The token bucket holds a greedy sender to its rate.
func TestRateLimitHolds(t *testing.T) {
	const rate = 400_000
	r := newRelay(t, Options{RateBytesPerSec: rate, Burst: MaxFrameSize})
	a, _ := r.join(t)
	b, _ := r.join(t)
	bk := b.PublicKey()
	if got := a.ServerInfo().RateBytesPerSec; got != rate {
		t.Fatalf("ServerInfo rate = %d", got)
	}
	pkt := make([]byte, 1000)
	go func() {
		for a.Send(bk, pkt) == nil {
		}
	}()
	const window = 1500 * time.Millisecond
	start := time.Now()
	got := 0
	b.conn.SetReadDeadline(start.Add(window))
	for {
		_, p, err := b.Recv()
		if err != nil || time.Since(start) > window {
			break
		}
		got += len(p)
	}
	el := time.Since(start).Seconds()
	limit := float64(MaxFrameSize) + rate*el
	t.Logf("received %d bytes in %.2fs (limit %.0f)", got, el, limit)
	if float64(got) > limit*1.05 {
		t.Fatalf("received %d bytes in %.2fs, over the %d B/s limit", got, el, rate)
	}
	if float64(got) < rate*el*0.5 {
		t.Fatalf("received only %d bytes in %.2fs: limiter too strict", got, el)
	}
}

// A client that does not read loses its own packets (drop-tail) while
// everyone else keeps exchanging promptly.
func TestQueueLimitDropsRatherThanBlocks(t *testing.T) {
	r := newRelay(t, Options{QueueLen: 8, WriteTimeout: time.Minute, RateBytesPerSec: NoRateLimit})
	a, ak := r.join(t)
	b, bk := r.join(t)
	flooder, _ := r.join(t)
	slow, sk := r.join(t) // never reads
	_ = slow

	pkt := make([]byte, 16<<10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 4000 { // 64 MiB: far past every socket buffer on the way
			if flooder.Send(sk, pkt) != nil {
				return
			}
		}
	}()
	for i := range 20 {
		start := time.Now()
		exchange(t, a, ak, b, bk, string(rune('a'+i)))
		if el := time.Since(start); el > time.Second {
			t.Fatalf("exchange %d took %v while the slow client was flooded", i, el)
		}
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("flooder blocked: the relay stopped reading it")
	}
	if m := r.s.Metrics(); m.PacketsDroppedQueue == 0 {
		t.Fatalf("no queue drops: %+v", m)
	}
}

func TestNewServerNeedsVerifier(t *testing.T) {
	if _, err := NewServer(Options{}); err == nil {
		t.Fatal("NewServer without a Verifier succeeded (open relay, S9)")
	}
}

func TestPlainHTTPAndWrongPin(t *testing.T) {
	r := newRelay(t, Options{})
	// A browser-like GET gets 426 and an explanation.
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := cl.Get(r.url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("plain GET: %s", resp.Status)
	}
	// A wrong pin fails before any relay bytes flow.
	priv := key.NewNode()
	r.al.set(priv.Public(), true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c, err := Connect(ctx, r.url, priv, wire.Fingerprint([]byte("other"))); err == nil {
		c.Close()
		t.Fatal("connected despite a wrong certificate pin")
	}
	// No pin and a self-signed cert: the system roots refuse it.
	if c, err := Connect(ctx, r.url, priv, ""); err == nil {
		c.Close()
		t.Fatal("connected to a self-signed relay without a pin")
	}
}
