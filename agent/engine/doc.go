// Package engine is the agent's data plane: it owns the WireGuard device
// (userspace, via wireguard-go, with our magicsock conn.Bind), the mesh TUN
// interface, its addresses and routes (netlink) and the inet lanmesh
// nftables table. The daemon hands it a whole Config on every netmap change;
// the engine works out what changed.
package engine
