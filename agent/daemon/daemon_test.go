package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/agent/config"
	"github.com/lanmesh/lanmesh/agent/engine"
	"github.com/lanmesh/lanmesh/agent/localapi"
	"github.com/lanmesh/lanmesh/agent/state"
	"github.com/lanmesh/lanmesh/internal/controlclient"
	"github.com/lanmesh/lanmesh/internal/wire"

	"github.com/lanmesh/lanmesh/internal/testenv"
)

// fakeEngine records the configs the daemon hands it.
type fakeEngine struct {
	mu       sync.Mutex
	configs  []engine.Config
	closed   bool
	failNext error
}

// Reconfig runs the engine's real validation and records what a device
// would get; failNext makes the next call fail after that (as a device or
// firewall error would).
func (e *fakeEngine) Reconfig(c engine.Config) ([]engine.Rejected, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c.PrivateKey.IsZero() {
		return nil, errors.New("engine: config has no private key")
	}
	valid, rej, err := engine.ValidateConfig(c)
	if e.failNext != nil {
		err, e.failNext = e.failNext, nil
		return rej, err
	}
	e.configs = append(e.configs, valid)
	return rej, err
}

func (e *fakeEngine) setFailNext(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.failNext = err
}

func (e *fakeEngine) last() (engine.Config, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.configs) == 0 {
		return engine.Config{}, 0
	}
	return e.configs[len(e.configs)-1], len(e.configs)
}

func (e *fakeEngine) Peers() []engine.PeerStatus {
	c, _ := e.last()
	var out []engine.PeerStatus
	for _, p := range c.Peers {
		out = append(out, engine.PeerStatus{Key: p.Key, Endpoint: p.Endpoints[0], LastHandshake: time.Unix(1700000000, 0)})
	}
	return out
}
func (e *fakeEngine) ListenPort() uint16 { return 41641 }
func (e *fakeEngine) Close() error       { e.closed = true; return nil }

// fakeCoord plays coord: each Map call takes the next session, delivers
// its messages, and ends with its error once the channel closes.
type fakeCoord struct {
	mu        sync.Mutex
	registers []wire.RegisterRequest
	regErr    error
	node      wire.Node
	sessions  chan *session
	mapReqs   chan wire.MapRequest
}

type session struct {
	msgs chan *wire.MapMessage
	err  error
}

func newFakeCoord(n wire.Node) *fakeCoord {
	return &fakeCoord{node: n, sessions: make(chan *session, 10), mapReqs: make(chan wire.MapRequest, 10)}
}

func (f *fakeCoord) setRegErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.regErr = err
}

func (f *fakeCoord) registerCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.registers)
}

func (f *fakeCoord) Register(_ context.Context, r wire.RegisterRequest) (wire.RegisterResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.registers = append(f.registers, r)
	if f.regErr != nil {
		return wire.RegisterResponse{}, f.regErr
	}
	n := f.node
	n.Key = r.NodeKey
	return wire.RegisterResponse{Node: n}, nil
}

