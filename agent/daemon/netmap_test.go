package daemon

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/lanmesh/lanmesh/agent/engine"
	"github.com/lanmesh/lanmesh/agent/state"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

func pfx(s ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(s))
	for i, x := range s {
		out[i] = netip.MustParsePrefix(x)
	}
	return out
}

func node(id wire.NodeID, name string, routes ...string) wire.Node {
	k := key.NewNode().Public()
	return wire.Node{ID: id, Name: name, Key: k,
		Addresses: pfx("100.64.0."+string(rune('0'+id))+"/32", "fd12:3456:789a::"+string(rune('0'+id))+"/128"),
		Endpoints: []netip.AddrPort{netip.MustParseAddrPort("198.18.2." + string(rune('0'+id)) + ":41641")},
		Routes:    pfx(routes...)}
}

func TestNetmapApply(t *testing.T) {
	self, b, c := node(1, "a"), node(2, "b"), node(3, "c")
	var nm netmap
	if _, err := nm.apply(&wire.MapMessage{PeersChanged: []wire.Node{b}}); err == nil {
		t.Fatal("delta before full map accepted")
	}
	if ch, err := nm.apply(&wire.MapMessage{KeepAlive: true}); err != nil || ch {
		t.Fatalf("keepalive before full = %v, %v", ch, err)
	}
	if _, err := nm.apply(&wire.MapMessage{Full: true}); err == nil {
		t.Fatal("full map without self accepted")
	}
	steps := []struct {
		msg     wire.MapMessage
		changed bool
		peers   []string
	}{
		{wire.MapMessage{Seq: 1, Full: true, Self: &self, Domain: "mesh.internal", Peers: []wire.Node{b}}, true, []string{"b"}},
		{wire.MapMessage{Seq: 2, KeepAlive: true}, false, []string{"b"}},
		{wire.MapMessage{Seq: 3, PeersChanged: []wire.Node{c}}, true, []string{"b", "c"}},
		{wire.MapMessage{Seq: 4, PeersRemoved: []wire.NodeID{2}}, true, []string{"c"}},
		{wire.MapMessage{Seq: 5, PeersRemoved: []wire.NodeID{99}}, false, []string{"c"}},
		{wire.MapMessage{Seq: 6, Full: true, Self: &self, Peers: []wire.Node{b}}, true, []string{"b"}},
	}
	for i, s := range steps {
		ch, err := nm.apply(&s.msg)
		if err != nil || ch != s.changed {
			t.Fatalf("step %d: apply = %v, %v; want changed=%v", i, ch, err, s.changed)
		}
		var names []string
		for _, p := range nm.sortedPeers() {
			names = append(names, p.Name)
		}
		if !slices.Equal(names, s.peers) {
			t.Fatalf("step %d: peers %v, want %v", i, names, s.peers)
		}
	}
	if _, err := nm.apply(&wire.MapMessage{Peers: []wire.Node{c}}); err == nil {
		t.Fatal("peers list in a delta accepted")
	}
	if p, ip, err := nm.findPeer("b.mesh.internal"); err != nil || p.ID != 2 || ip.String() != "100.64.0.2" {
		t.Fatalf("findPeer = %v %v %v", p.Name, ip, err)
	}
	if _, _, err := nm.findPeer("100.64.0.9"); err == nil {
		t.Fatal("findPeer found an unknown IP")
	}
}

