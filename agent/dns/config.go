package dns

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	mdns "github.com/miekg/dns"
)

// Mesh address ranges. PTR lookups inside them are answered locally and
// never forwarded (S16): the upstream (an ISP resolver) must not learn
// which mesh addresses the LAN talks to.
var (
	MeshIPv4 = netip.MustParsePrefix("100.64.0.0/10")
	// DefaultMeshULA is used when Config.MeshULA is unset.
	DefaultMeshULA = netip.MustParsePrefix("fd7a:115c:a1e0::/48")
)

// Record is one name the server answers. Name is relative to
// Config.Domain: "router-a" for a node, "nas.router-a" for a lease.
type Record struct {
	Name  string
	Addrs []netip.Addr
}

// Config is one complete snapshot; SetConfig replaces the previous one.
type Config struct {
	Domain       string   // mesh domain, e.g. "mesh.internal"
	Records      []Record // mesh nodes from the netmap
	LeaseRecords []Record // LAN DHCP names (see LeaseRecords), opt-in
	// Routes is split DNS: queries at or under a domain go to its
	// upstreams instead of Upstreams. The longest matching domain wins.
	Routes    map[string][]netip.AddrPort
	Upstreams []netip.AddrPort // port 0 means 53
	// AllowedClients are the source prefixes served; everything else gets
	// REFUSED so the agent is never an open resolver. Empty refuses all;
	// DefaultAllowedClients builds the usual list.
	AllowedClients []netip.Prefix
	MeshULA        netip.Prefix // zero: DefaultMeshULA
}

// DefaultAllowedClients is loopback, the mesh ranges and the routed LANs.
func DefaultAllowedClients(meshULA netip.Prefix, lans ...netip.Prefix) []netip.Prefix {
	if !meshULA.IsValid() {
		meshULA = DefaultMeshULA
	}
	out := []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("::1/128"),
		MeshIPv4,
		meshULA,
	}
	return append(out, lans...)
}

const (
	// Zero TTLs: coord pushes every change, so this server is never stale,
	// but a cache in front of it (dnsmasq on the router) would be. With TTL
	// 0 a rename or removal shows at once on every LAN host.
	recordTTL   = 0
	negativeTTL = 0
)

// route is one split-DNS domain, kept sorted longest first.
type route struct {
	domain    string // canonical FQDN
	upstreams []netip.AddrPort
}

// snapshot is the compiled, immutable form of a Config.
type snapshot struct {
	domain     string                  // canonical FQDN, "mesh.internal."
	names      map[string][]netip.Addr // canonical FQDN -> addresses
	ents       map[string]bool         // empty non-terminals (name exists, no data)
	ptr        map[netip.Addr]string   // address -> canonical FQDN
	routes     []route
	upstreams  []netip.AddrPort
	allowed    []netip.Prefix
	meshRanges []netip.Prefix
	serial     uint32
}

