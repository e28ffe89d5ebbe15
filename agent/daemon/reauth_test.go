package daemon

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/agent/config"
	"github.com/lanmesh/lanmesh/agent/localapi"
	"github.com/lanmesh/lanmesh/internal/controlclient"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// reauthCoord logs nodes in like coord's /v1/login: LoginWait holds
// until the test "logs in" (close(loggedIn)), as a person in a browser.
type reauthCoord struct {
	*fakeCoord
	node     wire.Node
	loggedIn chan struct{}
	mu       sync.Mutex
	logins   []wire.LoginRequest
}

func (c *reauthCoord) Login(ctx context.Context, req wire.LoginRequest) (wire.LoginResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.logins = append(c.logins, req)
	return wire.LoginResponse{ID: "login-1", URL: "https://198.18.0.2/login/oidc?id=login-1", Provider: "oidc", ExpiresAt: time.Now().Add(wire.LoginTTL)}, nil
}

func (c *reauthCoord) lastLogin() wire.LoginRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.logins[len(c.logins)-1]
}

func (c *reauthCoord) LoginWait(ctx context.Context, id string) (wire.LoginWaitResponse, error) {
	select {
	case <-c.loggedIn:
		n := c.node
		return wire.LoginWaitResponse{Done: true, User: "ann", Node: &n}, nil
	case <-ctx.Done():
		return wire.LoginWaitResponse{}, ctx.Err()
	case <-time.After(50 * time.Millisecond):
		return wire.LoginWaitResponse{}, nil // coord's long poll ended: ask again
	}
}

func (c *reauthCoord) Logout(ctx context.Context) error { return nil }

// S12: coord refuses a node whose key expired. The node leaves the mesh,
// status says it needs re-auth and shows the login URL the agent asked
// coord for by itself; once the person logs in, the agent comes back up
// on its own, with the same node.
func TestExpiredNodeReauthenticates(t *testing.T) {
	self, peer := node(1, "annlaptop"), node(2, "router-b")
	rc := &reauthCoord{fakeCoord: newFakeCoord(self), node: self, loggedIn: make(chan struct{})}
	h := newHarnessWith(t, t.TempDir(), rc.fakeCoord, func(_ *config.Config, o *Options) {
		o.NewControl = func(controlclient.Options) (Control, error) { return rc, nil }
	})
	sess := join(t, h, self, fullMap(self, peer))
	ctx := context.Background()

	refusal := &controlclient.StatusError{Code: 401, Reason: wire.ReasonNodeExpired, Message: "node key expired at 2026-12-05T07:00:00Z: register again with an auth key"}
	go func() {
		<-rc.mapReqs
		rc.sessions <- &session{msgs: closedMsgs(), err: refusal}
	}()
	close(sess.msgs)
	waitFor(t, "needs re-auth with a login URL", func() bool {
		st := h.d.Status(ctx)
		return st.NeedsReauth && st.AuthURL != ""
	})
	st := h.d.Status(ctx)
	if st.BackendState != localapi.StateNeedsLogin || len(st.Peers) != 0 || st.AuthURL != "https://198.18.0.2/login/oidc?id=login-1" ||
		!strings.Contains(st.Coord.LastError, "needs re-auth") {
		t.Fatalf("status after expiry: %+v", st)
	}
	if cfg, _ := h.eng.last(); len(cfg.Peers) != 0 {
		t.Fatalf("expired node keeps peers: %+v", cfg.Peers)
	}
	if l := rc.lastLogin(); l.NodeKey != h.d.st.NodeKey.Public() {
		t.Errorf("re-auth login with key %v, want the node's own", l.NodeKey)
	}

	// The person logs in: the agent rejoins by itself.
	go func() {
		r := <-rc.mapReqs
		s := &session{msgs: make(chan *wire.MapMessage, 10)}
		self.Key = r.NodeKey
		s.msgs <- fullMap(self, peer)
		rc.sessions <- s
	}()
	close(rc.loggedIn)
	waitFor(t, "running again after the login", func() bool {
		st := h.d.Status(ctx)
		return st.BackendState == localapi.StateRunning && !st.NeedsReauth && len(st.Peers) == 1
	})
	if st := h.d.Status(ctx); st.Self == nil || st.Self.Name != "annlaptop" || st.Self.Addresses[0] != self.Addresses[0] {
		t.Errorf("after re-auth: %+v", st.Self)
	}
}

