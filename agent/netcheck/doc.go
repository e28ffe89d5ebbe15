// Package netcheck measures what the network lets this node do: UDP at all,
// public IPv4/IPv6 mappings, endpoint-dependent ("hard") NAT, and latency to
// each relay region. It uses the caller's UDP socket and owns no sockets.
package netcheck
