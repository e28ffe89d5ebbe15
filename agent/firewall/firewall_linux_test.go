package firewall

import (
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/wire"
)

func tcpRule(src, dst []netip.Prefix, ports ...uint16) wire.FilterRule {
	r := wire.FilterRule{Src: src, Dst: dst, Protos: []uint8{wire.ProtoTCP}}
	for _, p := range ports {
		r.Ports = append(r.Ports, wire.PortRange{First: p, Last: p})
	}
	return r
}

func baseConfig(f *wire.PacketFilter) Config {
	return Config{MeshIface: meshIf, SNAT: true, Filter: f,
		Addresses:        pfx("100.64.0.1/32", "fd7a:115c:a1e0::1/128"),
		AdvertisedRoutes: pfx("198.18.1.0/24")}
}

// TestInboundPorts: an allowed TCP port connects, any other port gets
// no answer (S3: the protocol and port of a rule are enforced, a UDP-only
// rule admits no TCP, an ICMP-only rule admits no TCP).
func TestInboundPorts(t *testing.T) {
	w := newWorld(t)
	w.set(t, baseConfig(&wire.PacketFilter{Inbound: []wire.FilterRule{
		tcpRule(pfx("100.64.0.2/32", "fd7a:115c:a1e0::2/128"), pfx("100.64.0.1/32", "fd7a:115c:a1e0::1/128"), 445),
		{Src: pfx("100.64.0.2/32"), Dst: pfx("100.64.0.1/32"), Protos: []uint8{wire.ProtoUDP}, Ports: []wire.PortRange{{First: 53, Last: 53}}},
		{Src: pfx("100.64.0.3/32"), Dst: pfx("100.64.0.1/32"), Protos: []uint8{wire.ProtoICMP}},
	}}))
	expect(t, "tcp 445", tcp(w.peer, peerMesh, nodeMesh, 445), true)
	expect(t, "tcp 445 over IPv6", tcp(w.peer, peerMesh6, nodeMesh6, 445), true)
	expect(t, "tcp 22", tcp(w.peer, peerMesh, nodeMesh, 22), false)
	expect(t, "tcp 22 over IPv6", tcp(w.peer, peerMesh6, nodeMesh6, 22), false)
	expect(t, "tcp 445 from a peer the rule does not name", tcp(w.peer, peerMesh2, nodeMesh, 445), false)
	expect(t, "udp 53 (S3 control)", udp(w.peer, peerMesh, nodeMesh, 53), true)
	expect(t, "S3: udp-only rule, tcp 53", tcp(w.peer, peerMesh, nodeMesh, 53), false)
	expect(t, "icmp-only rule, ping", ping(w.peer, peerMesh2, nodeMesh), true)
	expect(t, "S3: icmp-only rule, tcp 80", tcp(w.peer, peerMesh2, nodeMesh, 80), false)
	expect(t, "S3: icmp-only rule, udp 53", udp(w.peer, peerMesh2, nodeMesh, 53), false)
	expect(t, "ping from a peer with only a tcp rule", ping(w.peer, peerMesh, nodeMesh), false)
	// The node's own connections into the mesh are not the filter's
	// business: replies come back as established.
	expect(t, "node -> peer", tcp(w.node, nodeMesh, peerMesh, 22), true)
}

// TestStarSource: a filter compiled from src "*" (mesh range plus
// approved routes) never admits an address outside them (S2), even on
// the mesh interface.
func TestStarSource(t *testing.T) {
	w := newWorld(t)
	// What coord/policy emits for {"src": ["*"], "dst": ["node:80"]}.
	star := pfx("100.64.0.0/10", "fd7a:115c:a1e0::/48", "198.18.7.0/24")
	w.set(t, baseConfig(&wire.PacketFilter{Inbound: []wire.FilterRule{tcpRule(star, pfx("100.64.0.1/32"), 80)}}))
	expect(t, "mesh source", tcp(w.peer, peerMesh, nodeMesh, 80), true)
	expect(t, "S2: non-mesh source on the mesh interface", tcp(w.peer, peerWild, nodeMesh, 80), false)
}

// TestLANHostIsNotTheRouter: the router may reach the mesh, but a plain
// host on its LAN reaches it only when a Forward rule names its prefix
// (S1); SNAT is on, so the far side could not tell the two apart.
func TestLANHostIsNotTheRouter(t *testing.T) {
	w := newWorld(t)
	w.set(t, baseConfig(&wire.PacketFilter{}))
	expect(t, "router -> peer", tcp(w.node, nodeMesh, peerMesh, 80), true)
	expect(t, "S1: LAN host -> peer without a Forward rule", tcp(w.lan, lanHost, peerMesh, 80), false)

	w.set(t, baseConfig(&wire.PacketFilter{Forward: []wire.FilterRule{tcpRule(pfx("198.18.1.0/24"), pfx("100.64.0.2/32"), 80)}}))
	expect(t, "LAN host -> peer:80 with a Forward rule", tcp(w.lan, lanHost, peerMesh, 80), true)
	expect(t, "S1: LAN host -> peer:22, not in the rule", tcp(w.lan, lanHost, peerMesh, 22), false)
	expect(t, "S1: LAN host -> other peer, not in the rule", tcp(w.lan, lanHost, peerMesh2, 80), false)

	// A Forward rule for a LAN this node does not route opens nothing.
	cfg := baseConfig(&wire.PacketFilter{Forward: []wire.FilterRule{tcpRule(pfx("198.18.1.0/24"), pfx("100.64.0.2/32"), 80)}})
	cfg.AdvertisedRoutes = pfx("198.18.2.0/24")
	w.set(t, cfg)
	expect(t, "S1: Forward rule for a LAN not advertised", tcp(w.lan, lanHost, peerMesh, 80), false)
}

