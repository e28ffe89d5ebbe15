// Package router puts the mesh interface's addresses and routes in place with netlink
// and turns on IP forwarding for subnet routers. It touches only its own link and the
// routes it marked as its own; it refuses routes that would capture host-scoped traffic.
package router