// A coord without an identity provider answers the re-auth login with
// 501: status still says needs re-auth, and how (an auth key).
func TestExpiredNodeWithoutIdP(t *testing.T) {
	self := node(1, "router-a")
	coord := newFakeCoord(self)
	nc := &noIdPCoord{coord}
	h := newHarnessWith(t, t.TempDir(), coord, func(_ *config.Config, o *Options) {
		o.NewControl = func(controlclient.Options) (Control, error) { return nc, nil }
	})
	sess := join(t, h, self, fullMap(self))
	go func() {
		<-coord.mapReqs
		coord.sessions <- &session{msgs: closedMsgs(), err: &controlclient.StatusError{Code: 401, Reason: wire.ReasonNodeExpired, Message: "node key expired"}}
	}()
	close(sess.msgs)
	waitFor(t, "needs re-auth", func() bool { return h.d.Status(context.Background()).NeedsReauth })
	waitFor(t, "the no-IdP answer", func() bool {
		h.d.mu.Lock()
		defer h.d.mu.Unlock()
		return strings.Contains(h.d.reauth.err, "--auth-key")
	})
	if st := h.d.Status(context.Background()); st.AuthURL != "" {
		t.Errorf("auth URL %q without an IdP", st.AuthURL)
	}
}

type noIdPCoord struct{ *fakeCoord }

func (noIdPCoord) Login(context.Context, wire.LoginRequest) (wire.LoginResponse, error) {
	return wire.LoginResponse{}, &controlclient.StatusError{Code: 501, Message: "this coord has no identity provider: join with --auth-key"}
}
func (noIdPCoord) LoginWait(context.Context, string) (wire.LoginWaitResponse, error) {
	return wire.LoginWaitResponse{}, nil
}
func (noIdPCoord) Logout(context.Context) error { return nil }

// --force-reauth: the login carries a new node key; the state keeps the
// old one until the login is done, then holds the new one.
func TestForceReauthRotatesKey(t *testing.T) {
	self := node(1, "annlaptop")
	rc := &reauthCoord{fakeCoord: newFakeCoord(self), node: self, loggedIn: make(chan struct{})}
	h := newHarnessWith(t, t.TempDir(), rc.fakeCoord, func(_ *config.Config, o *Options) {
		o.NewControl = func(controlclient.Options) (Control, error) { return rc, nil }
	})
	join(t, h, self, fullMap(self))
	ctx := context.Background()
	old := h.d.st.NodeKey.Public()
	lr, err := h.d.Login(ctx, localapi.LoginRequest{ForceReauth: true})
	if err != nil {
		t.Fatal(err)
	}
	sent := rc.lastLogin().NodeKey
	if sent == old || sent.IsZero() {
		t.Fatalf("force-reauth login sent key %v (old %v)", sent, old)
	}
	if h.d.st.NodeKey.Public() != old {
		t.Fatal("the new key was stored before the login finished")
	}
	close(rc.loggedIn)
	if r, err := h.d.LoginWait(ctx, localapi.LoginWaitRequest{ID: lr.ID}); err != nil || !r.Done {
		t.Fatalf("LoginWait = %+v %v", r, err)
	}
	if got := h.d.st.NodeKey.Public(); got != sent {
		t.Fatalf("state key %v after the login, want the new %v", got, sent)
	}
	go func() {
		r := <-rc.mapReqs
		if r.NodeKey != sent {
			t.Errorf("map request with key %v, want the new %v", r.NodeKey, sent)
		}
		self.Key = r.NodeKey
		rc.open(self)
	}()
	if _, err := h.d.Up(ctx, localapi.UpRequest{}); err != nil {
		t.Fatal(err)
	}
	if cfg, _ := h.eng.last(); cfg.PrivateKey.Public() != sent {
		t.Errorf("engine runs key %v, want %v", cfg.PrivateKey.Public(), sent)
	}

	// With an auth key: registered with a fresh key at once.
	before := h.d.st.NodeKey.Public()
	go func() { r := <-rc.mapReqs; self.Key = r.NodeKey; rc.open(self) }()
	if _, err := h.d.Up(ctx, localapi.UpRequest{AuthKey: testAuthKey, ForceReauth: true, Timeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	regs := rc.fakeCoord.registers
	if last := regs[len(regs)-1].NodeKey; last == before || last != h.d.st.NodeKey.Public() {
		t.Errorf("force-reauth with a key registered %v (before %v, state %v)", last, before, h.d.st.NodeKey.Public())
	}
	var zero key.NodePublic
	if h.d.st.NodeKey.Public() == zero {
		t.Error("no node key")
	}
}