// TestMeshToLAN: Inbound rules for the routed LAN open the LAN host's
// port, never the router's own LAN address (S17: management addresses)
// nor other ports.
func TestMeshToLAN(t *testing.T) {
	w := newWorld(t)
	w.set(t, baseConfig(&wire.PacketFilter{Inbound: []wire.FilterRule{tcpRule(pfx("100.64.0.2/32"), pfx("198.18.1.0/24"), 445)}}))
	expect(t, "peer -> LAN host:445", tcp(w.peer, peerMesh, lanHost, 445), true)
	expect(t, "peer -> LAN host:22", tcp(w.peer, peerMesh, lanHost, 22), false)
	expect(t, "S17: peer -> router's LAN address:445", tcp(w.peer, peerMesh, nodeLAN, 445), false)
	expect(t, "peer -> router mesh address:445, no rule names it", tcp(w.peer, peerMesh, nodeMesh, 445), false)
}

// TestHostScopedRoute: even a rule for every destination behind an exit
// route never reaches link-local 169.254.169.254 (S17) unless a rule
// names it.
func TestHostScopedRoute(t *testing.T) {
	w := newWorld(t)
	cfg := baseConfig(&wire.PacketFilter{Inbound: []wire.FilterRule{tcpRule(pfx("100.64.0.2/32"), pfx("0.0.0.0/0"), 80)}})
	cfg.AdvertisedRoutes = pfx("0.0.0.0/0")
	w.set(t, cfg)
	expect(t, "peer -> LAN host:80 via default route", tcp(w.peer, peerMesh, lanHost, 80), true)
	expect(t, "S17: peer -> 169.254.169.254:80", tcp(w.peer, peerMesh, metadata, 80), false)

	cfg.Filter.Inbound = append(cfg.Filter.Inbound, tcpRule(pfx("100.64.0.2/32"), pfx("169.254.169.254/32"), 80))
	w.set(t, cfg)
	expect(t, "169.254.169.254:80 named by a rule", tcp(w.peer, peerMesh, metadata, 80), true)
}

// TestNilFilterBlocksAll: no filter from coord yet means nothing new in
// either direction (S14: fail closed).
func TestNilFilterBlocksAll(t *testing.T) {
	w := newWorld(t)
	cfg := baseConfig(nil)
	cfg.AdvertisedRoutes = pfx("0.0.0.0/0")
	w.set(t, cfg)
	expect(t, "S14: peer -> node", tcp(w.peer, peerMesh, nodeMesh, 80), false)
	expect(t, "S14: peer -> node udp", udp(w.peer, peerMesh, nodeMesh, 53), false)
	expect(t, "S14: peer ping node", ping(w.peer, peerMesh, nodeMesh), false)
	expect(t, "S14: peer -> LAN host", tcp(w.peer, peerMesh, lanHost, 80), false)
	expect(t, "S14: LAN host -> peer", tcp(w.lan, lanHost, peerMesh, 80), false)
}

// TestUpdateIsAtomic: 100 updates while an allowed flow keeps flowing
// and new connections keep being opened; none may fail (no window
// without rules). The rule must be back-to-back with a denied port so a
// window that admitted everything would show too.
func TestUpdateIsAtomic(t *testing.T) {
	w := newWorld(t)
	filter := func(i int) *wire.PacketFilter {
		// Each update changes the filter (a rule for a varying port), so
		// the kernel really replaces the sets.
		return &wire.PacketFilter{Inbound: []wire.FilterRule{
			tcpRule(pfx("100.64.0.2/32"), pfx("100.64.0.1/32"), 445),
			tcpRule(pfx("100.64.0.3/32"), pfx("100.64.0.1/32"), uint16(1000+i)),
		}}
	}
	w.set(t, baseConfig(filter(0)))

	// One long-lived flow, opened before the updates.
	var conn net.Conn
	var dialErr error
	inNS(w.peer, func() {
		d := net.Dialer{Timeout: dialTimeout, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(peerMesh, 0))}
		conn, dialErr = d.Dial("tcp", "100.64.0.1:445")
	})
	if dialErr != nil {
		t.Fatal(dialErr)
	}
	defer conn.Close()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var flowErr, newErr atomic.Value
	var flowed, opened atomic.Int64
	wg.Add(2)
	go func() { // established flow
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := echo(conn); err != nil {
				flowErr.Store(err)
				return
			}
			flowed.Add(1)
		}
	}()
	go func() { // new connections
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := tcp(w.peer, peerMesh, nodeMesh, 445); err != nil {
				newErr.Store(err)
				return
			}
			opened.Add(1)
		}
	}()
	start := time.Now()
	for i := range 100 {
		w.set(t, baseConfig(filter(i+1)))
	}
	took := time.Since(start)
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("100 updates in %v; %d echoes on the old flow, %d new connections meanwhile", took, flowed.Load(), opened.Load())
	if err := flowErr.Load(); err != nil {
		t.Errorf("established flow broke during updates: %v", err)
	}
	if err := newErr.Load(); err != nil {
		t.Errorf("new connection failed during updates: %v", err)
	}
	if opened.Load() == 0 || flowed.Load() == 0 {
		t.Error("no traffic during the updates")
	}
	expect(t, "denied port after the updates", tcp(w.peer, peerMesh, nodeMesh, 22), false)
}

