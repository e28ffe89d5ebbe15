package engine

import (
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lanmesh/lanmesh/internal/key"
)

var (
	meshA    = netip.MustParsePrefix("100.64.0.1/32")
	meshB    = netip.MustParsePrefix("100.64.0.2/32")
	meshA6   = netip.MustParsePrefix("fd7a:115c:a1e0::1/128")
	meshB6   = netip.MustParsePrefix("fd7a:115c:a1e0::2/128")
	meshNet  = netip.MustParsePrefix("100.64.0.0/10")
	meshNet6 = netip.MustParsePrefix("fd7a:115c:a1e0::/48")
	wanB     = netip.MustParseAddrPort("198.18.0.2:51820")
	wanA     = netip.MustParseAddrPort("198.18.0.1:51820")
	lanB     = netip.MustParsePrefix("198.18.1.0/24")
)

type pair struct {
	nsA, nsB string
	a, b     Engine
	kA, kB   key.NodePrivate
}

// newPair makes two namespaces joined by a veth 198.18.0.1/24 <->
// 198.18.0.2/24 and an engine in each.
func newPair(t *testing.T, opts Options) *pair {
	requireRoot(t)
	p := &pair{nsA: newNS(t), nsB: newNS(t), kA: key.NewNode(), kB: key.NewNode()}
	link(t, p.nsA, "wan0", "198.18.0.1/24", p.nsB, "wan0", "198.18.0.2/24")
	opts.ListenPort = 51820
	p.a = startEngine(t, p.nsA, opts)
	p.b = startEngine(t, p.nsB, opts)
	return p
}

func (p *pair) configure(t *testing.T, aToB, bToA []netip.AddrPort, cfgA, cfgB func(*Config)) {
	t.Helper()
	ca := Config{PrivateKey: p.kA, Addresses: []netip.Prefix{meshA, meshA6}, Routes: []netip.Prefix{meshNet, meshNet6},
		Peers: []Peer{{Key: p.kB.Public(), Name: "b", AllowedIPs: []netip.Prefix{meshB, meshB6}, Endpoints: aToB}}}
	cb := Config{PrivateKey: p.kB, Addresses: []netip.Prefix{meshB, meshB6}, Routes: []netip.Prefix{meshNet, meshNet6},
		Peers: []Peer{{Key: p.kA.Public(), Name: "a", AllowedIPs: []netip.Prefix{meshA, meshA6}, Endpoints: bToA}}}
	ca.Filter, cb.Filter = allowAll, allowAll // nil fails closed
	if cfgA != nil {
		cfgA(&ca)
	}
	if cfgB != nil {
		cfgB(&cb)
	}
	if _, err := p.a.Reconfig(ca); err != nil {
		t.Fatal(err)
	}
	if _, err := p.b.Reconfig(cb); err != nil {
		t.Fatal(err)
	}
	if _, err := p.a.Reconfig(ca); err != nil { // equal config: a no-op
		t.Fatal(err)
	}
}

// ping pings dst from ns until it answers or the deadline passes.
func ping(ns, dst string, within time.Duration) error {
	deadline := time.Now().Add(within)
	var err error
	for time.Now().Before(deadline) {
		if err = try("ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", dst); err == nil {
			return nil
		}
	}
	return err
}

func TestPingThroughMesh(t *testing.T) {
	for _, tt := range []struct {
		name string
		off  Offloads
	}{
		{"offloads", Offloads{TUN: true, UDPGSO: true, UDPGRO: true}},
		{"no-offloads", Offloads{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newPair(t, Options{Offloads: tt.off})
			p.configure(t, []netip.AddrPort{wanB}, []netip.AddrPort{wanA}, nil, nil)
			if err := ping(p.nsA, "100.64.0.2", 10*time.Second); err != nil {
				t.Fatal(err)
			}
			if err := ping(p.nsB, "100.64.0.1", 5*time.Second); err != nil {
				t.Fatal(err)
			}
			if err := ping(p.nsA, "fd7a:115c:a1e0::2", 5*time.Second); err != nil {
				t.Fatal(err)
			}
			// A large transfer exercises TSO/GSO/GRO and the in-flight bound.
			run(t, "ip", "netns", "exec", p.nsA, "ping", "-c", "3", "-s", "8000", "-i", "0.2", "100.64.0.2")
			ps := p.a.Peers()
			if len(ps) != 1 || ps[0].Key != p.kB.Public() || ps[0].Endpoint != wanB ||
				ps[0].LastHandshake.IsZero() || ps[0].RxBytes == 0 || ps[0].TxBytes == 0 {
				t.Fatalf("peer status %+v", ps)
			}
			if p.a.ListenPort() != 51820 {
				t.Fatalf("listen port %d", p.a.ListenPort())
			}
			flags := strings.TrimSpace(run(t, "ip", "netns", "exec", p.nsA, "cat", "/sys/class/net/lanmesh0/tun_flags"))
			if hasVnet := strings.HasSuffix(flags, "5001") || strings.Contains(flags, "0x5"); hasVnet != tt.off.TUN {
				t.Fatalf("tun_flags %s: IFF_VNET_HDR set=%v, want %v", flags, hasVnet, tt.off.TUN)
			}
			// Removing the peer stops traffic: the config is really applied.
			if _, err := p.a.Reconfig(Config{PrivateKey: p.kA, Addresses: []netip.Prefix{meshA}, Routes: []netip.Prefix{meshNet}}); err != nil {
				t.Fatal(err)
			}
			if err := try("ip", "netns", "exec", p.nsA, "ping", "-c", "1", "-W", "1", "100.64.0.2"); err == nil {
				t.Fatal("ping answered after the peer was removed")
			}
		})
	}
}

