package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/lanmesh/lanmesh/agent/config"
	"github.com/lanmesh/lanmesh/agent/dns"
	"github.com/lanmesh/lanmesh/agent/localapi"
	"github.com/lanmesh/lanmesh/internal/atomicfile"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// meshDNS is the daemon's side of agent/dns: the server, its fixed
// settings, and what was last written for dnsmasq.
type meshDNS struct {
	srv       *dns.Server
	listen    netip.AddrPort // bound
	upstreams []netip.AddrPort
	conf      string   // dns.dnsmasq_conf path; "" for none
	confBody  string   // last content written (or found) there
	reload    []string // dns.dnsmasq_reload argv; nil for none
	log       *slog.Logger
}

// startDNS starts the mesh DNS server. Failing to bind is logged and
// leaves DNS off: the mesh itself must not depend on a free port 53535.
func startDNS(c config.DNS, log *slog.Logger) *meshDNS {
	listen, err := netip.ParseAddrPort(c.Listen) // validated by config
	if err != nil {
		log.Error("mesh DNS off: bad dns.listen", "err", err)
		return nil
	}
	srv := dns.New(dns.Options{Logger: log})
	if err := srv.Listen(listen); err != nil {
		log.Error("mesh DNS off", "err", err)
		srv.Close()
		return nil
	}
	m := &meshDNS{srv: srv, listen: srv.Addrs()[0], conf: c.DnsmasqConf, reload: strings.Fields(c.DnsmasqReload), log: log}
	ups, err := config.ParseUpstreams(c.Upstreams)
	if err == nil && len(ups) == 0 {
		// Read-only: the agent never rewrites resolv.conf (S16).
		ups, err = dns.ReadResolvConf(config.ResolvConf)
	}
	if err != nil {
		log.Warn("mesh DNS upstreams", "err", err)
	}
	// Forwarding to ourselves would loop.
	m.upstreams = slices.DeleteFunc(ups, func(u netip.AddrPort) bool { return u == m.listen })
	if m.conf != "" {
		if b, err := os.ReadFile(m.conf); err == nil {
			m.confBody = string(b)
		}
	}
	log.Info("mesh DNS listening", "addr", m.listen, "upstreams", len(m.upstreams))
	return m
}

func (m *meshDNS) close() { m.srv.Close() }

func (d *Daemon) dnsStatusLocked() localapi.DNSStatus {
	s := localapi.DNSStatus{Enabled: d.cfg.DNS.Enabled}
	if d.dns != nil {
		s.Listen = d.dns.listen.String()
	}
	if d.nm != nil {
		s.Domain = d.nm.domain
	}
	return s
}

// updateDNSLocked hands the current netmap to the DNS server. It runs on
// every netmap change, so a rename answers under the new name at once
// and the old name stops (no stale cache here; the TTL is short).
func (d *Daemon) updateDNSLocked() {
	if d.dns == nil || d.st == nil {
		return
	}
	if d.nm == nil || d.nm.domain == "" {
		// No mesh (down) or no domain: mesh names are unknown, but
		// forwarding for allowed clients keeps working.
		if err := d.dns.srv.SetConfig(dns.Config{Domain: "mesh.invalid", Upstreams: d.dns.upstreams,
			AllowedClients: dns.DefaultAllowedClients(netip.Prefix{}, d.st.Prefs.AdvertiseRoutes...)}); err != nil {
			d.log.Warn("mesh DNS config", "err", err)
		}
		return
	}
	cfg := dnsConfig(d.nm, d.lanHosts, d.st.Prefs.AdvertiseRoutes)
	cfg.Upstreams = d.dns.upstreams
	if err := d.dns.srv.SetConfig(cfg); err != nil {
		d.log.Warn("mesh DNS config refused", "err", err)
		return
	}
	d.dns.writeDnsmasq(d.nm.domain, meshULA(d.nm))
}

// meshULA is the mesh's IPv6 /48, taken from self's address; invalid
// before the first netmap.
func meshULA(nm *netmap) netip.Prefix {
	for _, a := range nm.self.Addresses {
		if a.Addr().Is6() {
			return netip.PrefixFrom(a.Addr(), 48).Masked()
		}
	}
	return netip.Prefix{}
}

// dnsConfig builds the DNS records from the netmap: self and peers as
// <name>, peers' published LAN hosts as <host>.<peer>, and this router's
// own (own) as <host>.<self>. Clients: loopback, the mesh ranges and the
// LANs this node routes.
func dnsConfig(nm *netmap, own []wire.LANHost, advertised []netip.Prefix) dns.Config {
	ula := meshULA(nm)
	cfg := dns.Config{Domain: nm.domain, MeshULA: ula,
		AllowedClients: dns.DefaultAllowedClients(ula, advertised...)}
	nodes := append([]wire.Node{nm.self}, nm.sortedPeers()...)
	for i, n := range nodes {
		if n.Name == "" {
			continue
		}
		r := dns.Record{Name: n.Name}
		for _, a := range n.Addresses {
			r.Addrs = append(r.Addrs, a.Addr())
		}
		cfg.Records = append(cfg.Records, r)
		hosts := n.LANHosts
		if i == 0 {
			hosts = own // coord does not echo self's hosts back
		}
		cfg.LeaseRecords = append(cfg.LeaseRecords, hostRecords(hosts, n.Name)...)
	}
	return cfg
}

// hostRecords groups LAN hosts by name under router.
func hostRecords(hosts []wire.LANHost, router string) []dns.Record {
	var out []dns.Record
	idx := map[string]int{}
	for _, h := range hosts {
		if h.Name == "" || !h.Addr.IsValid() {
			continue
		}
		name := h.Name + "." + router
		i, ok := idx[name]
		if !ok {
			i = len(out)
			idx[name] = i
			out = append(out, dns.Record{Name: name})
		}
		out[i].Addrs = append(out[i].Addrs, h.Addr)
	}
	return out
}

// writeDnsmasq (re)writes the dnsmasq snippet when its content changes,
// i.e. when the domain does: a flash write per rename of the mesh, not
// per netmap.
// The snippet carries the mesh's own /48: with the default ULA instead,
// dnsmasq would send IPv6 mesh PTR lookups upstream (S16).
func (m *meshDNS) writeDnsmasq(domain string, ula netip.Prefix) {
	if m.conf == "" {
		return
	}
	body := dns.DnsmasqConfig(domain, m.listen, ula)
	if body == m.confBody {
		return
	}
	if err := atomicfile.Write(m.conf, []byte(body), 0o644); err != nil {
		m.log.Error("cannot write the dnsmasq config", "path", m.conf, "err", err)
		return
	}
	m.confBody = body
	if len(m.reload) == 0 {
		m.log.Info("wrote the dnsmasq config; restart dnsmasq to load it (or set dns.dnsmasq_reload)", "path", m.conf, "domain", domain)
		return
	}
	// dnsmasq reads conf files only at start or reload; the command runs
	// outside the daemon's lock (its own goroutine) with a deadline.
	go func(argv []string) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			m.log.Error("dns.dnsmasq_reload failed", "cmd", strings.Join(argv, " "), "err", err, "output", strings.TrimSpace(string(out)))
			return
		}
		m.log.Info("wrote the dnsmasq config and reloaded dnsmasq", "path", m.conf, "domain", domain)
	}(m.reload)
}
