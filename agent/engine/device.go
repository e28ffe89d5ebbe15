package engine

import (
	"context"
	"net/netip"
	"slices"

	"github.com/lanmesh/lanmesh/agent/netcheck"
	"github.com/lanmesh/lanmesh/internal/key"
)

// Device is a WireGuard device as the engine drives it: the seam between
// the engine, which decides what the peers should be, and a backend that
// holds them. The userspace backend (uapiDevice: wireguard-go configured
// through its UAPI text, with magicsock as its conn.Bind) implements it;
// a kernel backend (a `wg` link configured with wgctrl) implements the
// same four methods. Abilities only one backend has are optional
// interfaces below, never anonymous type assertions.
type Device interface {
	// Apply makes the changes in order. On error some may be applied:
	// the engine then sends every peer again with ReplacePeers set.
	Apply(DeviceChanges) error
	// Kick makes the device send to each peer now: a keepalive over a
	// session, or a handshake when there is none, so the first packet
	// after a path appears does not wait for the 5 s handshake retry.
	Kick(peers []key.NodePublic) error
	// Peers reports each configured peer's counters and last handshake
	// (Path and Endpoint may be left empty; the engine fills the path).
	Peers() ([]PeerStatus, error)
	// Close removes the device.
	Close() error
}

// DeviceChanges is one batch of changes to a Device.
type DeviceChanges struct {
	// PrivateKey is set when it changed (zero: unchanged).
	PrivateKey key.NodePrivate
	// ReplacePeers removes every peer first, so Peers (all PeerAdd)
	// describe the whole device: the first Apply and the recovery from a
	// failed one.
	ReplacePeers bool
	Peers        []PeerChange
}

// ChangeOp is what a PeerChange does.
type ChangeOp uint8

// Peer change operations.
const (
	PeerAdd    ChangeOp = iota + 1 // a peer the device does not have
	PeerUpdate                     // new allowed IPs, endpoint or keepalive
	PeerRemove                     // drop the peer and its allowed IPs
)

func (o ChangeOp) String() string {
	switch o {
	case PeerAdd:
		return "add"
	case PeerUpdate:
		return "update"
	case PeerRemove:
		return "remove"
	}
	return "unknown"
}

// PeerChange is one backend-neutral change to a device's peer list.
type PeerChange struct {
	Op  ChangeOp
	Key key.NodePublic
	// AllowedIPs (add, update) is the peer's complete set: it replaces
	// the device's. The engine validated it (validatePeers).
	AllowedIPs []netip.Prefix
	// Endpoint (add, update) is a UDP address for the peer. Invalid
	// means "the backend's own addressing": the userspace backend sends
	// to the node key and magicsock picks the path per packet; a kernel
	// backend keeps the endpoint it has.
	Endpoint netip.AddrPort
	// Keepalive (add, update) is the persistent keepalive in seconds;
	// 0 turns it off. Only one side of each pair sets it (initiates).
	Keepalive int
}

// diffPeers is the list of changes that turns a device holding have into
// one holding want (both valid: unique, non-zero keys). keyChanged says
// our private key changes too, which flips who initiates, so every kept
// peer is updated. Removals come first: a prefix moving from a removed
// peer to a new one must be free when the new one claims it.
func diffPeers(self key.NodePublic, have map[key.NodePublic]Peer, want []Peer, keyChanged bool) []PeerChange {
	var out []PeerChange
	keep := make(map[key.NodePublic]bool, len(want))
	for _, p := range want {
		keep[p.Key] = true
	}
	var gone []key.NodePublic
	for k := range have {
		if !keep[k] {
			gone = append(gone, k)
		}
	}
	slices.SortFunc(gone, func(a, b key.NodePublic) int { return slices.Compare(a[:], b[:]) })
	for _, k := range gone {
		out = append(out, PeerChange{Op: PeerRemove, Key: k})
	}
	for _, p := range want {
		o, had := have[p.Key]
		c := PeerChange{Key: p.Key, AllowedIPs: slices.Clone(p.AllowedIPs), Keepalive: keepaliveFor(self, p.Key)}
		switch {
		case !had:
			c.Op = PeerAdd
		case keyChanged || !slices.Equal(o.AllowedIPs, p.AllowedIPs):
			c.Op = PeerUpdate
		default:
			continue
		}
		out = append(out, c)
	}
	return out
}

// Optional abilities. An engine (or device) that has one implements the
// interface; callers check with a type assertion to the named interface,
// and implementations pin it with a `var _` line so a renamed method
// fails to compile instead of silently disabling the feature.

// EndpointLister knows better endpoints than the interfaces' addresses
// (STUN-mapped ones behind NAT); the daemon publishes them to coord.
type EndpointLister interface {
	LocalEndpoints() []netip.AddrPort
}

// NetworkChanger re-probes paths (disco, STUN) when the host's network
// changes.
type NetworkChanger interface{ NetworkChanged() }

// HomeRegioner has a relay connection and names its region (0: none).
type HomeRegioner interface{ HomeRegion() int }

// Netchecker checks the network over the WireGuard socket
// (`lanmesh netcheck`).
type Netchecker interface {
	Netcheck(ctx context.Context) (*netcheck.Report, error)
}
