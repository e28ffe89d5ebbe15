// Package daemon owns the agent's lifecycle: it loads config and state,
// drives the engine from coord's netmap stream (with backoff while coord is
// away) and serves the local API. Data plane and wire protocol live elsewhere.
package daemon