// compile validates c. Invalid records are skipped and reported in the
// returned warnings (one bad node name must not take mesh DNS down);
// anything else invalid rejects the whole config.
func compile(c Config, serial uint32) (*snapshot, []error, error) {
	domain, err := canonicalDomain(c.Domain)
	if err != nil {
		return nil, nil, fmt.Errorf("dns config: domain: %w", err)
	}
	ula := c.MeshULA
	if !ula.IsValid() {
		ula = DefaultMeshULA
	}
	if !ula.Addr().Is6() || ula.Bits() < 8 {
		return nil, nil, fmt.Errorf("dns config: mesh ULA %s: want an IPv6 prefix of /8 or longer", ula)
	}
	s := &snapshot{
		domain:     domain,
		names:      map[string][]netip.Addr{},
		ents:       map[string]bool{},
		ptr:        map[netip.Addr]string{},
		meshRanges: []netip.Prefix{MeshIPv4, ula.Masked()},
		serial:     serial,
	}
	for _, p := range c.AllowedClients {
		if !p.IsValid() {
			return nil, nil, fmt.Errorf("dns config: allowed clients: invalid prefix %v", p)
		}
		s.allowed = append(s.allowed, p.Masked())
	}
	if s.upstreams, err = checkUpstreams(c.Upstreams); err != nil {
		return nil, nil, fmt.Errorf("dns config: upstreams: %w", err)
	}
	for d, ups := range c.Routes {
		rd, err := canonicalDomain(d)
		if err != nil {
			return nil, nil, fmt.Errorf("dns config: route %q: %w", d, err)
		}
		if mdns.IsSubDomain(domain, rd) {
			return nil, nil, fmt.Errorf("dns config: route %q: inside the mesh domain %s, which is answered locally", d, domain)
		}
		u, err := checkUpstreams(ups)
		if err != nil {
			return nil, nil, fmt.Errorf("dns config: route %q: %w", d, err)
		}
		if len(u) == 0 {
			return nil, nil, fmt.Errorf("dns config: route %q: no upstreams", d)
		}
		s.routes = append(s.routes, route{domain: rd, upstreams: u})
	}
	slices.SortFunc(s.routes, func(a, b route) int {
		if n := mdns.CountLabel(b.domain) - mdns.CountLabel(a.domain); n != 0 {
			return n
		}
		return strings.Compare(a.domain, b.domain)
	})

	var warns []error
	for _, r := range slices.Concat(c.Records, c.LeaseRecords) {
		name, err := recordName(r.Name, domain)
		if err != nil {
			warns = append(warns, err)
			continue
		}
		for _, a := range r.Addrs {
			if !a.IsValid() {
				warns = append(warns, fmt.Errorf("record %q: invalid address", r.Name))
				continue
			}
			a = a.Unmap().WithZone("")
			if !slices.Contains(s.names[name], a) {
				s.names[name] = append(s.names[name], a)
			}
			// First name wins the PTR; Records come before leases so a
			// node's own name beats a lease that reuses its address.
			if _, ok := s.ptr[a]; !ok {
				s.ptr[a] = name
			}
		}
		if _, ok := s.names[name]; !ok {
			s.names[name] = nil // a name without addresses still exists
		}
		for p := parentName(name); p != "" && p != domain; p = parentName(p) {
			s.ents[p] = true
		}
	}
	return s, warns, nil
}

func checkUpstreams(in []netip.AddrPort) ([]netip.AddrPort, error) {
	out := make([]netip.AddrPort, 0, len(in))
	for _, u := range in {
		if !u.Addr().IsValid() {
			return nil, errors.New("invalid address")
		}
		if u.Port() == 0 {
			u = netip.AddrPortFrom(u.Addr(), 53)
		}
		out = append(out, u)
	}
	return out, nil
}

// canonicalDomain checks a domain name and returns it lowercase with the
// trailing dot.
func canonicalDomain(d string) (string, error) {
	d = strings.TrimSuffix(strings.TrimSpace(d), ".")
	if d == "" {
		return "", errors.New("empty")
	}
	for _, l := range strings.Split(d, ".") {
		if err := checkLabel(l); err != nil {
			return "", fmt.Errorf("%q: %w", d, err)
		}
	}
	return mdns.CanonicalName(d), nil
}

// recordName turns a relative record name into a canonical FQDN under
// domain.
func recordName(rel, domain string) (string, error) {
	rel = strings.TrimSuffix(rel, ".")
	if rel == "" {
		return "", errors.New("record: empty name")
	}
	for _, l := range strings.Split(rel, ".") {
		if err := checkLabel(l); err != nil {
			return "", fmt.Errorf("record %q: %w", rel, err)
		}
	}
	name := mdns.CanonicalName(rel + "." + domain)
	if len(name) > 254 {
		return "", fmt.Errorf("record %q: name longer than 253 characters", rel)
	}
	return name, nil
}

// checkLabel accepts LDH labels (and '_', which some DHCP clients use).
func checkLabel(l string) error {
	if l == "" {
		return errors.New("empty label")
	}
	if len(l) > 63 {
		return fmt.Errorf("label %q longer than 63 characters", l)
	}
	if l[0] == '-' || l[len(l)-1] == '-' {
		return fmt.Errorf("label %q starts or ends with '-'", l)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("label %q: character %q not allowed", l, c)
		}
	}
	return nil
}

// parentName strips the first label of a canonical FQDN; "" at the root.
func parentName(name string) string {
	i := strings.IndexByte(name, '.')
	if i < 0 || i == len(name)-1 {
		return ""
	}
	return name[i+1:]
}
