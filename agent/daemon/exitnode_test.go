package daemon

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/lanmesh/lanmesh/agent/state"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// TestEngineConfigExitNode: default routes reach only the selected exit
// node's AllowedIPs (never the main table, never an --accept-routes
// peer), both families are routed into the mesh while an exit node is
// selected, and an exit node that is gone keeps the routing (drop,
// never leak) without any peer carrying the default routes.
func TestEngineConfigExitNode(t *testing.T) {
	nk := key.NewNode()
	self := node(1, "a")
	self.Key = nk.Public()
	b := node(2, "b", "198.19.2.0/24", "0.0.0.0/0", "::/0") // exit node
	c := node(3, "c", "0.0.0.0/0")                          // another, IPv4 only
	d := node(4, "d", "198.19.4.0/24")                      // no exit route
	nm := &netmap{full: true, self: self, peers: map[wire.NodeID]wire.Node{1: self, 2: b, 3: c, 4: d}}
	both := pfx("0.0.0.0/0", "::/0")
	tests := []struct {
		name      string
		prefs     state.Prefs
		exitPeer  wire.NodeID // whose AllowedIPs carry default routes (0: none)
		exitVia   []netip.Prefix
		exitRoute []netip.Prefix // cfg.ExitRoutes
	}{
		{"accept-routes, no exit node", state.Prefs{AcceptRoutes: true}, 0, nil, nil},
		{"exit node by name", state.Prefs{AcceptRoutes: true, ExitNode: "b"}, 2, both, both},
		{"exit node by IP, IPv4 only", state.Prefs{ExitNode: "100.64.0.3", ExitNodeAllowLANAccess: true}, 3, pfx("0.0.0.0/0"), both},
		{"exit node without an exit route", state.Prefs{ExitNode: "d"}, 0, nil, both},
		{"exit node gone", state.Prefs{ExitNode: "zz"}, 0, nil, both},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := engineConfig(nk, nm, tt.prefs)
			for _, r := range cfg.Routes {
				if r.Bits() == 0 {
					t.Fatalf("default route %v in the main table's Routes %v", r, cfg.Routes)
				}
			}
			if !slices.Equal(cfg.ExitRoutes, tt.exitRoute) || cfg.ExitAllowLAN != tt.prefs.ExitNodeAllowLANAccess {
				t.Fatalf("ExitRoutes = %v (allow LAN %v), want %v", cfg.ExitRoutes, cfg.ExitAllowLAN, tt.exitRoute)
			}
			for i, p := range cfg.Peers {
				var defaults []netip.Prefix
				for _, a := range p.AllowedIPs {
					if a.Bits() == 0 {
						defaults = append(defaults, a)
					}
				}
				want := []netip.Prefix(nil)
				if nm.sortedPeers()[i+1].ID == tt.exitPeer {
					want = tt.exitVia
				}
				if !slices.Equal(defaults, want) {
					t.Errorf("peer %s carries default routes %v, want %v", p.Name, defaults, want)
				}
			}
			if configEqual(cfg, engineConfig(nk, nm, state.Prefs{AcceptRoutes: true})) != (tt.exitRoute == nil) {
				t.Error("configEqual does not see the exit node")
			}
		})
	}
}

func TestCheckExitPrefs(t *testing.T) {
	nm := &netmap{full: true, peers: map[wire.NodeID]wire.Node{
		2: node(2, "b", "0.0.0.0/0", "::/0"), 4: node(4, "d", "198.19.4.0/24")}}
	for _, tt := range []struct {
		prefs state.Prefs
		nm    *netmap
		err   string // "" for none
	}{
		{state.Prefs{ExitNode: "b"}, nm, ""},
		{state.Prefs{ExitNode: "100.64.0.2"}, nm, ""},
		{state.Prefs{ExitNode: "d"}, nm, "offers no approved exit route"},
		{state.Prefs{ExitNode: "zz"}, nm, "exit nodes: b"},
		{state.Prefs{ExitNode: "zz"}, nil, ""}, // no netmap yet: checked later
		{state.Prefs{ExitNode: "b", AdvertiseExitNode: true}, nm, "cannot use another"},
		{state.Prefs{AdvertiseRoutes: pfx("0.0.0.0/0")}, nm, "--advertise-exit-node"},
		{state.Prefs{AdvertiseExitNode: true}, nm, ""},
	} {
		err := checkExitPrefs(tt.prefs, tt.nm)
		if (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("checkExitPrefs(%+v) = %v, want %q", tt.prefs, err, tt.err)
		}
	}
	if got := advertisedRoutes(state.Prefs{AdvertiseRoutes: pfx("198.19.1.0/24"), AdvertiseExitNode: true}); !slices.Equal(got, pfx("198.19.1.0/24", "0.0.0.0/0", "::/0")) {
		t.Errorf("advertisedRoutes = %v", got)
	}
}
