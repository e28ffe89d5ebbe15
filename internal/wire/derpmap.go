package wire

import (
	"errors"
	"fmt"
	"net/netip"
)

// DERPMap lists the relays (with their STUN servers) nodes may use. Coord
// puts it in the netmap; agents use it for relay fallback and netcheck.
type DERPMap struct {
	Regions []DERPRegion `json:"regions"`
}

// DERPRegion is a group of relays in one place; a node picks one home
// region (lowest STUN latency) and reaches peers through that.
type DERPRegion struct {
	ID    int        `json:"id"`   // unique, > 0
	Code  string     `json:"code"` // short, e.g. "fra"
	Name  string     `json:"name"` // human, e.g. "Frankfurt"
	Nodes []DERPNode `json:"nodes"`
	// Embedded marks coord's own relay, which runs inside lanmesh-coord
	// and so stops while coord is down (agents say so in status). Only
	// coord sets it; a --derp-map file may not.
	Embedded bool `json:"embedded,omitempty"`
}

// DERPNode is one relay server.
type DERPNode struct {
	Name     string `json:"name"`
	HostName string `json:"host_name"` // TLS name and dial target without IPs
	// IPv4/IPv6, when valid, are dialled instead of resolving HostName.
	IPv4     netip.Addr `json:"ipv4,omitzero"`
	IPv6     netip.Addr `json:"ipv6,omitzero"`
	DERPPort int        `json:"derp_port,omitempty"` // 0 means 443
	STUNPort int        `json:"stun_port,omitempty"` // 0 means 3478; -1 means no STUN
	// CertFingerprint pins a self-signed relay certificate (Fingerprint of
	// its DER); empty means verify against the system roots.
	CertFingerprint string `json:"cert_fingerprint,omitempty"`
}

// Validate reports the first problem in m, naming the region and node.
func (m *DERPMap) Validate() error {
	seen := map[int]bool{}
	for i, r := range m.Regions {
		if r.ID <= 0 {
			return fmt.Errorf("derp map: region %d (%q): id must be > 0", i, r.Code)
		}
		if seen[r.ID] {
			return fmt.Errorf("derp map: region id %d used twice", r.ID)
		}
		seen[r.ID] = true
		if len(r.Nodes) == 0 {
			return fmt.Errorf("derp map: region %d has no nodes", r.ID)
		}
		for _, n := range r.Nodes {
			if n.HostName == "" && !n.IPv4.IsValid() && !n.IPv6.IsValid() {
				return fmt.Errorf("derp map: region %d node %q: needs host_name or an address", r.ID, n.Name)
			}
			if n.IPv4.IsValid() && !n.IPv4.Is4() {
				return fmt.Errorf("derp map: region %d node %q: ipv4 %s is not IPv4", r.ID, n.Name, n.IPv4)
			}
			if n.IPv6.IsValid() && (!n.IPv6.Is6() || n.IPv6.Is4In6()) {
				return fmt.Errorf("derp map: region %d node %q: ipv6 %s is not IPv6", r.ID, n.Name, n.IPv6)
			}
			if n.DERPPort < 0 || n.DERPPort > 65535 || n.STUNPort < -1 || n.STUNPort > 65535 {
				return fmt.Errorf("derp map: region %d node %q: port out of range", r.ID, n.Name)
			}
			if n.CertFingerprint != "" {
				if _, err := ParseFingerprint(n.CertFingerprint); err != nil {
					return fmt.Errorf("derp map: region %d node %q: %w", r.ID, n.Name, err)
				}
			}
		}
	}
	return nil
}

// URL is the relay URL for Connect, e.g. "https://relay.example:8443/derp".
func (n DERPNode) URL() string {
	host := n.HostName
	if host == "" {
		if n.IPv4.IsValid() {
			host = n.IPv4.String()
		} else {
			host = "[" + n.IPv6.String() + "]"
		}
	} else if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
		host = "[" + host + "]"
	}
	if n.DERPPort != 0 && n.DERPPort != 443 {
		host = fmt.Sprintf("%s:%d", host, n.DERPPort)
	}
	return "https://" + host + "/derp"
}

// STUNAddrs are the node's STUN server addresses (none if STUN is off or
// the node has only a host name, which the caller resolves).
func (n DERPNode) STUNAddrs() []netip.AddrPort {
	if n.STUNPort < 0 {
		return nil
	}
	port := uint16(n.STUNPort)
	if port == 0 {
		port = 3478
	}
	var out []netip.AddrPort
	for _, a := range []netip.Addr{n.IPv4, n.IPv6} {
		if a.IsValid() {
			out = append(out, netip.AddrPortFrom(a, port))
		}
	}
	return out
}

var errNoRegion = errors.New("derp map: no such region")

// Region returns the region with id.
func (m *DERPMap) Region(id int) (DERPRegion, error) {
	for _, r := range m.Regions {
		if r.ID == id {
			return r, nil
		}
	}
	return DERPRegion{}, fmt.Errorf("%w: %d", errNoRegion, id)
}
