package localapi

import (
	"context"
	"net/http"
	"net/netip"
	"time"
)

// Interactive login through coord's identity providers (docs/identity.md).
const (
	PathLogin     = "/v1/login"      // POST LoginRequest -> LoginResponse
	PathLoginWait = "/v1/login/wait" // POST LoginWaitRequest -> LoginWaitResponse
	PathLogout    = "/v1/logout"     // POST -> {}
)

// LoginRequest starts an interactive login.
type LoginRequest struct {
	LoginServer      string `json:"login_server,omitempty"` // default: the stored one
	CoordFingerprint string `json:"coord_fingerprint,omitempty"`
	Provider         string `json:"provider,omitempty"` // coord's IdP plugin name; "" its first
	Hostname         string `json:"hostname,omitempty"`
	// ForceReauth logs in with a new node key (lanmesh up
	// --force-reauth): the node keeps its identity, addresses and name;
	// the new key replaces the old one once the login is done.
	ForceReauth bool `json:"force_reauth,omitempty"`
}

// LoginResponse is the URL the user opens.
type LoginResponse struct {
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	Provider  string    `json:"provider"`
	ExpiresAt time.Time `json:"expires_at"`
}

// LoginWaitRequest waits (up to about 30 s) for the login.
type LoginWaitRequest struct {
	ID string `json:"id"`
}

// LoginWaitResponse: Done and User/Name/Addresses when the node joined;
// Done and Error when the login failed; not Done: ask again.
type LoginWaitResponse struct {
	Done      bool           `json:"done"`
	User      string         `json:"user,omitempty"`
	Name      string         `json:"name,omitempty"`
	Addresses []netip.Prefix `json:"addresses,omitempty"`
	Error     string         `json:"error,omitempty"`
}

// LoginBackend is the optional part of a Backend that logs in through an
// identity provider and logs out.
type LoginBackend interface {
	Login(ctx context.Context, req LoginRequest) (LoginResponse, error)
	LoginWait(ctx context.Context, req LoginWaitRequest) (LoginWaitResponse, error)
	Logout(ctx context.Context) error
}

// loginRoutes serves the login endpoints when the backend can log in.
func (s *Server) loginRoutes(mux *http.ServeMux) {
	lb, ok := s.b.(LoginBackend)
	if !ok {
		return
	}
	mux.HandleFunc("POST "+PathLogin, func(w http.ResponseWriter, r *http.Request) {
		var req LoginRequest
		if !readJSON(w, r, &req) {
			return
		}
		resp, err := lb.Login(r.Context(), req)
		if err != nil {
			s.fail(w, "login", err)
			return
		}
		writeJSON(w, resp)
	})
	mux.HandleFunc("POST "+PathLoginWait, func(w http.ResponseWriter, r *http.Request) {
		var req LoginWaitRequest
		if !readJSON(w, r, &req) {
			return
		}
		resp, err := lb.LoginWait(r.Context(), req)
		if err != nil {
			s.fail(w, "login wait", err)
			return
		}
		writeJSON(w, resp)
	})
	mux.HandleFunc("POST "+PathLogout, func(w http.ResponseWriter, r *http.Request) {
		if err := lb.Logout(r.Context()); err != nil {
			s.fail(w, "logout", err)
			return
		}
		writeJSON(w, struct{}{})
	})
}

// Login starts an interactive login.
func (c *Client) Login(ctx context.Context, req LoginRequest) (LoginResponse, error) {
	var out LoginResponse
	err := c.do(ctx, http.MethodPost, PathLogin, req, &out)
	return out, err
}

// LoginWait waits for a login started with Login.
func (c *Client) LoginWait(ctx context.Context, id string) (LoginWaitResponse, error) {
	var out LoginWaitResponse
	err := c.do(ctx, http.MethodPost, PathLoginWait, LoginWaitRequest{ID: id}, &out)
	return out, err
}

// Logout expires this node's key on coord and leaves the mesh.
func (c *Client) Logout(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, PathLogout, struct{}{}, nil)
}
