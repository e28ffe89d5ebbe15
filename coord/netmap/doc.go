// Package netmap turns coord's stored nodes into per-node netmaps: a shared
// snapshot rebuilt once per change (Hub), and per-stream diffs into deltas
// (Stream). Who sees whom is a PeerFilter, where a policy compiler plugs in.
package netmap
