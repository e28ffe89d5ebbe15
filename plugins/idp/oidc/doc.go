// Package oidc is lanmesh's built-in OpenID Connect identity provider,
// run as the plugin executable cmd/lanmesh-idp-oidc: authorization code
// flow with PKCE (S256), state and nonce checks, ID token signature,
// issuer, audience and expiry checks (coreos/go-oidc), the groups from a
// configurable claim, and refresh-token checks for Refresh. It keeps no
// state between calls: the PKCE verifier travels in the login's session,
// which coord holds server-side.
package oidc
