package daemon

import (
	"cmp"
	"context"
	"errors"
	"io/fs"
	"net/netip"
	"slices"
	"time"

	"github.com/lanmesh/lanmesh/agent/dns"
	"github.com/lanmesh/lanmesh/agent/engine"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// Timing of the refresher.
const (
	// debounceDelay gathers a burst of netlink events (DHCP renew: addr
	// del, addr add, route changes) into one check, well within a second.
	debounceDelay = 300 * time.Millisecond
	// pollInterval re-checks what no event announces: endpoints the
	// engine learned by STUN, and the DHCP lease file.
	pollInterval = 10 * time.Second
	// After a network change the engine re-runs STUN in the background,
	// so its new public endpoint shows up a moment later: check again
	// every followUpInterval, followUps times, instead of waiting for the
	// next poll (a WAN address change then reaches peers in about a
	// second, not ten).
	followUpInterval = 500 * time.Millisecond
	followUps        = 8
)

func (d *Daemon) homeRegion() int {
	if hr, ok := d.eng.(engine.HomeRegioner); ok {
		return hr.HomeRegion()
	}
	return 0
}

// currentEndpoints are the endpoint candidates coord should publish.
func (d *Daemon) currentEndpoints() []netip.AddrPort {
	if el, ok := d.eng.(engine.EndpointLister); ok {
		if eps := el.LocalEndpoints(); len(eps) > 0 {
			return sortedEndpoints(eps)
		}
	}
	var mesh []netip.Prefix
	d.mu.Lock()
	if d.st != nil {
		mesh = meshPrefixes(d.st.Addresses)
	} else {
		mesh = meshPrefixes(nil)
	}
	d.mu.Unlock()
	return sortedEndpoints(d.endpoints(d.eng.ListenPort(), mesh))
}

func sortedEndpoints(eps []netip.AddrPort) []netip.AddrPort {
	out := slices.Clone(eps)
	slices.SortFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return slices.Compact(out)
}

// refresher keeps coord's view of this node current: on network events
// (debounced) and every pollInterval it recomputes the endpoints and, with
// dns.publish_leases, the LAN host names, and reopens the netmap stream
// when either changed.
func (d *Daemon) refresher(ctx context.Context) {
	events := make(chan struct{}, 1)
	if d.watch != nil {
		go func() {
			err := d.watch(ctx, func() {
				select {
				case events <- struct{}{}:
				default:
				}
			})
			if err != nil && ctx.Err() == nil {
				d.log.Warn("cannot watch network changes; endpoints are re-checked every "+pollInterval.String(), "err", err)
			}
		}()
	}
	poll := time.NewTicker(pollInterval)
	defer poll.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	followUp := time.NewTicker(time.Hour)
	followUp.Stop()
	left := 0
	d.refresh(false) // leases at start
	for {
		select {
		case <-ctx.Done():
			return
		case <-events:
			debounce.Reset(debounceDelay)
		case <-debounce.C:
			d.refresh(true)
			left = followUps
			followUp.Reset(followUpInterval)
		case <-followUp.C:
			d.refresh(false)
			if left--; left <= 0 {
				followUp.Stop()
			}
		case <-poll.C:
			d.refresh(false)
		}
	}
}

// refresh is one check; netChanged says a network event caused it.
func (d *Daemon) refresh(netChanged bool) {
	if netChanged {
		if nc, ok := d.eng.(engine.NetworkChanger); ok {
			nc.NetworkChanged()
		}
	}
	hosts, hostsOK := d.readLANHosts()
	eps := d.currentEndpoints()
	region := d.homeRegion()

	d.mu.Lock()
	defer d.mu.Unlock()
	d.retryReconfigLocked()
	if hostsOK && !slices.Equal(hosts, d.lanHosts) {
		d.lanHosts = hosts
		d.updateDNSLocked()
	}
	if d.loop == nil || d.loop.stream == nil || d.closed {
		return
	}
	switch {
	case !slices.Equal(eps, d.sent.endpoints):
		d.restartStreamLocked("endpoints changed")
	case !slices.Equal(d.lanHosts, d.sent.lanHosts):
		d.restartStreamLocked("LAN host names changed")
	case region != d.sent.homeRegion:
		d.restartStreamLocked("relay region changed")
	}
}

// readLANHosts reads the DHCP leases to publish (dns.publish_leases): live
// named leases inside this router's advertised routes, sorted. ok is false
// when publishing is off.
func (d *Daemon) readLANHosts() (hosts []wire.LANHost, ok bool) {
	c := d.cfg.DNS
	if !c.PublishLeases {
		return nil, false
	}
	leases, err := dns.ReadLeaseFile(c.LeasesFile)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return []wire.LANHost{}, true // no DHCP server (yet): nothing to publish
		}
		// Bad lines are skipped; the good leases still count.
		d.log.Debug("lease file", "path", c.LeasesFile, "err", err)
	}
	var routes []netip.Prefix
	d.mu.Lock()
	if d.st != nil {
		routes = slices.Clone(d.st.Prefs.AdvertiseRoutes)
	}
	d.mu.Unlock()
	return lanHosts(leases, routes, time.Now()), true
}

// lanHosts picks the leases peers may learn: named, not expired, inside
// one of routes (a lease elsewhere is not reachable through us).
func lanHosts(leases []dns.Lease, routes []netip.Prefix, now time.Time) []wire.LANHost {
	out := []wire.LANHost{}
	for _, l := range leases {
		if l.Hostname == "" || !l.Addr.IsValid() || (!l.Expiry.IsZero() && !now.Before(l.Expiry)) {
			continue
		}
		if !slices.ContainsFunc(routes, func(p netip.Prefix) bool { return p.Contains(l.Addr) }) {
			continue
		}
		out = append(out, wire.LANHost{Name: l.Hostname, Addr: l.Addr})
	}
	slices.SortFunc(out, func(a, b wire.LANHost) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), a.Addr.Compare(b.Addr))
	})
	return slices.Compact(out)
}
