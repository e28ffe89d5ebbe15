package daemon

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"

	"github.com/lanmesh/lanmesh/agent/engine"
	"github.com/lanmesh/lanmesh/agent/state"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// meshRange is the CGNAT range the mesh's IPv4 addresses come from.
var meshRange = netip.MustParsePrefix("100.64.0.0/10")

// netmap is the node's view of the mesh, built from one netmap stream: a
// full map, then deltas. A new stream starts a new netmap.
type netmap struct {
	full   bool
	seq    int64
	self   wire.Node
	domain string
	peers  map[wire.NodeID]wire.Node
	// filter and derp are kept from the full map and replaced whenever a
	// message carries a new one. A nil filter means deny-all (S14).
	filter *wire.PacketFilter
	derp   *wire.DERPMap
}

// apply folds one stream message into nm and reports whether anything the
// data plane cares about may have changed.
func (nm *netmap) apply(m *wire.MapMessage) (bool, error) {
	if m.Full {
		if m.Self == nil {
			return false, errors.New("netmap: full map without self")
		}
		if m.DERPMap != nil {
			if err := m.DERPMap.Validate(); err != nil {
				return false, fmt.Errorf("netmap: %w", err)
			}
		}
		nm.full = true
		nm.filter, nm.derp = m.PacketFilter, m.DERPMap
		nm.peers = make(map[wire.NodeID]wire.Node, len(m.Peers))
		for _, p := range m.Peers {
			nm.peers[p.ID] = p
		}
	} else if !nm.full {
		if m.KeepAlive && m.Self == nil && len(m.PeersChanged) == 0 && len(m.PeersRemoved) == 0 {
			return false, nil
		}
		return false, errors.New("netmap: delta before the full map")
	} else if len(m.Peers) > 0 {
		return false, errors.New("netmap: peers list in a delta (only a full map carries one)")
	}
	if !m.Full && m.DERPMap != nil {
		if err := m.DERPMap.Validate(); err != nil {
			return false, fmt.Errorf("netmap: %w", err)
		}
		nm.derp = m.DERPMap
	}
	nm.seq = m.Seq
	changed := m.Full || m.PacketFilter != nil || m.DERPMap != nil
	if m.PacketFilter != nil {
		nm.filter = m.PacketFilter
	}
	if m.Self != nil {
		nm.self = *m.Self
		changed = true
	}
	if m.Domain != "" {
		changed = changed || nm.domain != m.Domain
		nm.domain = m.Domain
	}
	for _, p := range m.PeersChanged {
		nm.peers[p.ID] = p
		changed = true
	}
	for _, id := range m.PeersRemoved {
		if _, ok := nm.peers[id]; ok {
			delete(nm.peers, id)
			changed = true
		}
	}
	return changed, nil
}

// fullMessage is nm as one full map message: the netmap cache's form,
// so loading the cache runs the same code (and checks) as the stream.
func (nm *netmap) fullMessage() *wire.MapMessage {
	self := nm.self
	return &wire.MapMessage{Seq: nm.seq, Full: true, Self: &self, Domain: nm.domain,
		Peers: nm.sortedPeers(), PacketFilter: nm.filter, DERPMap: nm.derp}
}

