// Package policy parses lanmesh's HuJSON access policy (Tailscale-style ACLs) and compiles it,
// with the mesh's nodes, into each node's visible peers and packet filters (internal/wire).
// It knows nothing of storage, transport or enforcement; coord feeds it nodes and ships the result.
package policy