// The first candidate endpoint is dead; B has no endpoint for A, so only
// A's rotation can make the path.
func TestEndpointRotation(t *testing.T) {
	p := newPair(t, Options{Offloads: Offloads{TUN: true, UDPGSO: true, UDPGRO: true}})
	dead := netip.MustParseAddrPort("198.18.0.99:51820")
	p.configure(t, []netip.AddrPort{dead, wanB}, nil, nil, nil)
	start := time.Now()
	if err := ping(p.nsA, "100.64.0.2", 25*time.Second); err != nil {
		t.Fatalf("no path after rotation: %v", err)
	}
	t.Logf("path after %v", time.Since(start).Round(time.Second))
	if ps := p.a.Peers(); len(ps) != 1 || ps[0].Endpoint != wanB {
		t.Fatalf("peer status %+v, want endpoint %v", ps, wanB)
	}
}

// A LAN host behind B (no agent, no route to the mesh) is reachable from A
// through B's subnet route, because B masquerades. Without SNAT it is not,
// which shows the masquerade is what works.
func TestSubnetRouteSNAT(t *testing.T) {
	p := newPair(t, Options{Offloads: Offloads{TUN: true, UDPGSO: true, UDPGRO: true}})
	nsC := newNS(t)
	link(t, p.nsB, "lan0", "198.18.1.1/24", nsC, "eth0", "198.18.1.2/24")
	withRoute := func(c *Config) {
		c.Routes = append(c.Routes, lanB)
		c.Peers[0].AllowedIPs = append(c.Peers[0].AllowedIPs, lanB)
	}
	advertise := func(snat bool) func(*Config) {
		return func(c *Config) { c.AdvertisedRoutes = []netip.Prefix{lanB}; c.SNAT = snat }
	}
	p.configure(t, []netip.AddrPort{wanB}, []netip.AddrPort{wanA}, withRoute, advertise(false))
	if err := ping(p.nsA, "100.64.0.2", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := try("ip", "netns", "exec", p.nsA, "ping", "-c", "2", "-W", "1", "198.18.1.2"); err == nil {
		t.Fatal("LAN host answered without SNAT although it has no route back")
	}
	p.configure(t, []netip.AddrPort{wanB}, []netip.AddrPort{wanA}, withRoute, advertise(true))
	if err := ping(p.nsA, "198.18.1.2", 5*time.Second); err != nil {
		t.Fatalf("LAN host behind B unreachable with SNAT: %v", err)
	}
	if fwd := strings.TrimSpace(run(t, "ip", "netns", "exec", p.nsB, "cat", "/proc/sys/net/ipv4/ip_forward")); fwd != "1" {
		t.Fatalf("ip_forward = %s", fwd)
	}
}

// The table exists while the engine runs, holds the masquerade with SNAT,
// leaves other tables alone, and is gone after Close.
func TestFirewallTableLifecycle(t *testing.T) {
	requireRoot(t)
	ns := newNS(t)
	run(t, "ip", "netns", "exec", ns, "nft", "add", "table", "inet", "other")
	run(t, "ip", "netns", "exec", ns, "nft", "add", "chain", "inet", "other", "c")
	var e Engine
	var err error
	if nerr := inNS(ns, func() { e, err = New(Options{}, testLogger(t)) }); nerr != nil || err != nil {
		t.Fatal(nerr, err)
	}
	defer e.Close()
	list := func() (string, error) {
		out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", "inet", "lanmesh").CombinedOutput()
		return string(out), err
	}
	if out, err := list(); err != nil || !strings.Contains(out, "maxseg size set rt mtu") {
		t.Fatalf("table while running: %v\n%s", err, out)
	}
	k := key.NewNode()
	if _, err := e.Reconfig(Config{PrivateKey: k, Addresses: []netip.Prefix{meshA}, SNAT: true}); err != nil {
		t.Fatal(err)
	}
	if out, _ := list(); strings.Count(out, "masquerade") != 2 {
		t.Fatalf("want two masquerade rules with SNAT:\n%s", out)
	}
	if _, err := e.Reconfig(Config{PrivateKey: k, Addresses: []netip.Prefix{meshA}}); err != nil {
		t.Fatal(err)
	}
	if out, _ := list(); strings.Contains(out, "masquerade") {
		t.Fatalf("masquerade left after SNAT off:\n%s", out)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if out, err := list(); err == nil {
		t.Fatalf("table still present after Close:\n%s", out)
	}
	run(t, "ip", "netns", "exec", ns, "nft", "list", "table", "inet", "other")
	if err := try("ip", "-n", ns, "link", "show", "lanmesh0"); err == nil {
		t.Fatal("TUN still present after Close")
	}
	if _, err := e.Reconfig(Config{PrivateKey: k}); err != ErrClosed {
		t.Fatalf("Reconfig after Close = %v, want ErrClosed", err)
	}
}

// A kernel that refuses TUN offloads gets a TUN without them, and the data
// plane still works.
func TestTUNOffloadFallback(t *testing.T) {
	refuseTUNOffload = func() error { return unix.EINVAL }
	t.Cleanup(func() { refuseTUNOffload = nil })
	p := newPair(t, Options{Offloads: Offloads{TUN: true, UDPGSO: true, UDPGRO: true}})
	p.configure(t, []netip.AddrPort{wanB}, []netip.AddrPort{wanA}, nil, nil)
	if err := ping(p.nsA, "100.64.0.2", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	flags := strings.TrimSpace(run(t, "ip", "netns", "exec", p.nsA, "cat", "/sys/class/net/lanmesh0/tun_flags"))
	if flags != "0x1001" {
		t.Fatalf("tun_flags %s, want 0x1001 (IFF_TUN|IFF_NO_PI, no IFF_VNET_HDR)", flags)
	}
}

func TestReconfigRejects(t *testing.T) {
	requireRoot(t)
	ns := newNS(t)
	e := startEngine(t, ns, Options{})
	k := key.NewNode()
	for name, cfg := range map[string]Config{
		"no key":   {},
		"loopback": {PrivateKey: k, Routes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
		"metadata": {PrivateKey: k, Routes: []netip.Prefix{netip.MustParsePrefix("169.254.169.254/32")}},
		"default":  {PrivateKey: k, Routes: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}},
	} {
		if _, err := e.Reconfig(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Bad peers are left out and named, not an error for the whole
	// config (S19): TestReconfigLeavesOutBadPeers has the rest.
	rej, err := e.Reconfig(Config{PrivateKey: k, Peers: []Peer{{Key: k.Public(), Name: "me"}, {Name: "zero"}}})
	if err != nil || len(rej) != 2 {
		t.Errorf("own and zero key: rejected %v, err %v; want both left out, no error", rej, err)
	}
}

// S19: one bad peer in a config (a duplicate node key, an unroutable
// prefix) is left out and named; the device gets every other peer, traffic
// flows, and a later removal (revocation) still takes effect.
func TestReconfigLeavesOutBadPeers(t *testing.T) {
	p := newPair(t, Options{})
	kC := key.NewNode().Public()
	withBad := func(c *Config) {
		c.Peers = append(c.Peers,
			Peer{Key: p.kB.Public(), Name: "dup", AllowedIPs: []netip.Prefix{netip.MustParsePrefix("100.64.0.7/32")}},
			Peer{Key: key.NewNode().Public(), Name: "lo", AllowedIPs: []netip.Prefix{netip.MustParsePrefix("100.64.0.8/32"), netip.MustParsePrefix("127.0.0.0/8")}},
			Peer{Key: kC, Name: "c", AllowedIPs: []netip.Prefix{netip.MustParsePrefix("100.64.0.3/32")}},
		)
	}
	p.configure(t, []netip.AddrPort{wanB}, []netip.AddrPort{wanA}, withBad, nil)
	ca := Config{PrivateKey: p.kA, Addresses: []netip.Prefix{meshA, meshA6}, Routes: []netip.Prefix{meshNet, meshNet6},
		Peers: []Peer{{Key: p.kB.Public(), Name: "b", AllowedIPs: []netip.Prefix{meshB, meshB6}, Endpoints: []netip.AddrPort{wanB}}}, Filter: allowAll}
	withBad(&ca)
	rej, err := p.a.Reconfig(ca)
	if err != nil {
		t.Fatal(err)
	}
	if len(rej) != 2 || rej[0].Name != "dup" || !strings.Contains(rej[0].Reason, "already used") ||
		rej[1].Name != "lo" || !strings.Contains(rej[1].Reason, "127.0.0.0/8") {
		t.Fatalf("left out %+v, want dup (duplicate key) and lo (127.0.0.0/8)", rej)
	}
	if err := ping(p.nsA, "100.64.0.2", 10*time.Second); err != nil {
		t.Fatalf("the good peer does not work next to bad ones: %v", err)
	}
	var keys []key.NodePublic
	for _, ps := range p.a.Peers() {
		keys = append(keys, ps.Key)
	}
	if len(keys) != 2 || keys[0] != p.kB.Public() || keys[1] != kC {
		t.Fatalf("device peers %v, want b and c", keys)
	}
	// Revoke b: the bad peers are still in the config, the removal applies.
	ca.Peers = ca.Peers[1:]
	if rej, err := p.a.Reconfig(ca); err != nil || len(rej) != 1 || rej[0].Name != "lo" {
		t.Fatalf("after removing b: left out %+v, err %v; want only lo (dup is alone now)", rej, err)
	}
	if err := try("ip", "netns", "exec", p.nsA, "ping", "-c", "1", "-W", "1", "100.64.0.2"); err == nil {
		t.Fatal("b still answers after it was removed")
	}
}
