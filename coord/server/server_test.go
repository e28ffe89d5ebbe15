package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/coord/store"
	"github.com/lanmesh/lanmesh/internal/controlclient"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/tlscert"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// syncBuf is a log sink the test can grep (S11).
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuf) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

type testCoord struct {
	t      *testing.T
	dir    string
	addr   string
	url    string
	fp     string
	admin  *adminapi.Client
	logs   *syncBuf
	offset atomic.Int64 // added to the server's clock
	stop   func()
}

// startCoord runs a real coord (SQLite, TLS, admin socket) in-process on
// 127.0.0.1. addr "" picks a port.
func startCoord(t *testing.T, dir, addr string, logs *syncBuf) *testCoord {
	t.Helper()
	tc, _ := startCoordWith(t, dir, addr, logs, nil)
	return tc
}

// startCoordWith is startCoord with beforeServe run on the server and its
// listener before it serves (e.g. to turn the relay on).
func startCoordWith(t *testing.T, dir, addr string, logs *syncBuf, beforeServe func(*Server, net.Listener)) (*testCoord, *Server) {
	t.Helper()
	return startCoordLimits(t, dir, addr, logs, Limits{}, beforeServe)
}

// startCoordLimits is startCoordWith with the server's limits.
func startCoordLimits(t *testing.T, dir, addr string, logs *syncBuf, lim Limits, beforeServe func(*Server, net.Listener)) (*testCoord, *Server) {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	tc := &testCoord{t: t, dir: dir, logs: logs}
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "coord.db"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tlscert.LoadOrCreate(dir, "lanmesh-coord", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New(ctx, Config{Store: st, Cert: cert, Logger: log, KeepAlive: 200 * time.Millisecond, DerpToken: testDerpToken, Limits: lim,
		Now: func() time.Time { return time.Now().Add(time.Duration(tc.offset.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if beforeServe != nil {
		beforeServe(srv, ln)
	}
	aln, err := ListenAdmin(filepath.Join(dir, "admin.sock"))
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln, aln) }()
	tc.addr = ln.Addr().String()
	tc.url = "https://" + tc.addr
	tc.fp = srv.Fingerprint()
	tc.admin = adminapi.NewClient(filepath.Join(dir, "admin.sock"))
	var once sync.Once
	tc.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
			st.Close()
		})
	}
	t.Cleanup(tc.stop)
	return tc, srv
}

func (tc *testCoord) newKey(reusable bool, tags ...string) wire.AuthKey {
	tc.t.Helper()
	var k adminapi.Key
	if err := tc.admin.Do(context.Background(), "POST", adminapi.PathKeys,
		adminapi.CreateKeyRequest{Reusable: reusable, Tags: tags, Expiry: "1h"}, &k); err != nil {
		tc.t.Fatal(err)
	}
	ak, err := wire.ParseAuthKey(k.Key)
	if err != nil {
		tc.t.Fatal(err)
	}
	if ak.Fingerprint != tc.fp {
		tc.t.Fatalf("key carries fingerprint %q, want %q", ak.Fingerprint, tc.fp)
	}
	return ak
}

type testNode struct {
	t    *testing.T
	c    *controlclient.Client
	mk   key.MachinePrivate
	nk   key.NodePublic
	self wire.Node
}

func (tc *testCoord) client(mk key.MachinePrivate) *controlclient.Client {
	tc.t.Helper()
	c, err := controlclient.New(controlclient.Options{ServerURL: tc.url, Fingerprint: tc.fp, MachineKey: mk})
	if err != nil {
		tc.t.Fatal(err)
	}
	tc.t.Cleanup(c.Close)
	return c
}

func (tc *testCoord) join(host string, ak wire.AuthKey) *testNode {
	tc.t.Helper()
	n := &testNode{t: tc.t, mk: key.NewMachine(), nk: key.NewNode().Public()}
	n.c = tc.client(n.mk)
	rr, err := n.c.Register(context.Background(), wire.RegisterRequest{AuthKey: ak.WithoutFingerprint(), NodeKey: n.nk, Hostname: host})
	if err != nil {
		tc.t.Fatalf("register %s: %v", host, err)
	}
	n.self = rr.Node
	return n
}

// mapStream runs Map in the background; messages arrive on the channel,
// which is closed when Map returns (its error in *errp).
type mapStream struct {
	msgs   chan *wire.MapMessage
	err    error
	done   chan struct{}
	cancel func()
}

func (n *testNode) openMap(req wire.MapRequest) *mapStream {
	req.NodeKey = n.nk
	ctx, cancel := context.WithCancel(context.Background())
	ms := &mapStream{msgs: make(chan *wire.MapMessage, 100), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(ms.done)
		ms.err = n.c.Map(ctx, req, func(m *wire.MapMessage) error {
			ms.msgs <- m
			return nil
		})
	}()
	n.t.Cleanup(func() { cancel(); <-ms.done })
	return ms
}

// expiredOut asserts that n, whose key just expired (or stopped being
// exempt), is out: its open stream ms closes and its next map request is
// refused as node_expired.
func (n *testNode) expiredOut(t *testing.T, ms *mapStream, when string) {
	t.Helper()
	select {
	case <-ms.done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: the node's stream is still open", when)
	}
	err := n.c.Map(context.Background(), wire.MapRequest{NodeKey: n.nk}, func(*wire.MapMessage) error { return nil })
	var se *controlclient.StatusError
	if !errors.As(err, &se) || se.Reason != wire.ReasonNodeExpired {
		t.Fatalf("%s: map request: %v, want reason %s", when, err, wire.ReasonNodeExpired)
	}
}

// waitFor returns the first non-keep-alive message for which ok is true.
func (ms *mapStream) waitFor(t *testing.T, what string, ok func(*wire.MapMessage) bool) *wire.MapMessage {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case m := <-ms.msgs:
			if !m.KeepAlive && ok(m) {
				return m
			}
		case <-ms.done:
			t.Fatalf("waiting for %s: stream ended: %v", what, ms.err)
		case <-timeout:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func peerIn(list []wire.Node, id wire.NodeID, ok func(wire.Node) bool) bool {
	for _, n := range list {
		if n.ID == id && ok(n) {
			return true
		}
	}
	return false
}

func TestNetmapLifecycle(t *testing.T) {
	logs := &syncBuf{}
	tc := startCoord(t, t.TempDir(), "", logs)
	ak := tc.newKey(true)

	a := tc.join("Router A", ak)
	if a.self.Name != "router-a" || a.self.Addresses[0] != netip.MustParsePrefix("100.64.0.1/32") || a.self.Addresses[1].Bits() != 128 {
		t.Fatalf("node a: %+v", a.self)
	}
	as := a.openMap(wire.MapRequest{Endpoints: []netip.AddrPort{netip.MustParseAddrPort("198.18.1.2:41641")}})
	full := as.waitFor(t, "full map", func(m *wire.MapMessage) bool { return m.Full })
	if full.Self == nil || full.Self.ID != a.self.ID || len(full.Peers) != 0 || full.Domain != "mesh.internal" {
		t.Fatalf("full map: %+v", full)
	}

	// Keep-alives flow while nothing changes.
	select {
	case m := <-as.msgs:
		if !m.KeepAlive {
			t.Fatalf("want keep-alive, got %+v", m)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no keep-alive")
	}

	b := tc.join("router-a", ak) // same hostname: uniquified
	if b.self.Name != "router-a-1" || b.self.Addresses[0] != netip.MustParsePrefix("100.64.0.2/32") {
		t.Fatalf("node b: %+v", b.self)
	}
	bs := b.openMap(wire.MapRequest{AdvertiseRoutes: []netip.Prefix{netip.MustParsePrefix("198.19.2.0/24")}})
	bfull := bs.waitFor(t, "b full map", func(m *wire.MapMessage) bool { return m.Full })
	if !peerIn(bfull.Peers, a.self.ID, func(n wire.Node) bool { return n.Online && len(n.Endpoints) == 1 }) {
		t.Fatalf("b's full map lacks a online with its endpoint: %+v", bfull.Peers)
	}
	as.waitFor(t, "delta: b joined and online", func(m *wire.MapMessage) bool {
		return !m.Full && peerIn(m.PeersChanged, b.self.ID, func(n wire.Node) bool { return n.Online })
	})

	// Endpoint change: b reconnects with a new endpoint.
	bs.cancel()
	<-bs.done
	ep := netip.MustParseAddrPort("198.18.2.2:5555")
	bs = b.openMap(wire.MapRequest{Endpoints: []netip.AddrPort{ep}, AdvertiseRoutes: []netip.Prefix{netip.MustParsePrefix("198.19.2.0/24")}, HomeRegion: 7})
	as.waitFor(t, "delta: b's new endpoint and relay region", func(m *wire.MapMessage) bool {
		return peerIn(m.PeersChanged, b.self.ID, func(n wire.Node) bool {
			return len(n.Endpoints) == 1 && n.Endpoints[0] == ep && n.Online && n.HomeRegion == 7
		})
	})

	// Route approval reaches peers; an unadvertised route is refused.
	ctx := context.Background()
	if err := tc.admin.Do(ctx, "POST", adminapi.PathRoutesApprove, adminapi.ApproveRequest{Node: "router-a-1", Routes: []string{"198.19.3.0/24"}}, nil); err == nil {
		t.Fatal("unadvertised route approved")
	}
	if err := tc.admin.Do(ctx, "POST", adminapi.PathRoutesApprove, adminapi.ApproveRequest{Node: "router-a-1", Routes: []string{"198.19.2.0/24"}}, nil); err != nil {
		t.Fatal(err)
	}
	as.waitFor(t, "delta: b's approved route", func(m *wire.MapMessage) bool {
		return peerIn(m.PeersChanged, b.self.ID, func(n wire.Node) bool { return len(n.Routes) == 1 })
	})
	bs.waitFor(t, "b sees its own approved route", func(m *wire.MapMessage) bool { return m.Self != nil && len(m.Self.Routes) == 1 })

	// Delete b: a gets PeersRemoved fast, b's stream is closed (S15).
	start := time.Now()
	if err := tc.admin.Do(ctx, "DELETE", adminapi.NodePath("router-a-1"), nil, nil); err != nil {
		t.Fatal(err)
	}
	as.waitFor(t, "removal of b", func(m *wire.MapMessage) bool {
		return len(m.PeersRemoved) == 1 && m.PeersRemoved[0] == b.self.ID
	})
	lat := time.Since(start)
	t.Logf("delete -> PeersRemoved latency: %v", lat)
	if lat > 500*time.Millisecond {
		t.Errorf("removal took %v, want well under 1s", lat)
	}
	select {
	case <-bs.done:
	case <-time.After(2 * time.Second):
		t.Fatal("deleted node's stream still open")
	}
	var se *controlclient.StatusError
	if _, err := b.c.Register(ctx, wire.RegisterRequest{NodeKey: b.nk}); !errors.As(err, &se) || se.Code != 401 {
		t.Fatalf("deleted node re-registering without key: %v", err)
	}
	// Its next map request is refused for good: the agent stops retrying
	// and reports NeedsLogin (agent/daemon/refused.go).
	if err := b.c.Map(ctx, wire.MapRequest{NodeKey: b.nk}, func(*wire.MapMessage) error { return nil }); !errors.As(err, &se) || se.Code != 401 || se.Reason != wire.ReasonNotRegistered {
		t.Fatalf("deleted node's map request: %v, want 401 reason %s", err, wire.ReasonNotRegistered)
	}

	// S11: the auth key secret never reaches the log.
	if strings.Contains(logs.String(), ak.Secret) {
		t.Fatal("auth key secret in coord log")
	}
}

// S7: ten concurrent registrations with one single-use key, exactly one
// succeeds, the rest are told the key was used.
func TestSingleUseKeyRace(t *testing.T) {
	tc := startCoord(t, t.TempDir(), "", &syncBuf{})
	ak := tc.newKey(false)
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		c := tc.client(key.NewMachine())
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.Register(context.Background(), wire.RegisterRequest{AuthKey: ak.String(), NodeKey: key.NewNode().Public(), Hostname: fmt.Sprint("n", i)})
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		var se *controlclient.StatusError
		switch {
		case err == nil:
			ok++
		case errors.As(err, &se) && se.Code == 401 && se.Message == "auth key already used":
		default:
			t.Errorf("unexpected: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d of 10 registrations succeeded with a single-use key", ok)
	}
}

func TestAuthKeyErrors(t *testing.T) {
	tc := startCoord(t, t.TempDir(), "", &syncBuf{})
	ak := tc.newKey(true)
	c := tc.client(key.NewMachine())
	reg := func(k string) error {
		_, err := c.Register(context.Background(), wire.RegisterRequest{AuthKey: k, NodeKey: key.NewNode().Public(), Hostname: "x"})
		return err
	}
	wrong := ak
	wrong.Secret = strings.Repeat("x", len(ak.Secret))
	unknown := ak
	unknown.ID = "ffffffff"
	for _, tt := range []struct {
		name, key, want string
		code            int
	}{
		{"unknown id", unknown.String(), "auth key not found", 401},
		{"wrong secret", wrong.String(), "auth key not found", 401}, // S8: same answer, hash compared with key.Equal
		{"malformed", "lmk1.x", "auth key:", 400},
		{"none, unknown machine", "", "auth key is required", 401},
	} {
		err := reg(tt.key)
		var se *controlclient.StatusError
		if !errors.As(err, &se) || se.Code != tt.code || !strings.Contains(se.Message, tt.want) {
			t.Errorf("%s: got %v, want %d %q", tt.name, err, tt.code, tt.want)
		}
	}
	// Two hours later the 1h key has expired.
	tc.offset.Store(int64(2 * time.Hour))
	err := reg(ak.String())
	var se *controlclient.StatusError
	if !errors.As(err, &se) || se.Code != 401 || !strings.HasPrefix(se.Message, "auth key expired at ") {
		t.Fatalf("expired key: %v", err)
	}
}

// Garbage, oversized, truncated and replayed requests get clear 4xx
// answers and coord keeps serving.
func TestMalformedInput(t *testing.T) {
	tc := startCoord(t, t.TempDir(), "", &syncBuf{})
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 10 * time.Second}
	post := func(body []byte) (int, string) {
		resp, err := hc.Post(tc.url+wire.PathRegister, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var we wire.Error
		if err := json.Unmarshal(b, &we); err != nil || we.Error == "" {
			t.Fatalf("answer %d is not a wire.Error: %q", resp.StatusCode, b)
		}
		return resp.StatusCode, we.Error
	}
	nonce := func() string {
		resp, err := hc.Get(tc.url + wire.PathChallenge)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ch wire.Challenge
		json.NewDecoder(resp.Body).Decode(&ch)
		return ch.Nonce
	}
	mk := key.NewMachine()
	sign := func(n string, body []byte, version int) []byte {
		env := wire.Envelope{Version: version, Machine: mk.Public(), Nonce: n, Body: body, Sig: mk.Sign(wire.SignedBytes(wire.PathRegister, n, body))}
		b, _ := json.Marshal(env)
		return b
	}
	body, _ := json.Marshal(wire.RegisterRequest{NodeKey: key.NewNode().Public(), Hostname: "x"})
	n1 := nonce()
	good := sign(n1, body, wire.ProtocolVersion)
	tampered := bytes.Replace(sign(nonce(), body, wire.ProtocolVersion), []byte(`"version":1`), []byte(`"version":1 `), 1)
	badSig := sign(nonce(), body, wire.ProtocolVersion)
	var env wire.Envelope
	json.Unmarshal(badSig, &env)
	env.Sig[0] ^= 1
	badSig, _ = json.Marshal(env)
	for _, tt := range []struct {
		name string
		body []byte
		code int
		want string
	}{
		{"garbage", []byte("\x00\xffnot json"), 400, "malformed envelope"},
		{"oversized", bytes.Repeat([]byte("a"), wire.MaxRequestBytes+1), 413, "larger than"},
		{"truncated", good[:len(good)/2], 400, "malformed envelope"},
		{"trailing", append(append([]byte{}, good...), "{}"...), 400, "trailing data"},
		{"wrong version", sign(nonce(), body, 99), 400, "protocol version 99 not supported"},
		{"unknown nonce", sign("made-up", body, wire.ProtocolVersion), 401, "nonce"},
		{"bad signature", badSig, 401, "bad signature"},
		{"bad body", sign(nonce(), []byte(`{"node_key":"zz"}`), wire.ProtocolVersion), 400, "node public key"},
		{"good envelope, unknown machine", good, 401, "auth key is required"},
		// good's machine is unknown and its registration failed, so its
		// nonce was not recorded: the replay fails the same way.
		{"replayed unregistered", good, 401, "auth key is required"},
		{"extra whitespace is still valid", tampered, 401, "auth key is required"},
	} {
		code, msg := post(tt.body)
		if code != tt.code || !strings.Contains(msg, tt.want) {
			t.Errorf("%s: got %d %q, want %d %q", tt.name, code, msg, tt.code, tt.want)
		}
	}
	// Still serving: health and a real registration.
	resp, err := hc.Get(tc.url + wire.PathHealth)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("health: %v %v", resp, err)
	}
	resp.Body.Close()
	tc.join("after-garbage", tc.newKey(false))
}

// A registered node survives a coord restart: same node, same addresses,
// no auth key needed.
func TestReconnectAfterRestart(t *testing.T) {
	dir := t.TempDir()
	tc := startCoord(t, dir, "", &syncBuf{})
	a := tc.join("a", tc.newKey(false))
	ms := a.openMap(wire.MapRequest{})
	ms.waitFor(t, "full map", func(m *wire.MapMessage) bool { return m.Full })
	tc.stop()
	select {
	case <-ms.done:
	case <-time.After(5 * time.Second):
		t.Fatal("stream survived server shutdown")
	}

	tc2 := startCoord(t, dir, tc.addr, &syncBuf{})
	if tc2.fp != tc.fp {
		t.Fatal("certificate changed across restart")
	}
	rr, err := a.c.Register(context.Background(), wire.RegisterRequest{NodeKey: a.nk, Hostname: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if rr.Node.ID != a.self.ID || rr.Node.Addresses[0] != a.self.Addresses[0] || rr.Node.Addresses[1] != a.self.Addresses[1] {
		t.Fatalf("after restart: %+v, before: %+v", rr.Node, a.self)
	}
	ms = a.openMap(wire.MapRequest{})
	full := ms.waitFor(t, "full map after restart", func(m *wire.MapMessage) bool { return m.Full })
	if full.Self.ID != a.self.ID {
		t.Fatalf("self after restart: %+v", full.Self)
	}
}

// S12: an untagged node whose key expired drops out of peers' netmaps and
// cannot open a stream; a tagged node never expires.
func TestNodeKeyExpiry(t *testing.T) {
	tc := startCoord(t, t.TempDir(), "", &syncBuf{})
	tagged := tc.join("tagged", tc.newKey(false, "tag:router"))
	user := tc.join("user", tc.newKey(false))
	if !tagged.self.KeyExpiry.IsZero() || user.self.KeyExpiry.IsZero() {
		t.Fatalf("expiry: tagged %v, untagged %v", tagged.self.KeyExpiry, user.self.KeyExpiry)
	}
	tc.offset.Store(int64(DefaultKeyLifetime + time.Hour))
	ms := tagged.openMap(wire.MapRequest{})
	full := ms.waitFor(t, "full map", func(m *wire.MapMessage) bool { return m.Full })
	if len(full.Peers) != 0 {
		t.Fatalf("expired node still in netmap: %+v", full.Peers)
	}
	err := user.c.Map(context.Background(), wire.MapRequest{NodeKey: user.nk}, func(*wire.MapMessage) error { return nil })
	var se *controlclient.StatusError
	if !errors.As(err, &se) || se.Code != 401 || !strings.Contains(se.Message, "node key expired") {
		t.Fatalf("expired node's map: %v", err)
	}
}

// S19: a machine registering with a node key another node holds gets a
// clear 409, and the owner's peers never see a second node with its key.
func TestRegisterTakenNodeKey(t *testing.T) {
	tc := startCoord(t, t.TempDir(), "", &syncBuf{})
	ak := tc.newKey(true)
	owner := tc.join("owner", ak)
	c := tc.client(key.NewMachine())
	_, err := c.Register(context.Background(), wire.RegisterRequest{AuthKey: ak.WithoutFingerprint(), NodeKey: owner.nk, Hostname: "thief"})
	var se *controlclient.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusConflict || !strings.Contains(se.Message, "node key is already used by another node") {
		t.Fatalf("register with a taken node key: %v, want 409", err)
	}
	// A registered machine switching to the owner's key is refused too.
	other := tc.join("other", ak)
	_, err = other.c.Register(context.Background(), wire.RegisterRequest{NodeKey: owner.nk, Hostname: "other"})
	if !errors.As(err, &se) || se.Code != http.StatusConflict {
		t.Fatalf("known machine taking a node key: %v, want 409", err)
	}
	var nodes []adminapi.Node
	if err := tc.admin.Do(context.Background(), "GET", adminapi.PathNodes, nil, &nodes); err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 {
		t.Fatalf("%d nodes, want owner and other", len(nodes))
	}
}
