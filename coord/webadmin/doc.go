// Package webadmin is coord's web admin: server-rendered pages under
// /admin/ on coord's HTTPS listener for users, nodes, routes, pre-auth
// keys, the policy (with its tests) and the audit log.
//
// People log in through coord's identity providers (server.StartWebLogin);
// only admins get in (roles.go). Sessions live in memory, behind a
// Secure, HttpOnly, SameSite=Strict cookie, with idle and absolute expiry
// enforced here (S12). Every state change is a POST that must carry the
// session's CSRF token, come from coord's own origin and name coord's own
// host; it then goes through coord's admin API in-process, so it is
// validated and audited exactly like the CLI's (actor kind "web").
// The package knows nothing of any identity provider or of the store's
// layout beyond store.Store's reads.
package webadmin