func (f *fakeCoord) Map(ctx context.Context, r wire.MapRequest, fn func(*wire.MapMessage) error) error {
	f.mapReqs <- r
	var s *session
	select {
	case s = <-f.sessions:
	case <-ctx.Done():
		return ctx.Err()
	}
	for {
		select {
		case m, ok := <-s.msgs:
			if !ok {
				return s.err
			}
			if err := fn(m); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// open queues a session that starts with a full netmap.
func (f *fakeCoord) open(self wire.Node, peers ...wire.Node) *session {
	s := &session{msgs: make(chan *wire.MapMessage, 10)}
	s.msgs <- &wire.MapMessage{Seq: 1, Full: true, Self: &self, Domain: "mesh.internal", Peers: peers}
	f.sessions <- s
	return s
}

const testSecret = "S3cretS3cretS3cret42"

var testAuthKey = "lmk1.key1.S3cretS3cretS3cret42"

type harness struct {
	d     *Daemon
	eng   *fakeEngine
	coord *fakeCoord
	dir   string
	logs  *syncBuf
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func newHarness(t *testing.T, dir string, coord *fakeCoord) *harness {
	t.Helper()
	return newHarnessWith(t, dir, coord, nil)
}

// newHarnessWith lets a test change the config and options (and the
// engine, through o.NewEngine) before the daemon starts.
func newHarnessWith(t *testing.T, dir string, coord *fakeCoord, tweak func(*config.Config, *Options)) *harness {
	t.Helper()
	cfg := config.Defaults()
	cfg.StateDir = dir
	cfg.MemoryLimitMiB = 0
	cfg.DNS.Listen = "127.0.0.1:0"
	cfg.DNS.Upstreams = "127.0.0.1:1"
	h := &harness{eng: &fakeEngine{}, coord: coord, dir: dir, logs: &syncBuf{}}
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o := Options{
		Config: &cfg, Logger: log,
		NewEngine:  func(engine.Options, *slog.Logger) (engine.Engine, error) { return h.eng, nil },
		NewControl: func(controlclient.Options) (Control, error) { return coord, nil },
		Endpoints: func(port uint16, _ []netip.Prefix) []netip.AddrPort {
			return []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("198.18.1.2"), port)}
		},
		WatchNetwork: func(ctx context.Context, _ func()) error { <-ctx.Done(); return nil },
	}
	if tweak != nil {
		tweak(&cfg, &o)
	}
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	h.d = d
	d.Start()
	t.Cleanup(func() { d.Close() })
	return h
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestJoinNetmapOutageRestartDown(t *testing.T) {
	dir := t.TempDir()
	self := node(1, "router-a")
	peerB, peerC := node(2, "router-b", "198.19.2.0/24"), node(3, "router-c")
	coord := newFakeCoord(self)
	h := newHarness(t, dir, coord)
	ctx := context.Background()

	if st := h.d.Status(ctx); st.BackendState != localapi.StateNeedsLogin || st.Self != nil {
		t.Fatalf("fresh status = %+v", st)
	}
	if _, err := h.d.Up(ctx, localapi.UpRequest{LoginServer: "https://198.18.0.2"}); err == nil || !strings.Contains(err.Error(), "--auth-key") {
		t.Fatalf("up without auth key on a new node = %v", err)
	}

	// Join: register, then the first full netmap completes `up`.
	yes := true
	routes := pfx("198.19.1.0/24")
	sessCh := make(chan *session, 1)
	go func() {
		r := <-coord.mapReqs
		if len(r.Endpoints) != 1 || r.AdvertiseRoutes[0] != routes[0] {
			t.Errorf("MapRequest = %+v", r)
		}
		sessCh <- coord.open(self, peerB)
	}()
	resp, err := h.d.Up(ctx, localapi.UpRequest{LoginServer: "https://198.18.0.2", AuthKey: testAuthKey,
		AdvertiseRoutes: &routes, AcceptRoutes: &yes, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Name != "router-a" || len(resp.Addresses) != 2 {
		t.Fatalf("Up = %+v", resp)
	}
	if len(coord.registers) != 1 || coord.registers[0].AuthKey != testAuthKey {
		t.Fatalf("registers = %+v", coord.registers)
	}
	cfg, _ := h.eng.last()
	if len(cfg.Peers) != 1 || cfg.Peers[0].Key != peerB.Key || !slices_contains(cfg.Routes, "198.19.2.0/24") {
		t.Fatalf("engine config after join = %+v", cfg)
	}
	st := h.d.Status(ctx)
	if st.BackendState != localapi.StateRunning || !st.Coord.Connected || st.Self.Name != "router-a" ||
		len(st.Peers) != 1 || st.Peers[0].Path != "direct" || st.Peers[0].Endpoint != "198.18.2.2:41641" {
		t.Fatalf("status after join = %+v", st)
	}

	// Deltas reach the engine.
	sess := <-sessCh
	sess.msgs <- &wire.MapMessage{Seq: 2, PeersChanged: []wire.Node{peerC}}
	waitFor(t, "peer added", func() bool { c, _ := h.eng.last(); return len(c.Peers) == 2 })
	sess.msgs <- &wire.MapMessage{Seq: 3, PeersRemoved: []wire.NodeID{peerB.ID}}
	waitFor(t, "peer removed", func() bool { c, _ := h.eng.last(); return len(c.Peers) == 1 && c.Peers[0].Key == peerC.Key })
	sess.msgs <- &wire.MapMessage{Seq: 4, KeepAlive: true}

	// Coord goes away: status says so, the engine keeps its last config.
	_, nBefore := h.eng.last()
	sess.err = fmtErr()
	close(sess.msgs)
	<-coord.mapReqs // the retry after backoff (~1s)
	st = h.d.Status(ctx)
	if st.Coord.Connected || !strings.Contains(st.Coord.LastError, "connection refused") || st.Coord.NextRetry == "" {
		t.Fatalf("coord status during outage = %+v", st.Coord)
	}
	if st.BackendState != localapi.StateRunning || len(st.Peers) != 1 {
		t.Fatalf("status during outage = %+v", st)
	}
	if cfg, n := h.eng.last(); n != nBefore || len(cfg.Peers) != 1 {
		t.Fatalf("engine was reconfigured during the outage: %d configs, %+v", n, cfg)
	}
	// Coord comes back with a full map.
	coord.open(self, peerC)
	waitFor(t, "reconnect", func() bool { return h.d.Status(ctx).Coord.Connected })

	// Restart: same keys and addresses, no new registration.
	nodeKey := h.eng.configs[0].PrivateKey
	h.d.Close()
	coord.open(self, peerC)
	h2 := newHarness(t, dir, coord)
	<-coord.mapReqs
	waitFor(t, "netmap after restart", func() bool { c, _ := h2.eng.last(); return len(c.Peers) == 1 })
	if cfg, _ := h2.eng.last(); cfg.PrivateKey != nodeKey {
		t.Fatal("restart changed the node key")
	}
	if len(coord.registers) != 1 {
		t.Fatalf("restart registered again: %d", len(coord.registers))
	}
	if st := h2.d.Status(ctx); st.Self == nil || st.Self.ID != 1 || len(st.Self.Addresses) != 2 || len(st.Self.AdvertisedRoutes) != 1 {
		t.Fatalf("status after restart = %+v", st.Self)
	}

	// Down: no peers, state remembers, `up` without a key reconnects.
	if err := h2.d.Down(ctx); err != nil {
		t.Fatal(err)
	}
	if cfg, _ := h2.eng.last(); len(cfg.Peers) != 0 || cfg.PrivateKey != nodeKey {
		t.Fatalf("config after down = %+v", cfg)
	}
	if st := h2.d.Status(ctx); st.BackendState != localapi.StateStopped {
		t.Fatalf("state after down = %s", st.BackendState)
	}
	if s, err := state.Load(dir); err != nil || s.Prefs.WantRunning {
		t.Fatalf("state after down = %+v, %v", s, err)
	}
	go func() { <-coord.mapReqs; coord.open(self, peerB) }()
	if _, err := h2.d.Up(ctx, localapi.UpRequest{Timeout: 5 * time.Second}); err != nil {
		t.Fatalf("up after down: %v", err)
	}
	if cfg, _ := h2.eng.last(); len(cfg.Peers) != 1 {
		t.Fatalf("config after up = %+v", cfg)
	}

	// S11: the auth key's secret and the private keys never reach the
	// logs, and the auth key is not stored.
	b, _ := os.ReadFile(state.Path(dir))
	if strings.Contains(string(b), testSecret) {
		t.Fatal("state file holds the auth key")
	}
	logs := h.logs.String() + h2.logs.String()
	for _, secret := range []string{testSecret, nodeKey.Base64()} {
		if strings.Contains(logs, secret) {
			t.Fatalf("logs leak a secret:\n%s", logs)
		}
	}
	if !strings.Contains(logs, "lmk1.key1.REDACTED") {
		t.Fatalf("logs do not show the redacted key:\n%s", logs)
	}
}

func fmtErr() error {
	return &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.ParseIP("198.18.0.2"), Port: 443}, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
}

func TestUpCoordRefuses(t *testing.T) {
	coord := newFakeCoord(node(1, "a"))
	coord.regErr = &controlclient.StatusError{Code: 401, Message: `auth key expired at 2026-01-01T00:00:00Z: create a new one with "lanmesh-coord keys create"`}
	h := newHarness(t, t.TempDir(), coord)
	_, err := h.d.Up(context.Background(), localapi.UpRequest{LoginServer: "https://198.18.0.2", AuthKey: testAuthKey, Timeout: 2 * time.Second})
	var le *localapi.Error
	if !errors.As(err, &le) || le.Code != 401 || le.Msg != coord.regErr.(*controlclient.StatusError).Message {
		t.Fatalf("Up = %#v", err)
	}
	if st := h.d.Status(context.Background()); st.BackendState != localapi.StateNeedsLogin {
		t.Fatalf("state after refused join = %s", st.BackendState)
	}
	if _, err := h.d.Up(context.Background(), localapi.UpRequest{LoginServer: "https://x", AuthKey: "lmk1.nope"}); err == nil {
		t.Fatal("bad auth key accepted")
	}
}

func TestUpTimesOutWithLastError(t *testing.T) {
	coord := newFakeCoord(node(1, "a"))
	h := newHarness(t, t.TempDir(), coord)
	go func() {
		<-coord.mapReqs
		coord.sessions <- &session{msgs: closedMsgs(), err: fmtErr()}
	}()
	_, err := h.d.Up(context.Background(), localapi.UpRequest{LoginServer: "https://198.18.0.2", AuthKey: testAuthKey, Timeout: 500 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Up = %v", err)
	}
}

func closedMsgs() chan *wire.MapMessage {
	c := make(chan *wire.MapMessage)
	close(c)
	return c
}

// S14: a corrupt state file stops the agent before it opens the engine
// or talks to coord.
func TestCorruptStateStopsAgentS14(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(state.Path(dir), []byte(`{"version":1,"node_id":4,"prefs":{"want_running":true}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.StateDir = dir
	opened := false
	_, err := New(Options{Config: &cfg, NewEngine: func(engine.Options, *slog.Logger) (engine.Engine, error) {
		opened = true
		return &fakeEngine{}, nil
	}})
	if err == nil || !strings.Contains(err.Error(), state.Path(dir)) || opened {
		t.Fatalf("New = %v (engine opened: %v)", err, opened)
	}
}

func TestEchoLoopback(t *testing.T) {
	testenv.RequireRoot(t, "raw ICMP")
	rtt, err := echo(context.Background(), netip.MustParseAddr("127.0.0.1"), 1, 2*time.Second)
	if err != nil || rtt <= 0 {
		t.Fatalf("echo = %v, %v", rtt, err)
	}
}

func slices_contains(s []netip.Prefix, p string) bool {
	for _, x := range s {
		if x.String() == p {
			return true
		}
	}
	return false
}
