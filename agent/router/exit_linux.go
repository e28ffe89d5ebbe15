package router

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/lanmesh/lanmesh/internal/sockmark"
)

// Exit-node use is policy routing, as real clients do it: the default
// route lives in a table of its own, and rules decide who may use it.
//
//	7700: fwmark 0x770000/0xff0000 lookup main   the agent's own sockets (internal/sockmark)
//	7710: to <LAN prefix> lookup 7700            each connected LAN, without AllowLAN
//	7720: lookup main suppress_prefixlength 0    every main route but its default
//	7730: lookup 7700                            default dev <mesh>
//
// so the agent's UDP, coord and relay connections keep the main table's
// default route (nothing loops into the tunnel that carries it), routes
// more specific than a default (the mesh ranges, subnet routes, static
// routes) keep working, and the rest goes to the exit node. Rules and
// routes carry routeProtocol, so removing them touches nothing else.
// docs/exit-nodes.md explains the numbers.
const (
	ExitTable       = 7700
	prioMark        = 7700
	prioLAN         = 7710
	prioSuppress    = 7720
	prioExit        = 7730
	firstPrio       = prioMark
	lastPrio        = prioExit
	exitRouteMetric = 0
)

// ExitConfig is exit-node use on this node (the client side).
type ExitConfig struct {
	// Routes are the default routes the exit node offers and coord
	// approved: 0.0.0.0/0, ::/0 or both. Empty turns exit-node use off.
	Routes []netip.Prefix
	// AllowLAN keeps directly connected LANs out of the tunnel
	// (--exit-node-allow-lan-access); without it they go through it.
	AllowLAN bool
}

func (c ExitConfig) has(is4 bool) bool {
	for _, p := range c.Routes {
		if p.Bits() == 0 && p.Addr().Is4() == is4 {
			return true
		}
	}
	return false
}

// checkExit refuses anything but default routes in c.
func checkExit(c ExitConfig) error {
	for _, p := range c.Routes {
		if !p.IsValid() || p.Bits() != 0 || p.Addr().Is4In6() {
			return fmt.Errorf("exit route %v: only 0.0.0.0/0 and ::/0 go through an exit node", p)
		}
	}
	return nil
}

// setExit makes our rules and the exit table match c.
func (r *Router) setExit(l netlink.Link, c ExitConfig) error {
	var want []netlink.Rule
	var wantRoutes []netip.Prefix
	for _, is4 := range []bool{true, false} {
		if !c.has(is4) {
			continue
		}
		fam := unix.AF_INET6
		def := netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		if is4 {
			fam, def = unix.AF_INET, netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		}
		wantRoutes = append(wantRoutes, def)
		mask := sockmark.Mask
		mark := rule(fam, prioMark, unix.RT_TABLE_MAIN)
		mark.Mark, mark.Mask = sockmark.Mark, &mask
		want = append(want, mark)
		if !c.AllowLAN {
			lans, err := r.connectedLANs(l, fam)
			if err != nil {
				return err
			}
			for _, p := range lans {
				lr := rule(fam, prioLAN, ExitTable)
				lr.Dst = ipNet(p)
				want = append(want, lr)
			}
		}
		sup := rule(fam, prioSuppress, unix.RT_TABLE_MAIN)
		sup.SuppressPrefixlen = 0
		want = append(want, sup)
		want = append(want, rule(fam, prioExit, ExitTable))
	}
	// Routes first when turning on, rules first when turning off: the
	// rules never point at an empty table for longer than needed.
	errs := []error{r.setExitRoutes(l, wantRoutes), r.setRules(want)}
	return errors.Join(errs...)
}

func rule(family, prio, table int) netlink.Rule {
	r := *netlink.NewRule()
	r.Family, r.Priority, r.Table, r.Protocol = family, prio, table, uint8(routeProtocol)
	return r
}

// ourRules lists the rules this package installs (by protocol and
// priority), including those a crashed agent left behind.
func ourRules() ([]netlink.Rule, error) {
	var out []netlink.Rule
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		rs, err := netlink.RuleList(fam)
		if err != nil {
			return nil, fmt.Errorf("list routing rules: %w", err)
		}
		for _, ru := range rs {
			if ru.Priority >= firstPrio && ru.Priority <= lastPrio && ru.Protocol == uint8(routeProtocol) {
				ru.Family = fam
				out = append(out, ru)
			}
		}
	}
	return out, nil
}

// ruleKey is what makes two of our rules the same.
func ruleKey(ru netlink.Rule) string {
	dst := ""
	if ru.Dst != nil {
		dst = ru.Dst.String()
	}
	return fmt.Sprintf("%d/%d/%d/%s/%x/%d", ru.Family, ru.Priority, ru.Table, dst, ru.Mark, ru.SuppressPrefixlen)
}

