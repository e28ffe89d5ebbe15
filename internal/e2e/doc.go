// Package e2e holds the end-to-end tests: the real lanmesh and lanmesh-coord binaries in an internal/testbed world, asserting on packets that flow or do not.
// It has no production code; tests skip only when not root, and need the binaries ($LANMESH_BIN_DIR, or built from this module).
// Each test builds its own world, so they run in parallel and leave nothing behind.
package e2e
