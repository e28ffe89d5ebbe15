package daemon

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/lanmesh/lanmesh/agent/localapi"
	"github.com/lanmesh/lanmesh/agent/state"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// Exit nodes (docs/exit-nodes.md). A router offers both default routes
// with --advertise-exit-node; coord approves them (routes approve or
// autoApprovers.exitNode) and grants their use with autogroup:internet.
// A client picks one with --exit-node: both families then go into the
// mesh through policy routing (agent/router/exit_linux.go), and only the
// selected peer gets the default routes in its AllowedIPs. A family the
// exit node does not offer, or an exit node that is gone, drops that
// traffic instead of sending it around the tunnel (fail closed).

var (
	exitV4 = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	exitV6 = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
)

// advertisedRoutes is what this node offers the mesh: its LANs and, as
// an exit node, both default routes.
func advertisedRoutes(p state.Prefs) []netip.Prefix {
	out := slices.Clone(p.AdvertiseRoutes)
	if p.AdvertiseExitNode {
		out = appendUnique(appendUnique(out, exitV4), exitV6)
	}
	return out
}

// exitRoutesOf are the approved default routes a peer offers.
func exitRoutesOf(p wire.Node) []netip.Prefix {
	var out []netip.Prefix
	for _, r := range p.Routes {
		if r.IsValid() && r.Bits() == 0 && !r.Addr().Is4In6() {
			out = appendUnique(out, r.Masked())
		}
	}
	return out
}

// exitSelection is prefs.ExitNode resolved against a netmap.
type exitSelection struct {
	peer   wire.Node      // ID 0: no such peer
	ip     netip.Addr     // the peer's mesh IP
	routes []netip.Prefix // the approved default routes it offers
	reason string         // why it is not usable; "" when it is
}

func (s exitSelection) active() bool { return s.reason == "" }

// selectExit resolves the exit node the user asked for; ok is false when
// none was asked for. nm may be nil (no netmap yet).
func selectExit(nm *netmap, prefs state.Prefs) (sel exitSelection, ok bool) {
	if prefs.ExitNode == "" {
		return sel, false
	}
	if nm == nil {
		sel.reason = "no netmap yet"
		return sel, true
	}
	p, ip, err := nm.findPeer(prefs.ExitNode)
	if err != nil {
		sel.reason = err.Error()
		return sel, true
	}
	sel.peer, sel.ip, sel.routes = p, ip, exitRoutesOf(p)
	if len(sel.routes) == 0 {
		sel.reason = fmt.Sprintf("%s offers no approved exit route (lanmesh up --advertise-exit-node on it, then lanmesh-coord routes approve %s 0.0.0.0/0 ::/0)", p.Name, p.Name)
	}
	return sel, true
}

// checkExitPrefs refuses combinations that cannot work, before anything
// is stored. With a netmap at hand it also checks that the chosen exit
// node exists and offers an approved exit route.
func checkExitPrefs(p state.Prefs, nm *netmap) error {
	for _, r := range p.AdvertiseRoutes {
		if r.Bits() == 0 {
			return localapi.BadRequest("--advertise-routes: %v is a default route; use --advertise-exit-node to offer this node as an exit node", r)
		}
	}
	if p.ExitNode == "" {
		return nil
	}
	if p.AdvertiseExitNode {
		return localapi.BadRequest("--exit-node: this node advertises itself as an exit node; it cannot use another at the same time (lanmesh up --advertise-exit-node=false first)")
	}
	if nm == nil {
		return nil // checked when the netmap arrives; status shows why it is not active
	}
	sel, _ := selectExit(nm, p)
	if sel.active() {
		return nil
	}
	var names []string
	for _, peer := range nm.sortedPeers() {
		if len(exitRoutesOf(peer)) > 0 {
			names = append(names, peer.Name)
		}
	}
	offers := "no peer offers an approved exit route"
	if len(names) > 0 {
		offers = "exit nodes: " + strings.Join(names, ", ")
	}
	return localapi.BadRequest("--exit-node %s: %s (%s; lanmesh exit-node list)", p.ExitNode, sel.reason, offers)
}

// exitStatusLocked fills status's exit-node view.
func (d *Daemon) exitStatusLocked(s *localapi.Status) {
	if !d.st.Joined() {
		return
	}
	sel, ok := selectExit(d.nm, d.st.Prefs)
	for i := range s.Peers {
		p := &s.Peers[i]
		p.ExitNodeOption = slices.ContainsFunc(p.Routes, func(r netip.Prefix) bool { return r.Bits() == 0 })
		p.ExitNode = ok && sel.peer.ID != 0 && p.ID == int64(sel.peer.ID)
	}
	if !ok {
		return
	}
	es := &localapi.ExitNodeStatus{Selected: d.st.Prefs.ExitNode, ID: int64(sel.peer.ID), Name: sel.peer.Name,
		Active: sel.active(), Routes: nonNil(sel.routes), AllowLANAccess: d.st.Prefs.ExitNodeAllowLANAccess, Reason: sel.reason}
	if sel.ip.IsValid() {
		es.IP = sel.ip.String()
	}
	s.ExitNode = es
}
