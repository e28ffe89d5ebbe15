package sdk

import (
	"context"
	"errors"
	"net/url"
)

// IdP is an identity provider plugin: it sends a user's browser to log in
// somewhere and tells coord who came back.
//
// The login flow: coord calls BeginLogin with its callback URL and a fresh
// state and nonce, and sends the browser to the returned AuthURL. The IdP
// eventually redirects the browser to RedirectURL with the state in the
// query; coord checks the state against the pending login (so the plugin
// sees only callbacks coord issued) and calls CompleteLogin, which must
// verify everything the IdP vouches for (code, nonce, audience, issuer,
// expiry) and return the identity. Refresh is asked periodically whether
// an identity is still allowed (e.g. its refresh token still works).
//
// Methods are called concurrently and must honour ctx: coord gives every
// call a deadline and treats a late answer as a failure.
type IdP interface {
	// Configure is called once after every start, before any other call,
	// with the plugin's settings from coord's plugins config (JSON, {} if
	// none). An error here fails the plugin's start with that message.
	Configure(ctx context.Context, settings []byte) (Info, error)
	BeginLogin(ctx context.Context, req BeginRequest) (BeginResponse, error)
	CompleteLogin(ctx context.Context, req CompleteRequest) (Identity, error)
	// Refresh returns the identity, updated (e.g. new groups), when it is
	// still valid, or an error wrapping ErrRefused when the user must no
	// longer have access.
	Refresh(ctx context.Context, id Identity) (Identity, error)
}

// Info describes a configured plugin.
type Info struct {
	DisplayName string // shown on coord's login page, e.g. "Log in with Google"
}

// BeginRequest starts a login.
type BeginRequest struct {
	RedirectURL string // coord's callback; the IdP must send the browser back here
	State       string // opaque, random; must come back in the callback's "state"
	Nonce       string // opaque, random; OIDC IdPs bind it into the ID token
	// PluginURL is the base URL under which coord forwards browser requests
	// to the plugin's http.Handler (if it implements one), ending in "/".
	PluginURL string
}

// BeginResponse says where to send the browser.
type BeginResponse struct {
	AuthURL string
	// Session is opaque state the plugin needs again in CompleteLogin (e.g.
	// a PKCE verifier). Coord keeps it server-side with the pending login,
	// so the plugin itself can stay stateless across restarts.
	Session []byte
}

// CompleteRequest is a callback coord matched to one of its pending logins.
type CompleteRequest struct {
	RedirectURL string
	State       string // the state of the pending login (equals Query's "state")
	Nonce       string // the nonce given to BeginLogin
	Session     []byte
	Query       url.Values // the callback's query parameters
}

// Identity is a person as the IdP knows them.
type Identity struct {
	Subject string // stable and unique within this IdP
	Email   string
	Name    string
	Groups  []string
	// Secret is opaque to coord (e.g. a refresh token): stored, handed back
	// to Refresh, never logged.
	Secret []byte
}

// Errors a plugin wraps so that coord tells the user the right thing.
var (
	// ErrRefused: the IdP (or the plugin's own rules) says no to this person.
	ErrRefused = errors.New("login refused")
	// ErrBadCallback: the callback is forged, replayed, expired or broken.
	ErrBadCallback = errors.New("bad login callback")
)

// remoteError is an error that crossed the plugin boundary: its message is
// the plugin's, and errors.Is still finds the kind.
type remoteError struct {
	kind error
	msg  string
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.kind }