func (r *Router) setRules(want []netlink.Rule) error {
	have, err := ourRules()
	if err != nil {
		return err
	}
	wantSet := map[string]netlink.Rule{}
	for _, ru := range want {
		wantSet[ruleKey(ru)] = ru
	}
	var errs []error
	for _, ru := range have {
		k := ruleKey(ru)
		if _, ok := wantSet[k]; ok {
			delete(wantSet, k)
			continue
		}
		if err := netlink.RuleDel(&ru); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("delete routing rule %v: %w", ru, err))
		} else {
			r.log.Debug("routing rule removed", "rule", ru.String())
		}
	}
	// Add in priority order, so the mark rule exists before the rule
	// that would send the agent's own packets into the mesh.
	add := make([]netlink.Rule, 0, len(wantSet))
	for _, ru := range wantSet {
		add = append(add, ru)
	}
	slices.SortFunc(add, func(a, b netlink.Rule) int { return a.Priority - b.Priority })
	for _, ru := range add {
		if err := netlink.RuleAdd(&ru); err != nil {
			errs = append(errs, fmt.Errorf("add routing rule %v: %w", ru, err))
		} else {
			r.log.Debug("routing rule added", "rule", ru.String())
		}
	}
	return errors.Join(errs...)
}

func (r *Router) setExitRoutes(l netlink.Link, want []netip.Prefix) error {
	filter := &netlink.Route{Table: ExitTable, Protocol: routeProtocol}
	have, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return fmt.Errorf("list routes in table %d: %w", ExitTable, err)
	}
	var errs []error
	wantSet := map[netip.Prefix]bool{}
	for _, p := range want {
		wantSet[p] = true
	}
	for _, rt := range have {
		p, ok := defaultOf(rt)
		if ok && wantSet[p] && rt.LinkIndex == l.Attrs().Index {
			delete(wantSet, p)
			continue
		}
		if err := netlink.RouteDel(&rt); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete route %v from table %d: %w", rt.Dst, ExitTable, err))
		}
	}
	for p := range wantSet {
		rt := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipNet(p), Table: ExitTable,
			Protocol: routeProtocol, Scope: netlink.SCOPE_LINK, Priority: exitRouteMetric}
		if err := netlink.RouteReplace(rt); err != nil {
			errs = append(errs, fmt.Errorf("add route %v dev %s table %d: %w", p, r.name, ExitTable, err))
		} else {
			r.log.Debug("exit route added", "route", p, "table", ExitTable)
		}
	}
	return errors.Join(errs...)
}

// defaultOf is the route's destination; netlink reports a default route
// with a nil or a zero-length Dst depending on the family.
func defaultOf(rt netlink.Route) (netip.Prefix, bool) {
	if rt.Dst == nil {
		if rt.Family == unix.AF_INET6 {
			return netip.PrefixFrom(netip.IPv6Unspecified(), 0), true
		}
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0), true
	}
	return prefixOf(rt.Dst)
}

// connectedLANs are the prefixes of the family directly connected
// through interfaces other than the mesh link and loopback: the main
// table's link-scope routes the kernel made for interface addresses.
// Link-local and multicast ranges stay out (they never leave the link).
func (r *Router) connectedLANs(mesh netlink.Link, family int) ([]netip.Prefix, error) {
	filter := &netlink.Route{Table: unix.RT_TABLE_MAIN}
	rs, err := netlink.RouteListFiltered(family, filter, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list connected routes: %w", err)
	}
	var out []netip.Prefix
	for _, rt := range rs {
		if rt.Protocol != unix.RTPROT_KERNEL || rt.Dst == nil || rt.LinkIndex == mesh.Attrs().Index {
			continue
		}
		if link, err := netlink.LinkByIndex(rt.LinkIndex); err == nil && link.Attrs().Flags&net.FlagLoopback != 0 {
			continue
		}
		p, ok := prefixOf(rt.Dst)
		if !ok || p.Bits() == 0 || p.Addr().IsLinkLocalUnicast() || p.Addr().IsMulticast() || p.Addr().IsLoopback() {
			continue
		}
		out = appendUniquePrefix(out, p.Masked())
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return out, nil
}

func appendUniquePrefix(s []netip.Prefix, p netip.Prefix) []netip.Prefix {
	if slices.Contains(s, p) {
		return s
	}
	return append(s, p)
}

// clearExit removes every rule we own (also a crashed run's) and the exit
// table's routes; the rules go first so no lookup hits a table being emptied.
func (r *Router) clearExit() error {
	errs := []error{r.setRules(nil)}
	if l, err := netlink.LinkByName(r.name); err == nil {
		errs = append(errs, r.setExitRoutes(l, nil))
	}
	return errors.Join(errs...)
}
