package engine

import (
	"net/netip"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// Config is the complete desired state of the data plane. Reconfig with an
// equal Config is a no-op; an empty Peers list removes every peer.
type Config struct {
	PrivateKey key.NodePrivate
	Addresses  []netip.Prefix // this node's mesh addresses (/32 and /128)
	Peers      []Peer
	// Routes to send into the mesh interface: the mesh ranges and, with
	// accept-routes, the approved subnet routes of peers.
	Routes []netip.Prefix
	// AdvertisedRoutes are the LAN prefixes this node forwards for the
	// mesh; non-empty turns on IP forwarding for the mesh interface.
	AdvertisedRoutes []netip.Prefix
	// SNAT masquerades forwarded traffic between the mesh and the LANs.
	SNAT bool
	// Filter is the packet filter coord compiled for this node. Nil means
	// no filter was received yet: the firewall admits nothing from the
	// mesh (fail closed, S14).
	Filter *wire.PacketFilter
	// DERPMap lists the relays for NAT traversal fallback.
	DERPMap *wire.DERPMap
	// ExitRoutes are the default routes (0.0.0.0/0, ::/0) of the exit
	// node in use; only that peer may carry them in its AllowedIPs
	// (CheckAllowedIP). Empty: no exit node.
	ExitRoutes []netip.Prefix
	// ExitAllowLAN keeps directly connected LANs out of the exit tunnel.
	ExitAllowLAN bool
}

// Peer is one WireGuard peer.
type Peer struct {
	Key        key.NodePublic
	Name       string
	AllowedIPs []netip.Prefix
	Endpoints  []netip.AddrPort // candidates; the engine picks the path
	HomeRegion int              // the peer's relay region (0: unknown)
}

// Options are fixed for the engine's lifetime.
type Options struct {
	TUNName    string // default "lanmesh0"
	MTU        int    // default 1420
	ListenPort uint16 // UDP port for WireGuard; 0 picks one
	// Backend is the WireGuard implementation: BackendAuto (default:
	// the kernel's when it has WireGuard, else userspace), BackendKernel
	// or BackendUserspace (docs/kernel-mode.md).
	Backend  string
	Offloads Offloads
	// MaxInflightPackets bounds packets held in the data plane per
	// direction (memory stays bounded; wireguard-go's pools do not).
	MaxInflightPackets int
	// UAPISocket serves the userspace device's UAPI socket,
	// /var/run/wireguard/<TUNName>.sock, to read the device with the UAPI
	// text protocol (off by default; ignored by the kernel backend).
	UAPISocket bool
}

// Offloads switches kernel offloads; each also falls back by itself when
// the kernel refuses it.
type Offloads struct {
	TUN    bool // TUN TSO/GRO via IFF_VNET_HDR
	UDPGSO bool
	UDPGRO bool
}

// PeerStatus is what the engine knows of a peer right now.
type PeerStatus struct {
	Key           key.NodePublic
	Endpoint      netip.AddrPort // the path in use; invalid when none yet
	LastHandshake time.Time
	RxBytes       uint64
	TxBytes       uint64
	// Path is how packets reach the peer now: "direct <ip:port>",
	// "relay <region>", or "" when there is no path yet.
	Path string
}

// Engine is the data plane the daemon drives.
type Engine interface {
	// Reconfig applies every valid peer and change of cfg and leaves out
	// the invalid peers, which it returns with the reason (S19): one bad
	// peer never stops the others, revocations or filter updates. The
	// error covers what failed beyond those (device, routes, firewall);
	// the next Reconfig retries it.
	Reconfig(Config) ([]Rejected, error)
	Peers() []PeerStatus
	ListenPort() uint16
	Close() error // removes the interface, its routes and the nftables table
}
