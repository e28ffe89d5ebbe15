// Package magicsock is the agent's conn.Bind: WireGuard endpoints are peers' node keys, and each send
// goes over the peer's disco-proven direct path (one UDP socket per family, GSO/GRO batching) or the home
// relay; the socket also carries disco and STUN. Path choice is agent/disco's, NAT discovery agent/netcheck's.
package magicsock
