// Package key holds lanmesh's two kinds of keys: node keys (Curve25519, the
// WireGuard identity of a node, rotated on re-auth) and machine keys
// (Ed25519, the long-lived identity a node proves to coord by signing).
// Private halves never leave the node; their String methods redact.
package key
