package firewall

import (
	"net/netip"
	"slices"

	"github.com/lanmesh/lanmesh/internal/wire"
)

// TableName is our table in the inet family; nothing else is ours.
const TableName = "lanmesh"

// Config is the desired rule set.
type Config struct {
	MeshIface string // the mesh TUN
	// SNAT masquerades mesh traffic forwarded to a LAN (LAN hosts answer
	// the router) and LAN traffic forwarded into the mesh (the far side
	// sees the router's mesh address).
	SNAT bool
	// Filter is coord's packet filter for this node. Nil admits nothing
	// new from or to the mesh (fail closed, S14).
	Filter *wire.PacketFilter
	// Addresses are the node's mesh addresses: the only local addresses
	// Inbound rules open, besides single addresses a rule names.
	Addresses []netip.Prefix
	// AdvertisedRoutes are the LANs this node routes: mesh traffic is
	// forwarded only into them, and only they may send into the mesh
	// (and then only where Filter.Forward names them, S1).
	AdvertisedRoutes []netip.Prefix
}

// Equal reports whether c and o describe the same rules.
func (c Config) Equal(o Config) bool {
	if c.MeshIface != o.MeshIface || c.SNAT != o.SNAT ||
		!slices.Equal(c.Addresses, o.Addresses) || !slices.Equal(c.AdvertisedRoutes, o.AdvertisedRoutes) ||
		(c.Filter == nil) != (o.Filter == nil) {
		return false
	}
	if c.Filter == nil {
		return true
	}
	return slices.EqualFunc(c.Filter.Inbound, o.Filter.Inbound, ruleEqual) &&
		slices.EqualFunc(c.Filter.Forward, o.Filter.Forward, ruleEqual)
}

func ruleEqual(a, b wire.FilterRule) bool {
	return slices.Equal(a.Src, b.Src) && slices.Equal(a.Dst, b.Dst) &&
		slices.Equal(a.Ports, b.Ports) && slices.Equal(a.Protos, b.Protos)
}
