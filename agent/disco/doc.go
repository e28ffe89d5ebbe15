// Package disco is lanmesh's NAT-traversal message layer: the sealed
// ping/pong/call-me-maybe wire format and the per-peer path choice (direct
// UDP or relay). It owns no sockets: callers feed it packets and give it a Sender.
package disco