func TestEngineConfig(t *testing.T) {
	nk := key.NewNode()
	self := node(1, "a")
	self.Key = nk.Public()
	b := node(2, "b", "198.19.2.0/24", "198.19.1.0/24") // 198.19.1.0/24 is also ours
	c := node(3, "c", "198.19.2.0/24", "198.19.3.0/24") // 198.19.2.0/24 overlaps b's
	nm := &netmap{full: true, self: self, peers: map[wire.NodeID]wire.Node{2: b, 3: c, 1: self}}
	tests := []struct {
		name       string
		prefs      state.Prefs
		routes     []netip.Prefix
		allowedB   []netip.Prefix
		allowedC   []netip.Prefix
		advertised []netip.Prefix
	}{
		{"no accept-routes", state.Prefs{SNATSubnetRoutes: true}, pfx("100.64.0.0/10", "fd12:3456:789a::/48"),
			b.Addresses, c.Addresses, nil},
		{"accept-routes", state.Prefs{AcceptRoutes: true, AdvertiseRoutes: pfx("198.19.1.0/24")},
			pfx("100.64.0.0/10", "fd12:3456:789a::/48", "198.19.2.0/24", "198.19.3.0/24"),
			append(slices.Clone(b.Addresses), pfx("198.19.2.0/24")...),
			append(slices.Clone(c.Addresses), pfx("198.19.3.0/24")...),
			pfx("198.19.1.0/24")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := engineConfig(nk, nm, tt.prefs)
			if cfg.PrivateKey != nk || !slices.Equal(cfg.Addresses, self.Addresses) || cfg.SNAT != tt.prefs.SNATSubnetRoutes {
				t.Fatalf("self part wrong: %+v", cfg)
			}
			if !slices.Equal(cfg.Routes, tt.routes) {
				t.Fatalf("Routes = %v, want %v", cfg.Routes, tt.routes)
			}
			if !slices.Equal(cfg.AdvertisedRoutes, tt.advertised) {
				t.Fatalf("AdvertisedRoutes = %v", cfg.AdvertisedRoutes)
			}
			if len(cfg.Peers) != 2 || cfg.Peers[0].Key != b.Key || cfg.Peers[1].Key != c.Key {
				t.Fatalf("Peers = %+v (self must not be a peer)", cfg.Peers)
			}
			if !slices.Equal(cfg.Peers[0].AllowedIPs, tt.allowedB) || !slices.Equal(cfg.Peers[1].AllowedIPs, tt.allowedC) {
				t.Fatalf("AllowedIPs = %v / %v", cfg.Peers[0].AllowedIPs, cfg.Peers[1].AllowedIPs)
			}
			if !slices.Equal(cfg.Peers[0].Endpoints, b.Endpoints) {
				t.Fatalf("Endpoints = %v", cfg.Peers[0].Endpoints)
			}
			if !configEqual(cfg, engineConfig(nk, nm, tt.prefs)) {
				t.Fatal("engineConfig is not deterministic")
			}
		})
	}
}

func TestEndpointFor(t *testing.T) {
	mesh := meshPrefixes(pfx("100.64.0.1/32", "fd12:3456:789a::1/128"))
	for _, tt := range []struct {
		ip string
		ok bool
	}{
		{"198.18.1.2", true}, {"192.168.1.1", true}, {"2001:db8::1", true}, // example data: classified, never sent to
		{"127.0.0.1", false}, {"fe80::1", false}, {"169.254.1.1", false}, {"100.64.0.7", false},
		{"fd12:3456:789a::9", false}, {"224.0.0.1", false},
	} {
		_, ok := endpointFor(netip.MustParseAddr(tt.ip), 41641, mesh)
		if ok != tt.ok {
			t.Errorf("endpointFor(%s) = %v, want %v", tt.ip, ok, tt.ok)
		}
	}
}

func TestNetmapFilterAndDERPMap(t *testing.T) {
	self := node(1, "a")
	f1, f2 := &wire.PacketFilter{}, &wire.PacketFilter{Inbound: []wire.FilterRule{{}}}
	good := &wire.DERPMap{Regions: []wire.DERPRegion{{ID: 1, Code: "x", Nodes: []wire.DERPNode{{Name: "1", HostName: "relay"}}}}}
	bad := &wire.DERPMap{Regions: []wire.DERPRegion{{ID: 0}}}
	var nm netmap
	if _, err := nm.apply(&wire.MapMessage{Full: true, Self: &self, PacketFilter: f1, DERPMap: good}); err != nil || nm.filter != f1 || nm.derp != good {
		t.Fatalf("full map: %v, filter %p derp %p", err, nm.filter, nm.derp)
	}
	if ch, _ := nm.apply(&wire.MapMessage{Seq: 2, KeepAlive: true}); ch || nm.filter != f1 {
		t.Fatal("keepalive changed the filter")
	}
	if ch, _ := nm.apply(&wire.MapMessage{Seq: 3, PacketFilter: f2}); !ch || nm.filter != f2 || nm.derp != good {
		t.Fatal("delta filter not applied")
	}
	if _, err := nm.apply(&wire.MapMessage{Seq: 4, DERPMap: bad}); err == nil || nm.derp != good {
		t.Fatalf("invalid DERP map accepted: %v", err)
	}
	// A new full map without a filter is deny-all again (S14).
	if _, err := nm.apply(&wire.MapMessage{Full: true, Self: &self}); err != nil || nm.filter != nil {
		t.Fatal("full map without filter kept the old one")
	}
}

