package wire

import (
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
)

// Interactive login through an identity provider (an IdP plugin on coord).
// A node that has no auth key asks coord for a login URL with its machine
// key (PathLogin), shows the URL to its user, and waits (PathLoginWait,
// long poll) until the user has logged in at the IdP; coord then
// registers the node for that user and answers with the node. PathLogout
// expires the node's key at once.
const (
	PathLogin     = "/v1/login"      // POST Envelope{LoginRequest} -> LoginResponse
	PathLoginWait = "/v1/login/wait" // POST Envelope{LoginWaitRequest} -> LoginWaitResponse
	PathLogout    = "/v1/logout"     // POST Envelope{LogoutRequest} -> 200 {}

	// LoginTTL is how long a login URL stays valid.
	LoginTTL = 10 * time.Minute
	// LoginWaitMax is the longest coord holds one PathLoginWait request;
	// the node asks again until the login is done or expired.
	LoginWaitMax = 30 * time.Second
)

// LoginRequest asks for a login URL. The registration fields are those of
// RegisterRequest: coord registers the node with them once the user has
// logged in.
type LoginRequest struct {
	NodeKey  key.NodePublic `json:"node_key"`
	Hostname string         `json:"hostname"`
	OS       string         `json:"os,omitempty"`
	// Provider names the IdP (coord's plugins config); empty: coord's
	// first one.
	Provider string `json:"provider,omitempty"`
}

// LoginResponse carries the URL the user opens and the login's ID.
type LoginResponse struct {
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	Provider  string    `json:"provider"`
	ExpiresAt time.Time `json:"expires_at"`
}

// LoginWaitRequest waits for the login ID (same machine key only).
type LoginWaitRequest struct {
	ID string `json:"id"`
}

// LoginWaitResponse: Done with Node set when the node is registered;
// Done with Error when the login failed (the user must start over); not
// Done when the wait timed out (ask again).
type LoginWaitResponse struct {
	Done  bool   `json:"done"`
	Node  *Node  `json:"node,omitempty"`
	User  string `json:"user,omitempty"`
	Error string `json:"error,omitempty"`
}

// LogoutRequest expires the calling machine's node key.
type LogoutRequest struct{}