// sortedPeers returns the peers ordered by ID, so configs are stable.
func (nm *netmap) sortedPeers() []wire.Node {
	out := make([]wire.Node, 0, len(nm.peers))
	for _, p := range nm.peers {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b wire.Node) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// engineConfig turns the netmap and the user's prefs into the data plane's
// desired state.
func engineConfig(nodeKey key.NodePrivate, nm *netmap, prefs state.Prefs) engine.Config {
	cfg := engine.Config{
		PrivateKey:       nodeKey,
		Addresses:        slices.Clone(nm.self.Addresses),
		AdvertisedRoutes: advertisedRoutes(prefs),
		SNAT:             prefs.SNATSubnetRoutes,
		Routes:           []netip.Prefix{meshRange},
		Filter:           nm.filter,
		DERPMap:          nm.derp,
	}
	for _, a := range nm.self.Addresses {
		if a.Addr().Is6() {
			cfg.Routes = appendUnique(cfg.Routes, netip.PrefixFrom(a.Addr(), 48).Masked())
		}
	}
	exit, useExit := selectExit(nm, prefs)
	if useExit {
		// Both families, whatever the exit node offers: a family it does
		// not carry is dropped in the mesh, not sent around it.
		cfg.ExitRoutes = []netip.Prefix{exitV4, exitV6}
		cfg.ExitAllowLAN = prefs.ExitNodeAllowLANAccess
	}
	selfKey := nodeKey.Public()
	// WireGuard's AllowedIPs cannot overlap between peers; when two peers
	// are approved for the same route the lower ID keeps it, so the choice
	// is stable across netmaps.
	taken := map[netip.Prefix]bool{}
	var via map[wire.NodeID][]netip.Prefix
	if prefs.AcceptRoutes {
		via = viaRoutes(nm, prefs, taken)
	}
	for _, p := range nm.sortedPeers() {
		if p.Key.IsZero() || p.Key == selfKey || len(p.Addresses) == 0 {
			continue
		}
		ep := engine.Peer{
			Key:        p.Key,
			Name:       p.Name,
			AllowedIPs: slices.Clone(p.Addresses),
			Endpoints:  slices.Clone(p.Endpoints),
			HomeRegion: p.HomeRegion,
		}
		for _, r := range via[p.ID] {
			ep.AllowedIPs = append(ep.AllowedIPs, r)
			cfg.Routes = appendUnique(cfg.Routes, r)
		}
		if prefs.AcceptRoutes {
			for _, r := range p.Routes {
				r = r.Masked()
				if r.Bits() == 0 {
					continue // exit routes only through the selected exit node
				}
				if taken[r] || slices.Contains(prefs.AdvertiseRoutes, r) {
					continue
				}
				taken[r] = true
				ep.AllowedIPs = append(ep.AllowedIPs, r)
				cfg.Routes = appendUnique(cfg.Routes, r)
			}
		}
		if useExit && exit.active() && p.ID == exit.peer.ID {
			ep.AllowedIPs = append(ep.AllowedIPs, exit.routes...)
		}
		cfg.Peers = append(cfg.Peers, ep)
	}
	return cfg
}

// viaRoutes picks, for each of the filter's via routes, the peer that
// carries it: the first listed peer that serves an approved route
// holding the destination, online ones before offline ones. The
// destinations it assigns are marked taken, so no other peer gets the
// same prefix; one inside a LAN this node advertises stays local.
func viaRoutes(nm *netmap, prefs state.Prefs, taken map[netip.Prefix]bool) map[wire.NodeID][]netip.Prefix {
	if nm.filter == nil || len(nm.filter.Via) == 0 {
		return nil
	}
	serves := func(p wire.Node, dst netip.Prefix) bool {
		for _, r := range p.Routes {
			if r.Bits() > 0 && r.Bits() <= dst.Bits() && r.Contains(dst.Addr()) {
				return true
			}
		}
		return false
	}
	out := map[wire.NodeID][]netip.Prefix{}
	for _, v := range nm.filter.Via {
		dst := v.Dst.Masked()
		if !dst.IsValid() || dst.Bits() == 0 || taken[dst] || slices.ContainsFunc(prefs.AdvertiseRoutes, func(lan netip.Prefix) bool {
			return lan.Bits() > 0 && lan.Overlaps(dst)
		}) {
			continue
		}
		var pick *wire.Node
		for _, id := range v.Peers {
			p, ok := nm.peers[id]
			if !ok || p.Key.IsZero() || !serves(p, dst) {
				continue
			}
			if pick == nil || p.Online && !pick.Online {
				pick = &p
			}
			if pick.Online {
				break
			}
		}
		if pick != nil {
			taken[dst] = true
			out[pick.ID] = append(out[pick.ID], dst)
		}
	}
	return out
}

func appendUnique(s []netip.Prefix, p netip.Prefix) []netip.Prefix {
	if slices.Contains(s, p) {
		return s
	}
	return append(s, p)
}

// configEqual reports whether two engine configs are the same, so an
// unchanged netmap costs no Reconfig.
func configEqual(a, b engine.Config) bool {
	if !a.PrivateKey.Equal(b.PrivateKey) || a.SNAT != b.SNAT || a.ExitAllowLAN != b.ExitAllowLAN ||
		!slices.Equal(a.ExitRoutes, b.ExitRoutes) ||
		!slices.Equal(a.Addresses, b.Addresses) || !slices.Equal(a.Routes, b.Routes) ||
		!slices.Equal(a.AdvertisedRoutes, b.AdvertisedRoutes) || len(a.Peers) != len(b.Peers) ||
		!reflect.DeepEqual(a.Filter, b.Filter) || !reflect.DeepEqual(a.DERPMap, b.DERPMap) {
		return false
	}
	for i := range a.Peers {
		p, q := a.Peers[i], b.Peers[i]
		if p.Key != q.Key || p.Name != q.Name || !slices.Equal(p.AllowedIPs, q.AllowedIPs) || !slices.Equal(p.Endpoints, q.Endpoints) {
			return false
		}
	}
	return true
}

// findPeer resolves a ping target: a peer's name (bare or with the mesh
// domain) or one of its mesh addresses.
func (nm *netmap) findPeer(target string) (wire.Node, netip.Addr, error) {
	if ip, err := netip.ParseAddr(target); err == nil {
		for _, p := range nm.peers {
			for _, a := range p.Addresses {
				if a.Addr() == ip {
					return p, ip, nil
				}
			}
		}
		return wire.Node{}, netip.Addr{}, fmt.Errorf("no peer has the mesh address %s", ip)
	}
	for _, p := range nm.sortedPeers() {
		if p.Name == target || (nm.domain != "" && p.Name+"."+nm.domain == target) {
			for _, a := range p.Addresses {
				if a.Addr().Is4() {
					return p, a.Addr(), nil
				}
			}
			if len(p.Addresses) > 0 {
				return p, p.Addresses[0].Addr(), nil
			}
			return wire.Node{}, netip.Addr{}, fmt.Errorf("peer %s has no mesh address", p.Name)
		}
	}
	return wire.Node{}, netip.Addr{}, fmt.Errorf("no peer named %q in the netmap", target)
}
