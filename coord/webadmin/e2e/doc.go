// Package e2e tests coord's web admin end to end: a real coord with the
// real IdP plugin executables (lanmesh-idp-local, lanmesh-idp-oidc with
// panva/oidc-provider from npm on loopback), headless Chromium driven by
// chromedp signing in, using each page and being refused where it must.
// Screenshots go to bench/results/screens/admin-*.png.
package e2e
