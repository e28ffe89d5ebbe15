package firewall

import (
	"net/netip"
	"strings"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// An exit node (a default route among AdvertisedRoutes) forwards mesh
// traffic to the internet. What it forwards is the identity filter's
// mesh_to_lan chain: coord grants it only with autogroup:internet or an
// explicit destination, and buildPlan trims loopback and link-local
// (169.254.169.254) from it unless a rule names them (S17). Traffic to
// the node's own addresses (LAN, WAN, management) is local delivery and
// meets mesh_in, which opens only the mesh addresses and single
// addresses a rule names (S17). The replies need the node's WAN address
// as source: with SNAT on, snatRules already masquerade everything from
// the mesh; with SNAT off, exitMasqRules masquerade all but the
// advertised subnets, which keep the mesh source as SNAT-off promises.

// exitNode reports whether cfg offers an exit route.
func exitNode(cfg Config) bool {
	for _, r := range cfg.AdvertisedRoutes {
		if r.IsValid() && r.Bits() == 0 {
			return true
		}
	}
	return false
}

// exitMasqKey names the exit masquerade rules' shape ("" when none).
func exitMasqKey(cfg Config) string {
	if cfg.SNAT || !exitNode(cfg) {
		return ""
	}
	var b strings.Builder
	b.WriteString("exit")
	for _, r := range cfg.AdvertisedRoutes {
		if r.Bits() > 0 {
			b.WriteString("," + r.Masked().String())
		}
	}
	return b.String()
}

// exitMasqRules: mesh traffic to an advertised subnet leaves the NAT
// chain untouched (accept), the rest is masqueraded.
func exitMasqRules(mesh string, routes []netip.Prefix) [][]expr.Any {
	fromMesh := join(ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, mesh), ifname(expr.MetaKeyOIFNAME, expr.CmpOpNeq, mesh))
	var out [][]expr.Any
	for _, r := range routes {
		if r.IsValid() && r.Bits() > 0 {
			out = append(out, join(fromMesh, daddrIn(r.Masked()), verdict(expr.VerdictAccept)))
		}
	}
	return append(out, join(fromMesh, masq()))
}

// daddrIn matches packets of p's family whose destination is inside p.
func daddrIn(p netip.Prefix) []expr.Any {
	nfproto, off := byte(unix.NFPROTO_IPV6), uint32(24)
	if p.Addr().Is4() {
		nfproto, off = unix.NFPROTO_IPV4, 16
	}
	n := uint32(len(p.Addr().AsSlice()))
	mask := ipNetMask(p)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nfproto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: mask, Xor: make([]byte, n)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Addr().AsSlice()},
	}
}

func ipNetMask(p netip.Prefix) []byte {
	m := make([]byte, len(p.Addr().AsSlice()))
	for i := 0; i < p.Bits(); i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}
