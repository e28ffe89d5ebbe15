package magicsock

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/lanmesh/lanmesh/agent/netcheck"
)

// NetcheckInterval is how often the network is re-checked without a
// reason: NAT mappings and the best relay drift slowly.
const NetcheckInterval = 60 * time.Second

// netcheckLoop checks at start (once there is a relay map), every
// NetcheckInterval and when woken (NetworkChanged, a new map).
func (c *Conn) netcheckLoop() {
	if c.noNetcheck {
		return
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		case <-c.ncWake:
		}
		if _, err := c.Netcheck(c.ctx); err != nil && c.ctx.Err() == nil {
			c.log.Debug("netcheck", "err", err)
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(NetcheckInterval)
	}
}

func (c *Conn) wakeNetcheck() { c.wake(c.ncWake) }

// ErrNoRelayMap: netcheck needs the relay map from coord.
var ErrNoRelayMap = errors.New("magicsock: no relay map from coord yet: nothing to check against")

// Netcheck checks the network now over the WireGuard socket itself (so the
// mapped address is the one peers must use), updates our endpoints and the
// home relay, and returns the report.
func (c *Conn) Netcheck(ctx context.Context) (*netcheck.Report, error) {
	c.smu.Lock()
	dm := c.dm
	c.smu.Unlock()
	if dm == nil || len(dm.Regions) == 0 {
		c.setEndpoints(nil) // interface addresses still count
		return nil, ErrNoRelayMap
	}
	if c.Port() == 0 {
		return nil, net.ErrClosed
	}
	r, err := c.checker.Run(ctx, dm)
	if r == nil {
		return nil, err
	}
	c.relayMu.Lock()
	c.report = r
	moved := r.PreferredRegion != 0 && r.PreferredRegion != c.home
	oldHome := c.home
	if moved {
		c.home = r.PreferredRegion
	}
	c.relayMu.Unlock()
	c.setEndpoints(r)
	if moved && oldHome != 0 {
		c.log.Info("home relay changed", "from", oldHome, "to", r.PreferredRegion)
		c.resetRelay()
	} else if moved {
		// The first choice: move only if we are not already there.
		if _, reg, ok := c.homeRegion(); ok && c.relayCodeNow() != reg.Code {
			c.resetRelay()
		}
	}
	c.wake(c.relayWake)
	return r, err
}

func (c *Conn) relayCodeNow() string {
	c.relayMu.Lock()
	defer c.relayMu.Unlock()
	if c.relay == nil {
		return ""
	}
	return c.relayCode
}

// LastReport is the latest netcheck report (nil before the first).
func (c *Conn) LastReport() *netcheck.Report {
	c.relayMu.Lock()
	defer c.relayMu.Unlock()
	return c.report
}

// setEndpoints recomputes our candidates: interface addresses with our
// port, and the STUN-mapped addresses of r.
func (c *Conn) setEndpoints(r *netcheck.Report) {
	port := c.Port()
	if port == 0 {
		return
	}
	var eps []netip.AddrPort
	if r != nil {
		eps = append(eps, r.GlobalV4...)
		if r.GlobalV6.IsValid() {
			eps = append(eps, r.GlobalV6)
		}
	}
	c.inNS(func() { eps = append(eps, c.ifaceEndpoints(port, c.opts.IgnoreIface)...) })
	eps = dedup(eps)
	c.relayMu.Lock()
	changed := !slices.Equal(eps, c.local)
	c.local = eps
	c.relayMu.Unlock()
	if m := c.disco.Load(); m != nil {
		m.SetLocalEndpoints(eps)
	}
	if changed {
		c.log.Info("local endpoints", "endpoints", eps)
		if c.opts.OnEndpoints != nil {
			c.opts.OnEndpoints(eps)
		}
	}
}

// LocalEndpoints are our candidates for peers: STUN-mapped addresses
// first, then interface addresses.
func (c *Conn) LocalEndpoints() []netip.AddrPort {
	c.relayMu.Lock()
	defer c.relayMu.Unlock()
	return slices.Clone(c.local)
}

// NetworkChanged re-checks the network and re-probes every peer: our
// address or NAT mapping may have changed under the paths in use.
func (c *Conn) NetworkChanged() {
	c.wakeNetcheck()
	if m := c.disco.Load(); m != nil {
		m.NetworkChanged()
	}
}

// interfaceEndpoints lists every global or private unicast address of the
// up, non-loopback interfaces except the mesh's, with port.
func interfaceEndpoints(port uint16, ignore string) []netip.AddrPort {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []netip.AddrPort
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagLoopback != 0 ||
			(ignore != "" && ifi.Name == ignore) || strings.HasPrefix(ifi.Name, "lanmesh") {
			continue
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			if !ip.IsGlobalUnicast() || ip.IsLinkLocalUnicast() || meshRange4.Contains(ip) {
				continue
			}
			out = append(out, netip.AddrPortFrom(ip, port))
		}
	}
	return out
}

// meshRange4 is never an endpoint (it lives inside the tunnel); mesh IPv6
// addresses sit on the mesh interface, which is skipped by name.
var meshRange4 = netip.MustParsePrefix("100.64.0.0/10")

// dedup keeps the first of equal endpoints, in order.
func dedup(eps []netip.AddrPort) []netip.AddrPort {
	out := eps[:0]
	for _, e := range eps {
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out
}
