// Package localapi is the agent's local control API: JSON over HTTP on a
// root-only unix socket, its request/response types and the Go client the
// CLI uses. It knows nothing of how the daemon does the work (Backend).
package localapi
