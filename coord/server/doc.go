// Package server is lanmesh-coord's HTTP side: the node API (challenge,
// register, netmap stream, health) and the admin API on a unix socket.
// State lives in coord/store; netmaps are built by coord/netmap.
package server
