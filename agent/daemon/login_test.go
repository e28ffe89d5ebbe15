package daemon

import (
	"context"
	"sync"
	"testing"

	"github.com/lanmesh/lanmesh/agent/config"
	"github.com/lanmesh/lanmesh/agent/localapi"
	"github.com/lanmesh/lanmesh/internal/controlclient"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// loginCoord is fakeCoord that also logs nodes in (a test double of
// coord's /v1/login endpoints).
type loginCoord struct {
	*fakeCoord
	mu      sync.Mutex
	node    wire.Node
	logouts int
	lastReq wire.LoginRequest
}

func (c *loginCoord) Login(ctx context.Context, req wire.LoginRequest) (wire.LoginResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastReq = req
	return wire.LoginResponse{ID: "login-1", URL: "https://198.18.0.2/login/oidc?id=login-1", Provider: "oidc"}, nil
}

func (c *loginCoord) LoginWait(ctx context.Context, id string) (wire.LoginWaitResponse, error) {
	if id != "login-1" {
		return wire.LoginWaitResponse{Done: true, Error: "unknown login"}, nil
	}
	n := c.node
	return wire.LoginWaitResponse{Done: true, User: "ann", Node: &n}, nil
}

func (c *loginCoord) Logout(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.logouts++
	return nil
}

// TestLoginUpLogout: an unjoined node logs in (no auth key), comes up
// with the node coord registered for the user, and logs out again.
func TestLoginUpLogout(t *testing.T) {
	self := node(1, "annlaptop")
	lc := &loginCoord{fakeCoord: newFakeCoord(self), node: self}
	h := newHarnessWith(t, t.TempDir(), lc.fakeCoord, func(_ *config.Config, o *Options) {
		o.NewControl = func(controlclient.Options) (Control, error) { return lc, nil }
	})
	ctx := context.Background()
	lr, err := h.d.Login(ctx, localapi.LoginRequest{LoginServer: "https://198.18.0.2", Hostname: "annlaptop"})
	if err != nil || lr.URL == "" || lr.ID != "login-1" {
		t.Fatalf("Login = %+v, %v", lr, err)
	}
	if lc.lastReq.Hostname != "annlaptop" || lc.lastReq.NodeKey.IsZero() {
		t.Errorf("login request %+v", lc.lastReq)
	}
	r, err := h.d.LoginWait(ctx, localapi.LoginWaitRequest{ID: lr.ID})
	if err != nil || !r.Done || r.User != "ann" || r.Name != "annlaptop" {
		t.Fatalf("LoginWait = %+v, %v", r, err)
	}
	go func() { <-lc.mapReqs; lc.open(self) }()
	if _, err := h.d.Up(ctx, localapi.UpRequest{}); err != nil {
		t.Fatalf("up after login: %v", err)
	}
	if lc.registerCount() != 0 {
		t.Errorf("up after login registered again (%d times); coord already did", lc.registerCount())
	}
	if err := h.d.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	st := h.d.Status(ctx)
	if lc.logouts != 1 || st.Self != nil || st.BackendState == localapi.StateRunning {
		t.Errorf("after logout: logouts %d, status %+v", lc.logouts, st)
	}
	if _, err := h.d.Up(ctx, localapi.UpRequest{}); err == nil {
		t.Error("up after logout without a login or auth key succeeded")
	}
}