// TestEngineConfigVia: a grant's via steers a LAN that two routers serve
// to the named one (the other would drop it), online before offline;
// without via the lower ID keeps it.
func TestEngineConfigVia(t *testing.T) {
	nk := key.NewNode()
	self := node(1, "a")
	self.Key = nk.Public()
	r2 := node(2, "r2", "198.19.1.0/24")
	r3 := node(3, "r3", "198.19.1.0/24")
	r4 := node(4, "r4", "198.19.1.0/24")
	r2.Online, r3.Online, r4.Online = true, false, true
	nm := &netmap{full: true, self: self, peers: map[wire.NodeID]wire.Node{2: r2, 3: r3, 4: r4}, filter: &wire.PacketFilter{}}
	lan := pfx("198.19.1.0/24")[0]
	host := pfx("198.19.1.20/32")[0]
	routesOf := func(cfg engine.Config, name string) []netip.Prefix {
		for _, p := range cfg.Peers {
			if p.Name == name {
				var out []netip.Prefix
				for _, a := range p.AllowedIPs {
					if !meshRange.Overlaps(a) && a.Addr().Is4() {
						out = append(out, a)
					}
				}
				return out
			}
		}
		t.Fatalf("no peer %s", name)
		return nil
	}
	prefs := state.Prefs{AcceptRoutes: true}
	cfg := engineConfig(nk, nm, prefs)
	if got := routesOf(cfg, "r2"); !slices.Equal(got, []netip.Prefix{lan}) {
		t.Fatalf("without via, r2 (lowest ID) has %v", got)
	}
	// via [3, 4]: r3 is offline, so r4; r2 loses the LAN.
	nm.filter.Via = []wire.ViaRoute{{Dst: lan, Peers: []wire.NodeID{3, 4}}, {Dst: host, Peers: []wire.NodeID{3}}}
	cfg = engineConfig(nk, nm, prefs)
	if got := routesOf(cfg, "r4"); !slices.Equal(got, []netip.Prefix{lan}) {
		t.Errorf("via: r4 has %v, want %v", got, lan)
	}
	if got := routesOf(cfg, "r2"); len(got) != 0 {
		t.Errorf("via: r2 still has %v", got)
	}
	// A host route through the only via router, offline or not.
	if got := routesOf(cfg, "r3"); !slices.Equal(got, []netip.Prefix{host}) {
		t.Errorf("via host: r3 has %v", got)
	}
	if !slices.Contains(cfg.Routes, host) || !slices.Contains(cfg.Routes, lan) {
		t.Errorf("routes %v", cfg.Routes)
	}
	if _, rej, err := engine.ValidateConfig(cfg); len(rej) != 0 || err != nil {
		t.Errorf("the data plane refuses the via config: %v %v", rej, err)
	}
	// Without accept-routes nothing is routed; a via LAN this node
	// advertises stays local; a via peer that does not serve the LAN
	// gets nothing.
	if got := routesOf(engineConfig(nk, nm, state.Prefs{}), "r4"); len(got) != 0 {
		t.Errorf("no accept-routes: r4 has %v", got)
	}
	if got := routesOf(engineConfig(nk, nm, state.Prefs{AcceptRoutes: true, AdvertiseRoutes: pfx("198.19.0.0/16")}), "r4"); len(got) != 0 {
		t.Errorf("own LAN: r4 has %v", got)
	}
	nm.filter.Via = []wire.ViaRoute{{Dst: pfx("198.19.9.0/24")[0], Peers: []wire.NodeID{4}}}
	if got := routesOf(engineConfig(nk, nm, prefs), "r4"); len(got) != 0 {
		t.Errorf("a LAN r4 does not serve: %v", got)
	}
}
