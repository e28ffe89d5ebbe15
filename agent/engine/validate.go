package engine

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/lanmesh/lanmesh/agent/router"
	"github.com/lanmesh/lanmesh/internal/key"
)

// Rejected is a peer the engine left out of the device, and why (S19).
type Rejected struct {
	Key    key.NodePublic
	Name   string
	Reason string
}

// multicast ranges are never a peer's unicast allowed IPs.
var multicast = []netip.Prefix{
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("255.255.255.255/32"),
	netip.MustParsePrefix("ff00::/8"),
}

// validatePeers splits cfg.Peers into the peers the device can take and
// the ones it must leave out, so that one bad peer (a duplicate or
// invalid key, an unroutable or stolen prefix) never stops the others
// from being applied (S19). Peers are judged in config order: when two
// claim the same key or prefix, the earlier keeps it (the daemon orders
// peers by node ID, so the older registration wins).
func validatePeers(cfg Config) (ok []Peer, rejected []Rejected) {
	self := cfg.PrivateKey.Public()
	keyOwner := map[key.NodePublic]string{}
	ipOwner := map[netip.Prefix]string{}
	for _, p := range cfg.Peers {
		var err error
		switch {
		case p.Key.IsZero():
			err = errors.New("no node key")
		case p.Key == self:
			err = errors.New("it has this node's own node key")
		case keyOwner[p.Key] != "":
			err = fmt.Errorf("node key %s is already used by peer %q", p.Key.ShortString(), keyOwner[p.Key])
		}
		for _, a := range p.AllowedIPs {
			if err != nil {
				break
			}
			if err = CheckAllowedIP(cfg, p, a); err == nil && ipOwner[a.Masked()] != "" {
				err = fmt.Errorf("allowed IP %v already belongs to peer %q", a, ipOwner[a.Masked()])
			}
		}
		if err != nil {
			rejected = append(rejected, Rejected{Key: p.Key, Name: p.Name, Reason: err.Error()})
			continue
		}
		keyOwner[p.Key] = cmpName(p)
		for _, a := range p.AllowedIPs {
			ipOwner[a.Masked()] = cmpName(p)
		}
		ok = append(ok, p)
	}
	return ok, rejected
}

func cmpName(p Peer) string {
	if p.Name != "" {
		return p.Name
	}
	return p.Key.ShortString()
}

// CheckAllowedIP reports why peer p may not hold the allowed IP a, or
// nil. It is the one place that says which prefixes a peer may claim:
// a default route only when it is an exit route in use (cfg.ExitRoutes), never
// a host-scoped range (S17), multicast, a prefix that overlaps this
// node's own addresses, or one inside a LAN route it advertises.
func CheckAllowedIP(cfg Config, _ Peer, a netip.Prefix) error {
	if !a.IsValid() {
		return fmt.Errorf("allowed IP %v: invalid prefix", a)
	}
	// A default route is the exit node's; validatePeers lets only one
	// peer hold each prefix.
	exit := a.Bits() == 0 && slices.Contains(cfg.ExitRoutes, a.Masked())
	if err := router.CheckRoute(a, exit); err != nil {
		// router says "route P: why"; name it as what it is here.
		why := strings.TrimPrefix(err.Error(), fmt.Sprintf("route %v: ", a.Masked()))
		return fmt.Errorf("allowed IP %v: %s", a, why)
	}
	if exit {
		return nil // a default route covers everything, by design
	}
	for _, m := range multicast {
		if a.Overlaps(m) {
			return fmt.Errorf("allowed IP %v: covers multicast or broadcast range %v", a, m)
		}
	}
	for _, own := range cfg.Addresses {
		if a.Overlaps(own) {
			return fmt.Errorf("allowed IP %v: overlaps this node's own address %v", a, own)
		}
	}
	// A wider prefix around our LAN is fine (the LAN's own route is more
	// specific); one inside it would pull part of the LAN into the mesh.
	for _, lan := range cfg.AdvertisedRoutes {
		// An advertised default route makes this node an exit node: it
		// is the internet, not a LAN a peer could steal.
		if lan.Bits() > 0 && a.Bits() >= lan.Bits() && lan.Contains(a.Addr()) {
			return fmt.Errorf("allowed IP %v: lies inside %v, a LAN this node advertises", a, lan)
		}
	}
	return nil
}

// ValidateConfig is what Reconfig does before it applies anything: it
// returns cfg with only valid peers, and only the routes that
// are safe and still lead somewhere: a route that a left-out peer claimed
// goes with it unless a valid peer's prefix lies inside it (the mesh
// range stays). A route that fails router.CheckRoute on its own is left
// out and named in the error; the rest of cfg still applies.
func ValidateConfig(cfg Config) (Config, []Rejected, error) {
	ok, rejected := validatePeers(cfg)
	var held []netip.Prefix
	for _, p := range ok {
		held = append(held, p.AllowedIPs...)
	}
	dropped := map[netip.Prefix]bool{}
	for _, p := range cfg.Peers {
		for _, a := range p.AllowedIPs {
			if a.IsValid() && !slices.ContainsFunc(held, a.Overlaps) {
				dropped[a.Masked()] = true
			}
		}
	}
	out := cfg
	out.Peers = ok
	out.Routes = make([]netip.Prefix, 0, len(cfg.Routes))
	var errs []error
	for _, r := range cfg.Routes {
		if r.IsValid() && dropped[r.Masked()] {
			continue
		}
		if err := router.CheckRoute(r, false); err != nil {
			errs = append(errs, fmt.Errorf("engine: left out %w", err))
			continue
		}
		out.Routes = append(out.Routes, r)
	}
	if len(cfg.Routes) == 0 {
		out.Routes = cfg.Routes // keep nil as nil (configs compare equal)
	}
	return out, slices.Clip(rejected), errors.Join(errs...)
}
