package localapi

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeBackend records calls; the server and client run for real over a
// real unix socket.
type fakeBackend struct {
	lastUp UpRequest
	upErr  error
	downs  int
}

func (f *fakeBackend) Status(context.Context) Status {
	return Status{BackendState: StateRunning, Coord: CoordStatus{URL: "https://198.18.0.2", Connected: true},
		Self:  &Node{ID: 1, Name: "router-a", Addresses: []netip.Prefix{netip.MustParsePrefix("100.64.0.1/32")}},
		Peers: []Peer{{ID: 2, Name: "router-b"}}}
}

func (f *fakeBackend) Up(_ context.Context, r UpRequest) (UpResponse, error) {
	f.lastUp = r
	if f.upErr != nil {
		return UpResponse{}, f.upErr
	}
	return UpResponse{Name: "router-a", Addresses: []netip.Prefix{netip.MustParsePrefix("100.64.0.1/32")}}, nil
}

func (f *fakeBackend) Down(context.Context) error { f.downs++; return nil }

func (f *fakeBackend) Ping(_ context.Context, r PingRequest) (PingResponse, error) {
	if r.Target == "nobody" {
		return PingResponse{}, BadRequest("no peer named %q", r.Target)
	}
	return PingResponse{Name: r.Target, IP: "100.64.0.2", Seq: r.Seq, RTTMs: 1.5}, nil
}

func start(t *testing.T, b Backend) (*Client, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "run", "lanmesh.sock")
	s, err := Listen(sock, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return NewClient(sock), sock
}

func TestClientServer(t *testing.T) {
	fb := &fakeBackend{}
	c, sock := start(t, fb)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	di, _ := os.Stat(filepath.Dir(sock))
	if di.Mode().Perm() != 0o755 {
		t.Fatalf("socket dir mode = %v, want 0755", di.Mode().Perm())
	}

	st, err := c.Status(ctx)
	if err != nil || st.BackendState != StateRunning || st.Self.Name != "router-a" || len(st.Peers) != 1 {
		t.Fatalf("Status = %+v, %v", st, err)
	}

	yes := true
	resp, err := c.Up(ctx, UpRequest{LoginServer: "https://x", AcceptRoutes: &yes})
	if err != nil || resp.Name != "router-a" {
		t.Fatalf("Up = %+v, %v", resp, err)
	}
	if fb.lastUp.AcceptRoutes == nil || !*fb.lastUp.AcceptRoutes || fb.lastUp.SNATSubnetRoutes != nil {
		t.Fatalf("Up request not carried over: %+v", fb.lastUp)
	}

	fb.upErr = &Error{Code: http.StatusUnauthorized, Msg: "auth key expired at 2026-01-01T00:00:00Z"}
	_, err = c.Up(ctx, UpRequest{})
	var e *Error
	if !errors.As(err, &e) || e.Code != 401 || e.Msg != "auth key expired at 2026-01-01T00:00:00Z" {
		t.Fatalf("Up error = %#v", err)
	}

	if err := c.Down(ctx); err != nil || fb.downs != 1 {
		t.Fatalf("Down = %v (downs %d)", err, fb.downs)
	}

	p, err := c.Ping(ctx, PingRequest{Target: "router-b", Seq: 3})
	if err != nil || p.Seq != 3 || p.IP != "100.64.0.2" {
		t.Fatalf("Ping = %+v, %v", p, err)
	}
	_, err = c.Ping(ctx, PingRequest{Target: "nobody"})
	if err == nil || !strings.Contains(err.Error(), `no peer named "nobody"`) {
		t.Fatalf("Ping error = %v", err)
	}
}

func TestBadRequests(t *testing.T) {
	_, sock := start(t, &fakeBackend{})
	hc := NewClient(sock).hc
	tests := []struct {
		method, path, body string
		code               int
	}{
		{"POST", PathUp, `{"nope":1}`, 400},
		{"POST", PathUp, `{`, 400},
		{"POST", PathUp, `{"hostname":"` + strings.Repeat("a", maxBodyBytes) + `"}`, 400},
		{"GET", PathUp, ``, 405},
		{"GET", "/localapi/v0/secret", ``, 404},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, "http://x"+tt.path, strings.NewReader(tt.body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.code {
			t.Errorf("%s %s: HTTP %d, want %d", tt.method, tt.path, resp.StatusCode, tt.code)
		}
	}
}

func TestAgentNotRunning(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "lanmesh.sock")
	_, err := NewClient(sock).Status(context.Background())
	want := "cannot reach the lanmesh agent at " + sock + ": is `lanmesh agent` running?"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
}

func TestSecondAgentRefused(t *testing.T) {
	_, sock := start(t, &fakeBackend{})
	if _, err := Listen(sock, &fakeBackend{}, nil); err == nil || !strings.Contains(err.Error(), "another lanmesh agent") {
		t.Fatalf("second Listen = %v", err)
	}
}
