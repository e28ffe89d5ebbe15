// Package router puts the mesh interface's addresses and routes in place with netlink
// and turns on IP forwarding for subnet routers. It touches only its own link and the
// routes it marked as its own; it refuses routes that would capture host-scoped traffic.
// For exit-node use it adds policy routing (exit_linux.go): a table holding the default
// route into the mesh and rules that keep the agent's own marked sockets and the host's
// specific routes out of it.
package router
