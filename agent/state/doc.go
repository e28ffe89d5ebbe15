// Package state persists a node's identity and preferences in state.json:
// keys, node ID, name, addresses, coord URL and pin, and what the user asked
// for with `lanmesh up`. It writes rarely and atomically; it never joins.
package state
