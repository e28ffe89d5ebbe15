// Package sockmark marks the agent's own sockets (magicsock's UDP, the
// coord client's TCP, relay connections) with SO_MARK, so the exit-node
// policy routing in agent/router sends them through the main table and
// never into the mesh they carry (docs/exit-nodes.md). It only sets the
// mark; the rules that act on it belong to agent/router.
package sockmark
