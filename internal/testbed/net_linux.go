package testbed

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
)

// maxIfName is IFNAMSIZ-1: Linux refuses longer interface names.
const maxIfName = 15

// allowed are the only ranges a world may use (RFC 2544 benchmarking and
// the IPv6 documentation prefix), so nothing can leak to a real network.
var allowed = []netip.Prefix{
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("2001:db8::/32"),
}

func checkAddr(s string) error {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return fmt.Errorf("testbed: address %q: want CIDR form like 198.18.1.2/17: %w", s, err)
	}
	for _, a := range allowed {
		if a.Contains(p.Addr()) && p.Bits() >= a.Bits() {
			return nil
		}
	}
	return fmt.Errorf("testbed: address %s is outside 198.18.0.0/15 and 2001:db8::/32", s)
}

func checkIfName(s string) error {
	if s == "" || len(s) > maxIfName || strings.ContainsAny(s, "/ \t:") {
		return fmt.Errorf("testbed: interface name %q: want 1-%d characters without / : or space", s, maxIfName)
	}
	return nil
}

// AddAddr puts addresses on an interface of h (IPv6 without DAD, so it
// works at once).
func (h *Host) AddAddr(ifname string, addrs ...string) error {
	for _, a := range addrs {
		if err := checkAddr(a); err != nil {
			return err
		}
		args := []string{"addr", "add", a, "dev", ifname}
		if strings.Contains(a, ":") {
			args = append(args, "nodad")
		}
		if err := h.ip(args...); err != nil {
			return err
		}
	}
	return nil
}

// Link joins a and b with a veth pair made directly inside the two
// namespaces (never in the host's own), brings both ends up and adds the
// addresses.
func (w *World) Link(a *Host, aIf string, aAddrs []string, b *Host, bIf string, bAddrs []string) error {
	if err := checkIfName(aIf); err != nil {
		return err
	}
	if err := checkIfName(bIf); err != nil {
		return err
	}
	if err := a.ip("link", "add", aIf, "type", "veth", "peer", "name", bIf, "netns", b.NS); err != nil {
		return err
	}
	for _, e := range []struct {
		h     *Host
		ifn   string
		addrs []string
	}{{a, aIf, aAddrs}, {b, bIf, bAddrs}} {
		if err := e.h.AddAddr(e.ifn, e.addrs...); err != nil {
			return err
		}
		if err := e.h.ip("link", "set", e.ifn, "up"); err != nil {
			return err
		}
	}
	return nil
}

// Segment is a shared Ethernet: a bridge inside one host's namespace.
type Segment struct {
	Host   *Host
	Bridge string
	mu     sync.Mutex
	ports  int
}

// AddSegment makes a bridge in h, optionally with h's own addresses on it.
func (w *World) AddSegment(h *Host, bridge string, addrs ...string) (*Segment, error) {
	if err := checkIfName(bridge); err != nil {
		return nil, err
	}
	if err := h.ip("link", "add", bridge, "type", "bridge"); err != nil {
		return nil, err
	}
	// br_netfilter is built into this kernel: without this, bridged frames
	// would cross the namespace's nftables forward hooks (per-namespace
	// setting; the host's own stays untouched).
	for _, k := range []string{"net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables", "net.bridge.bridge-nf-call-arptables"} {
		_ = h.Sysctl(k, "0")
	}
	if err := h.AddAddr(bridge, addrs...); err != nil {
		return nil, err
	}
	if err := h.ip("link", "set", bridge, "up"); err != nil {
		return nil, err
	}
	return &Segment{Host: h, Bridge: bridge}, nil
}

// Attach plugs h into the segment as interface ifname with addrs.
func (s *Segment) Attach(h *Host, ifname string, addrs ...string) error {
	s.mu.Lock()
	s.ports++
	port := fmt.Sprintf("%s.%d", s.Bridge, s.ports)
	s.mu.Unlock()
	if len(port) > maxIfName {
		port = fmt.Sprintf("p%d", s.ports)
	}
	if err := s.Host.w.Link(s.Host, port, nil, h, ifname, addrs); err != nil {
		return err
	}
	return s.Host.ip("link", "set", port, "master", s.Bridge)
}

// NATKind is the kind of box between a router's WAN and the internet.
type NATKind string

const (
	NATNone  NATKind = ""      // router directly on the internet
	NATEasy  NATKind = "easy"  // endpoint-independent mapping and filtering ("full cone")
	NATHard  NATKind = "hard"  // symmetric: a new random port per destination
	NATCGNAT NATKind = "cgnat" // home NAT behind a carrier NAT (double NAT)
	NATNoUDP NATKind = "noudp" // NAT plus firewall: all UDP dropped, only TCP 443 out
	// Port-restricted cones, as a Linux or OpenWrt router masquerades:
	// endpoint-independent mapping (masquerade keeps the port when it can)
	// and address-and-port-dependent filtering (only conntrack replies come
	// in). They differ in what the box's own INPUT chain does with
	// unsolicited UDP to its WAN address: drop it (an input policy of
	// DROP), reject it with ICMP port unreachable (OpenWrt's default wan
	// zone, input REJECT), or accept it (a box with
	// no input firewall; the kernel answers port unreachable too, but the
	// accepted packet leaves a conntrack entry behind, see
	// docs/nat-traversal.md).
	NATRestricted       NATKind = "restricted"
	NATRestrictedReject NATKind = "restricted-reject"
	NATRestrictedAccept NATKind = "restricted-accept"
)

