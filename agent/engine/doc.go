// Package engine is the agent's data plane: it owns the WireGuard device,
// the mesh TUN interface, its addresses and routes (netlink) and the inet
// lanmesh nftables table. The daemon hands it a whole Config on every
// netmap change; the engine works out what changed.
//
// The WireGuard device sits behind the Device seam (device.go): the
// engine validates the desired peers (validatePeers, CheckAllowedIP),
// computes a backend-neutral list of PeerChange values (add, update,
// remove, each with its complete allowed IPs, an optional endpoint and
// the keepalive) with diffPeers, and hands them to Device.Apply. The
// backends are:
//
//   - userspace (uapiDevice, device_uapi.go): wireguard-go configured
//     through its UAPI text, with magicsock as its conn.Bind, so peers are
//     addressed by node key and magicsock picks the path per packet;
//   - kernel (kernelDevice, device_kernel_linux.go): a `wireguard` link
//     configured with wgctrl; each peer's endpoint is a loopback socket of
//     the agent that carries its packets over magicsock, so paths and
//     relays work as in userspace (docs/kernel-mode.md). Options.Backend
//     picks one; auto tries the kernel first (engine_kernel_linux.go).
//
// Apply, Peers and Close run on the engine's worker thread, inside the
// engine's network namespace; Kick may run on another goroutine at the
// same time. Abilities only some engines or devices have are named
// optional interfaces (EndpointLister, NetworkChanger, HomeRegioner,
// Netchecker) pinned with `var _` checks.
//
// One bad peer never stops the rest (S19): Reconfig leaves out each peer
// that fails validation (zero, own or duplicate node key; an allowed IP
// that is invalid, host-scoped, multicast, a default route that is not an
// exit route in use, that overlaps this node's own addresses or an
// earlier peer's prefix, or that lies inside a LAN it advertises),
// applies everything else, and returns the left-out peers with the
// reason.
package engine
