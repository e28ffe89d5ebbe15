package router

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// routeProtocol marks the routes we install (rtm_protocol), so a diff only
// ever deletes our own routes. 76 is unassigned in iproute2's rt_protos.
const routeProtocol = netlink.RouteProtocol(76)

// Config is the desired state of the mesh interface.
type Config struct {
	Addresses    []netip.Prefix // /32 and /128
	Routes       []netip.Prefix
	Forwarding   bool // this node routes between the mesh and its LANs
	AllowDefault bool // default routes in Routes; refused otherwise
	// Exit is exit-node use: its default routes go into ExitTable behind
	// policy rules (exit_linux.go), never into the main table.
	Exit ExitConfig
}

// Router manages one link. Its methods must run in the link's network
// namespace (netlink sockets are opened per call).
type Router struct {
	name string
	log  *slog.Logger
}

// New sets the link up with the given MTU.
func New(name string, mtu int, log *slog.Logger) (*Router, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("find link %s: %w", name, err)
	}
	if err := netlink.LinkSetMTU(l, mtu); err != nil {
		return nil, fmt.Errorf("set MTU %d on %s: %w", mtu, name, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return nil, fmt.Errorf("set %s up: %w", name, err)
	}
	r := &Router{name: name, log: log.With("component", "router", "link", name)}
	// A crashed agent leaves its routing rules behind (its routes went
	// with its link): start from the host's own routing.
	if err := r.setRules(nil); err != nil {
		return nil, err
	}
	return r, nil
}

// Set makes addresses and routes on the link match cfg: missing ones are
// added, stale ones deleted. Invalid routes are refused before anything
// changes.
func (r *Router) Set(cfg Config) error {
	for _, p := range cfg.Routes {
		if err := CheckRoute(p, cfg.AllowDefault); err != nil {
			return err
		}
	}
	if err := checkExit(cfg.Exit); err != nil {
		return err
	}
	l, err := netlink.LinkByName(r.name)
	if err != nil {
		return fmt.Errorf("find link %s: %w", r.name, err)
	}
	var errs []error
	errs = append(errs, r.setAddrs(l, cfg.Addresses))
	errs = append(errs, r.setRoutes(l, cfg.Routes))
	errs = append(errs, r.setExit(l, cfg.Exit))
	if cfg.Forwarding {
		errs = append(errs, enableForwarding())
	}
	return errors.Join(errs...)
}

func (r *Router) setAddrs(l netlink.Link, want []netip.Prefix) error {
	have, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", r.name, err)
	}
	wantSet := map[netip.Prefix]bool{}
	for _, p := range want {
		wantSet[p] = true
	}
	var errs []error
	for _, a := range have {
		p, ok := prefixOf(a.IPNet)
		if !ok || p.Addr().IsLinkLocalUnicast() || wantSet[p] {
			delete(wantSet, p)
			continue
		}
		if err := netlink.AddrDel(l, &a); err != nil {
			errs = append(errs, fmt.Errorf("delete address %v from %s: %w", p, r.name, err))
		} else {
			r.log.Debug("address removed", "addr", p)
		}
	}
	for p := range wantSet {
		a := &netlink.Addr{IPNet: ipNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD // a point-to-point mesh has no one to collide with
		}
		if err := netlink.AddrReplace(l, a); err != nil {
			errs = append(errs, fmt.Errorf("add address %v to %s: %w", p, r.name, err))
		} else {
			r.log.Debug("address added", "addr", p)
		}
	}
	return errors.Join(errs...)
}

func (r *Router) ourRoutes(l netlink.Link) ([]netlink.Route, error) {
	filter := &netlink.Route{LinkIndex: l.Attrs().Index, Protocol: routeProtocol}
	rs, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_OIF|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return nil, fmt.Errorf("list routes on %s: %w", r.name, err)
	}
	return rs, nil
}

func (r *Router) setRoutes(l netlink.Link, want []netip.Prefix) error {
	have, err := r.ourRoutes(l)
	if err != nil {
		return err
	}
	wantSet := map[netip.Prefix]bool{}
	for _, p := range want {
		wantSet[p.Masked()] = true
	}
	var errs []error
	for _, rt := range have {
		p, ok := prefixOf(rt.Dst)
		if ok && wantSet[p] {
			delete(wantSet, p)
			continue
		}
		if err := netlink.RouteDel(&rt); err != nil {
			errs = append(errs, fmt.Errorf("delete route %v via %s: %w", rt.Dst, r.name, err))
		} else {
			r.log.Debug("route removed", "route", rt.Dst)
		}
	}
	for p := range wantSet {
		rt := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipNet(p), Protocol: routeProtocol, Scope: netlink.SCOPE_LINK}
		if err := netlink.RouteReplace(rt); err != nil {
			errs = append(errs, fmt.Errorf("add route %v via %s: %w", p, r.name, err))
		} else {
			r.log.Debug("route added", "route", p)
		}
	}
	return errors.Join(errs...)
}

// Close removes our rules and routes; the link itself goes with the TUN.
func (r *Router) Close() error {
	errs := []error{r.clearExit()}
	if l, err := netlink.LinkByName(r.name); err == nil { // else gone, and its routes with it
		errs = append(errs, r.setRoutes(l, nil))
	}
	return errors.Join(errs...)
}

// enableForwarding turns on forwarding for the namespace (a subnet router
// needs it). It is never turned off: other services may rely on it.
func enableForwarding() error {
	var errs []error
	for _, f := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
		if err := os.WriteFile(f, []byte("1\n"), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("enable forwarding (%s): %w", f, err))
		}
	}
	return errors.Join(errs...)
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

func ipNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}
