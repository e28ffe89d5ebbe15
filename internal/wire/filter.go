package wire

import (
	"encoding/json"
	"net/netip"
)

// IP protocol numbers a FilterRule names.
const (
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoGRE    uint8 = 47
	ProtoESP    uint8 = 50
	ProtoAH     uint8 = 51
	ProtoICMPv6 uint8 = 58
	ProtoSCTP   uint8 = 132
)

// PortRange is an inclusive range of ports, First <= Last.
type PortRange struct {
	First uint16 `json:"first"`
	Last  uint16 `json:"last"`
}

// AllPorts is the range every port falls in.
var AllPorts = PortRange{First: 0, Last: 65535}

// FilterRule admits a packet whose source is in Src, destination in Dst
// and protocol in Protos. Ports restrict only protocols that have ports
// (TCP, UDP, SCTP); for the others (ICMP, GRE, ...) the rule matches on
// addresses alone, as in Tailscale. Nothing is admitted that no rule
// admits: an empty list is "deny", never "any".
type FilterRule struct {
	Src    []netip.Prefix `json:"src"`
	Dst    []netip.Prefix `json:"dst"`
	Ports  []PortRange    `json:"ports,omitempty"`
	Protos []uint8        `json:"protos"`
}

// PacketFilter is what coord tells one node to enforce. Inbound covers
// packets from the mesh to the node's own addresses and to the LAN
// prefixes it routes. Forward is only for subnet routers: packets from
// their LANs into the mesh; a LAN host gets nothing from its router's
// identity (security class S1).
type PacketFilter struct {
	Inbound []FilterRule `json:"inbound,omitempty"`
	Forward []FilterRule `json:"forward,omitempty"`
	// Caps are the app capabilities connections to this node carry (the
	// policy's grants with "app"): what `lanmesh whois` reports and what
	// the node's apps may check. They admit no packet; Inbound does.
	Caps []CapGrant `json:"caps,omitempty"`
	// Via steers routed traffic of this node (the policy's grants with
	// "via"): packets to Dst go to one of Peers, the subnet routers the
	// grant names, and not to another router serving the same LAN.
	// Sorted by Dst. They admit no packet either.
	Via []ViaRoute `json:"via,omitempty"`
}

// ViaRoute sends traffic to Dst through one of Peers, sorted by ID: of
// those in its netmap that serve an approved route holding Dst, the
// agent takes the first online one, else the first.
type ViaRoute struct {
	Dst   netip.Prefix `json:"dst"`
	Peers []NodeID     `json:"peers"`
}

// CapMap maps capability names ("example.com/cap/admin") to their
// values, JSON objects copied verbatim from the policy. A node attribute
// (the policy's nodeAttrs "attr") is a name with no values.
type CapMap map[string][]json.RawMessage

// CapGrant gives connections from Src the capabilities in Caps.
type CapGrant struct {
	Src  []netip.Prefix `json:"src"`
	Caps CapMap         `json:"caps"`
}

// CapsFrom returns the capabilities of connections from src: for each
// name, the values of every grant whose Src holds src, in grant order.
// It returns nil when no grant names src.
func (f *PacketFilter) CapsFrom(src netip.Addr) CapMap {
	if f == nil {
		return nil
	}
	var out CapMap
	for _, g := range f.Caps {
		if !PrefixesContain(g.Src, src) {
			continue
		}
		if out == nil {
			out = CapMap{}
		}
		for name, vals := range g.Caps {
			if _, ok := out[name]; !ok {
				out[name] = []json.RawMessage{}
			}
			out[name] = append(out[name], vals...)
		}
	}
	return out
}

// HasPorts reports whether port numbers mean anything for proto.
func HasPorts(proto uint8) bool {
	return proto == ProtoTCP || proto == ProtoUDP || proto == ProtoSCTP
}

// Match reports whether r admits a packet. port is the destination port
// and is ignored for protocols without ports.
func (r FilterRule) Match(src, dst netip.Addr, proto uint8, port uint16) bool {
	if !containsProto(r.Protos, proto) || !PrefixesContain(r.Src, src) || !PrefixesContain(r.Dst, dst) {
		return false
	}
	if !HasPorts(proto) {
		return true
	}
	for _, pr := range r.Ports {
		if pr.First <= port && port <= pr.Last {
			return true
		}
	}
	return false
}

// MatchAny reports whether any rule in rules admits the packet.
func MatchAny(rules []FilterRule, src, dst netip.Addr, proto uint8, port uint16) bool {
	for _, r := range rules {
		if r.Match(src, dst, proto, port) {
			return true
		}
	}
	return false
}

func containsProto(ps []uint8, p uint8) bool {
	for _, x := range ps {
		if x == p {
			return true
		}
	}
	return false
}

// PrefixesContain reports whether any of ps holds a.
func PrefixesContain(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
