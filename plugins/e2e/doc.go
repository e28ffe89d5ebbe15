// Package e2e tests logging in through IdP plugins end to end: a real
// OpenID Provider (panva/oidc-provider from npm, run with Node on
// loopback), the real lanmesh-idp-oidc and lanmesh-idp-local plugin
// executables hosted by coord, and headless Chromium driven by chromedp.
// The test set-up installs oidc-provider into a cache directory
// ($LANMESH_CACHE_DIR, default the user cache dir) with npm.
package e2e
