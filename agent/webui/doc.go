// Package webui is the agent's web page: embedded static files (no
// templates: the router binary's size budget) and a small JSON API that
// calls the same Backend as the local API (agent/localapi). It guards
// against DNS rebinding (Host check), CSRF and cross-origin posts (S5), and
// lets in only a browser that logged in with the access token, through an
// HttpOnly SameSite=Strict session cookie that expires on the server.
package webui
