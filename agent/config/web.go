package config

import (
	"net/netip"
	"path/filepath"
	"strings"
)

// Web configures the agent's web page (agent/webui). It is off by
// default; when on, it listens only on web.listen, which must be a LAN
// address unless web.allow_any says otherwise, so the page never appears
// on WAN or the mesh by accident.
type Web struct {
	Enabled bool `koanf:"enabled"`
	// Listen is IP:port, e.g. the router's LAN address 192.168.1.1:8081.
	Listen string `koanf:"listen"`
	// AllowAny permits a Listen address that is not a LAN address
	// (public, mesh 100.64.0.0/10, or unspecified 0.0.0.0/::).
	AllowAny bool `koanf:"allow_any"`
	// Hosts are extra names (comma-separated) the browser may use in the
	// Host header, e.g. "router.lan"; the Listen address always works.
	Hosts string `koanf:"hosts"`
	// TokenFile holds the access token; "" is state_dir/web.token,
	// created 0600 with a random token at the first start.
	TokenFile string `koanf:"token_file"`
}

// ListenAddr is web.listen parsed (validate has checked it).
func (w Web) ListenAddr() netip.AddrPort {
	ap, _ := netip.ParseAddrPort(w.Listen)
	return ap
}

// HostNames are web.hosts split.
func (w Web) HostNames() []string {
	var out []string
	for _, h := range strings.Split(w.Hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			out = append(out, h)
		}
	}
	return out
}

// WebTokenFile is web.token_file, defaulting into the state dir.
func (c *Config) WebTokenFile() string {
	if c.Web.TokenFile != "" {
		return c.Web.TokenFile
	}
	return filepath.Join(c.StateDir, "web.token")
}

// testNets are RFC 2544's benchmarking networks, which labs (and the
// lanmesh testbed) use as LANs.
var testNets = netip.MustParsePrefix("198.18.0.0/15")

// IsLANAddr reports whether a is an address a router's LAN side uses:
// private (RFC 1918, fc00::/7), link-local, loopback or 198.18.0.0/15.
// The mesh's 100.64.0.0/10, public and unspecified addresses are not.
func IsLANAddr(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLoopback() || testNets.Contains(a)
}

func (w Web) validate(bad func(key string, v any, why string)) {
	for _, h := range w.HostNames() {
		if strings.ContainsAny(h, "/ @") {
			bad("web.hosts", w.Hosts, "is not a comma-separated list of host names")
			break
		}
	}
	if !w.Enabled {
		return
	}
	ap, err := netip.ParseAddrPort(w.Listen)
	if err != nil || ap.Addr().Zone() != "" || ap.Port() == 0 {
		bad("web.listen", w.Listen, "is not an IP:port like 192.168.1.1:8081 (the router's LAN address; required when web.enabled is true)")
		return
	}
	if !w.AllowAny && !IsLANAddr(ap.Addr()) {
		bad("web.listen", w.Listen, "is not a LAN address (private, link-local, loopback or 198.18.0.0/15); set web.allow_any to serve the page there anyway")
	}
}