// NATKinds lists every kind in the order documentation and --help name them.
var NATKinds = []NATKind{NATNone, NATEasy, NATRestricted, NATRestrictedReject, NATRestrictedAccept, NATHard, NATCGNAT, NATNoUDP}

// String names the kind as flags spell it ("none" for NATNone).
func (k NATKind) String() string {
	if k == NATNone {
		return "none"
	}
	return string(k)
}

// ParseNATKind reads a kind as --nat-a/--nat-b spell it; "" and "none" mean
// no NAT.
func ParseNATKind(s string) (NATKind, error) {
	if s == "" || s == "none" {
		return NATNone, nil
	}
	for _, k := range NATKinds {
		if string(k) == s {
			return k, nil
		}
	}
	names := make([]string, len(NATKinds))
	for i, k := range NATKinds {
		names[i] = k.String()
	}
	return "", fmt.Errorf("unknown NAT kind %q: want one of %s", s, strings.Join(names, ", "))
}

// natRuleset is the nftables ruleset of a NAT box whose public interface
// is wan and private one lan. Its table is the only one in the box's own
// namespace.
func natRuleset(kind NATKind, wan, lan string) (string, error) {
	masq := "masquerade"
	// By default the box drops unsolicited UDP to itself (the
	// restricted-reject and restricted-accept kinds model the other
	// set-ups).
	input := fmt.Sprintf("iifname %q meta l4proto udp ct state new drop", wan)
	switch kind {
	case NATEasy, NATCGNAT, NATNoUDP, NATRestricted:
	case NATRestrictedReject:
		// Rejected packets never confirm a conntrack entry: to the
		// mappings this is the same as drop, but the sender gets an ICMP
		// port unreachable from the box.
		input = fmt.Sprintf("iifname %q meta l4proto udp ct state new reject with icmpx type port-unreachable", wan)
	case NATRestrictedAccept:
		// Nothing filters input: an unsolicited datagram is delivered to
		// the box's own (closed) port, answered with port unreachable by
		// the kernel, and its conntrack entry stays for 30 s, refreshed by
		// every further datagram of the same sender.
		input = ""
	case NATHard:
		// fully-random picks a fresh source port for every new conntrack
		// entry, so each destination sees a different port.
		masq = "masquerade fully-random"
	default:
		return "", fmt.Errorf("testbed: unknown NAT kind %q", kind)
	}
	filter := ""
	if kind == NATNoUDP {
		input = "meta l4proto udp drop"
		filter = fmt.Sprintf(`
	chain filter_forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname %q tcp dport 443 accept
	}`, lan)
	}
	if kind == NATEasy {
		// Endpoint-independent filtering (RFC 4787): once a LAN host has
		// sent from a port, anyone may reach it there, as with consumer
		// routers that are "full cone" (Tailscale's natlab EasyNAT).
		// Masquerade keeps the port, so the outgoing port maps back to
		// the LAN host; without this the box filters per destination,
		// and a symmetric NAT on the far side could never reach in.
		filter += fmt.Sprintf(`
	map fullcone {
		type inet_service : ipv4_addr
		flags dynamic,timeout
		timeout 2m
	}
	chain fullcone_out {
		type filter hook postrouting priority filter; policy accept;
		oifname %q meta nfproto ipv4 meta l4proto udp update @fullcone { udp sport : ip saddr }
	}
	chain fullcone_in {
		type nat hook prerouting priority dstnat; policy accept;
		iifname %q meta nfproto ipv4 meta l4proto udp dnat ip to udp dport map @fullcone
	}`, wan, wan)
	}
	filter += fmt.Sprintf(`
	chain filter_input {
		type filter hook input priority filter; policy accept;
		%s
	}`, input)
	return fmt.Sprintf(`table inet lmtb
delete table inet lmtb
table inet lmtb {
	chain nat_postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname %q %s
	}%s
}
`, wan, masq, filter), nil
}

// AddNATBox makes a NAT box called name with the nftables rules of kind.
// Its public interface must be called wan0 and its private one lan0; the
// caller links them (Segment.Attach or World.Link) and sets its route.
func (w *World) AddNATBox(name string, kind NATKind) (*Host, error) {
	rs, err := natRuleset(kind, "wan0", "lan0")
	if err != nil {
		return nil, err
	}
	h, err := w.AddHost(name)
	if err != nil {
		return nil, err
	}
	if err := h.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		return nil, err
	}
	return h, h.Nft(rs)
}