// TestCloseLeavesNothing: Close removes the table; with it gone the
// namespace has no rules of ours.
func TestCloseLeavesNothing(t *testing.T) {
	w := newWorld(t)
	w.set(t, baseConfig(&wire.PacketFilter{Inbound: []wire.FilterRule{tcpRule(pfx("100.64.0.2/32"), pfx("100.64.0.1/32"), 445)}}))
	if out := run(t, "ip", "netns", "exec", w.node, "nft", "list", "ruleset"); !strings.Contains(out, "table inet lanmesh") {
		t.Fatalf("table missing:\n%s", out)
	}
	inNS(w.node, func() { w.fw.Close() })
	if out := run(t, "ip", "netns", "exec", w.node, "nft", "list", "ruleset"); strings.TrimSpace(out) != "" {
		t.Fatalf("rules left after Close:\n%s", out)
	}
}

// fw4Ruleset is a reduced OpenWrt fw4 ruleset: zones with drop
// policies, and a "mesh" zone for lanmesh0 the way the firmware's
// uci-defaults add it (input ACCEPT, forwarding mesh<->lan). Without
// that zone fw4 would drop mesh traffic before or after our table.
const fw4Ruleset = `
table inet fw4 {
	chain input {
		type filter hook input priority filter; policy drop;
		iifname "lo" accept
		ct state established,related accept
		iifname "lanmesh0" jump input_mesh
		iifname "lan0" jump input_lan
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "lanmesh0" jump forward_mesh
		iifname "lan0" jump forward_lan
	}
	chain output {
		type filter hook output priority filter; policy accept;
	}
	chain input_mesh {
		accept
	}
	chain input_lan {
		tcp dport 22 accept
		drop
	}
	chain forward_mesh {
		oifname "lan0" accept
	}
	chain forward_lan {
		oifname "lanmesh0" accept
	}
	chain srcnat {
		type nat hook postrouting priority srcnat; policy accept;
	}
}
`

// TestCoexistsWithFW4: our table and an OpenWrt fw4-style table in one
// namespace. fw4 keeps deciding its zones (the LAN may reach the router
// only on 22), our ACL still decides for the mesh even though fw4's mesh
// zone accepts all (S3), and our updates and Close leave fw4 intact.
func TestCoexistsWithFW4(t *testing.T) {
	w := newWorld(t)
	f := tempFile(t, fw4Ruleset)
	run(t, "ip", "netns", "exec", w.node, "nft", "-f", f)
	before := run(t, "ip", "netns", "exec", w.node, "nft", "list", "table", "inet", "fw4")

	w.set(t, baseConfig(&wire.PacketFilter{
		Inbound: []wire.FilterRule{tcpRule(pfx("100.64.0.2/32"), pfx("100.64.0.1/32", "198.18.1.0/24"), 445)},
		Forward: []wire.FilterRule{tcpRule(pfx("198.18.1.0/24"), pfx("100.64.0.2/32"), 80)},
	}))
	expect(t, "peer -> node:445 (both allow)", tcp(w.peer, peerMesh, nodeMesh, 445), true)
	expect(t, "peer -> node:22 (fw4 allows, we deny)", tcp(w.peer, peerMesh, nodeMesh, 22), false)
	expect(t, "peer -> LAN host:445", tcp(w.peer, peerMesh, lanHost, 445), true)
	expect(t, "LAN host -> peer:80", tcp(w.lan, lanHost, peerMesh, 80), true)
	expect(t, "S1: LAN host -> peer:22", tcp(w.lan, lanHost, peerMesh, 22), false)
	expect(t, "fw4 still rules its LAN zone: LAN -> router:22", tcp(w.lan, lanHost, nodeLAN, 22), true)
	expect(t, "fw4 still rules its LAN zone: LAN -> router:80", tcp(w.lan, lanHost, nodeLAN, 80), false)

	inNS(w.node, func() { w.fw.Close() })
	after := run(t, "ip", "netns", "exec", w.node, "nft", "list", "table", "inet", "fw4")
	if before != after {
		t.Errorf("fw4 changed by our table:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func tempFile(t *testing.T, content string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "fw4-*.nft")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return f.Name()
}
