// Package local is a small identity provider for people without one:
// users with bcrypt passwords and TOTP codes (RFC 6238) listed in a JSON
// file, and a login form the plugin serves itself through coord. It runs
// as the plugin executable cmd/lanmesh-idp-local, and shows that the
// plugin SDK is not OIDC-shaped only.
//
// Pending logins and one-time codes live in the plugin's memory: a
// restart of the plugin cancels logins in progress (the user starts over).
package local
