package dns

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
)

// DnsmasqConfig renders the dnsmasq lines that send the mesh domain and
// the mesh reverse zones to the agent at listen. The caller installs them
// as a dnsmasq conf file (on OpenWrt through uci / conf-dir); the agent
// never rewrites /etc/resolv.conf (S16).
//
// rebind-domain-ok is needed because mesh answers are private addresses,
// which OpenWrt's stop-dns-rebind would otherwise drop. The reverse zones
// keep dnsmasq from asking the ISP for mesh PTRs.
func DnsmasqConfig(domain string, listen netip.AddrPort, meshULA netip.Prefix) string {
	if !meshULA.IsValid() {
		meshULA = DefaultMeshULA
	}
	d := strings.TrimSuffix(strings.ToLower(domain), ".")
	target := fmt.Sprintf("%s#%d", listen.Addr().WithZone(""), listen.Port())
	var b strings.Builder
	b.WriteString("# lanmesh: mesh DNS (generated; do not edit)\n")
	fmt.Fprintf(&b, "server=/%s/%s\n", d, target)
	fmt.Fprintf(&b, "rebind-domain-ok=/%s/\n", d)
	for _, z := range meshReverseZones(meshULA) {
		fmt.Fprintf(&b, "server=/%s/%s\n", strings.TrimSuffix(z, "."), target)
	}
	return b.String()
}

// meshReverseZones lists the label-aligned reverse zones covering the
// mesh ranges: 64.100.in-addr.arpa. .. 127.100.in-addr.arpa. and the
// ULA's ip6.arpa zone(s).
func meshReverseZones(ula netip.Prefix) []string {
	var out []string
	for _, r := range []netip.Prefix{MeshIPv4, ula.Masked()} {
		step := 8
		if r.Addr().Is6() {
			step = 4
		}
		bits := (r.Bits() + step - 1) / step * step
		n := 1 << (bits - r.Bits())
		p := netip.PrefixFrom(r.Addr(), bits)
		for range n {
			out = append(out, reverseName(p))
			p = nextPrefix(p)
		}
	}
	return out
}

// nextPrefix is the prefix of the same length right after p.
func nextPrefix(p netip.Prefix) netip.Prefix {
	b := p.Addr().AsSlice()
	// Add 1 at bit position p.Bits()-1.
	bit := p.Bits() - 1
	for i := bit / 8; i >= 0; i-- {
		inc := byte(1)
		if i == bit/8 {
			inc = 1 << (7 - bit%8)
		}
		old := b[i]
		b[i] += inc
		if b[i] > old {
			break
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return netip.PrefixFrom(a, p.Bits())
}

// maxResolvConf bounds what ReadResolvConf reads: a real one is tiny.
const maxResolvConf = 64 << 10

// ReadResolvConf reads the nameservers of a resolv.conf file (read-only;
// on OpenWrt point it at /tmp/resolv.conf.d/resolv.conf.auto, the WAN's
// resolvers, not at dnsmasq itself).
func ReadResolvConf(path string) ([]netip.AddrPort, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read resolv.conf: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxResolvConf+1))
	if err != nil {
		return nil, fmt.Errorf("read resolv.conf %s: %w", path, err)
	}
	if len(data) > maxResolvConf {
		return nil, fmt.Errorf("read resolv.conf %s: larger than %d bytes", path, maxResolvConf)
	}
	ups, err := ParseResolvConf(data)
	if err != nil {
		return ups, fmt.Errorf("resolv.conf %s: %w", path, err)
	}
	return ups, nil
}

// ParseResolvConf returns the nameserver lines as port-53 addresses.
// Malformed nameserver lines are skipped and reported in the error; the
// good ones are still returned.
func ParseResolvConf(data []byte) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxResolvConf)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "nameserver" {
			continue
		}
		if len(f) != 2 {
			errs = append(errs, fmt.Errorf("line %d: want \"nameserver ADDRESS\"", n))
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: nameserver %q: not an IP address", n, f[1]))
			continue
		}
		out = append(out, netip.AddrPortFrom(a.Unmap(), 53))
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}
