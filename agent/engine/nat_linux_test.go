package engine

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/derp"
	"github.com/lanmesh/lanmesh/derp/stun"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// natWorld is two sites behind masquerading NAT boxes and an "internet"
// namespace that routes between their WANs and runs the relay (TLS on
// 443, pinned) and STUN (3478) on 198.18.0.1.
type natWorld struct {
	inet, natA, natB, a, b string
	dm                     *wire.DERPMap
}

var allowAll = &wire.PacketFilter{Inbound: []wire.FilterRule{{
	Src:    []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")},
	Dst:    []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")},
	Protos: []uint8{1, 6, 17, 58}, Ports: []wire.PortRange{{First: 0, Last: 65535}},
}}}

func newNATWorld(t *testing.T) *natWorld {
	requireRoot(t)
	w := &natWorld{inet: newNS(t), natA: newNS(t), natB: newNS(t), a: newNS(t), b: newNS(t)}
	run(t, "ip", "-n", w.inet, "addr", "add", "198.18.0.1/32", "dev", "lo")
	link(t, w.inet, "wa", "198.18.10.1/24", w.natA, "wan", "198.18.10.2/24")
	link(t, w.inet, "wb", "198.18.20.1/24", w.natB, "wan", "198.18.20.2/24")
	link(t, w.natA, "lan", "198.18.11.1/24", w.a, "eth0", "198.18.11.2/24")
	link(t, w.natB, "lan", "198.18.21.1/24", w.b, "eth0", "198.18.21.2/24")
	for _, n := range []struct{ ns, gw string }{{w.natA, "198.18.10.1"}, {w.natB, "198.18.20.1"}, {w.a, "198.18.11.1"}, {w.b, "198.18.21.1"}} {
		run(t, "ip", "-n", n.ns, "route", "add", "default", "via", n.gw)
	}
	for _, ns := range []string{w.inet, w.natA, w.natB} {
		run(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	}
	for _, ns := range []string{w.natA, w.natB} {
		// Like a home router: unsolicited packets to the box itself are
		// dropped. Accepting them would leave a conntrack entry whose
		// reply tuple clashes with the mapping hole punching needs, and
		// masquerade would pick another port.
		nft(t, ns, "table ip lmnat {\n chain post {\n  type nat hook postrouting priority srcnat;\n  oifname \"wan\" masquerade\n }\n"+
			" chain in {\n  type filter hook input priority 0;\n  iifname \"wan\" ct state new drop\n }\n}\n")
	}
	w.startRelay(t)
	return w
}

func nft(t *testing.T, ns, rules string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in %s: %v\n%s", ns, err, out)
	}
}

// blockUDP makes ns's NAT box drop all forwarded UDP: only TCP (the relay
// on 443) gets through.
func blockUDP(t *testing.T, ns string) {
	nft(t, ns, "table inet lmblock {\n chain forward_udp {\n  type filter hook forward priority 0;\n  meta l4proto udp drop\n }\n}\n")
}

func (w *natWorld) startRelay(t *testing.T) {
	var ln net.Listener
	var pc net.PacketConn
	var err, perr error
	if nerr := inNS(w.inet, func() {
		ln, err = net.Listen("tcp", "198.18.0.1:443")
		pc, perr = net.ListenPacket("udp4", "198.18.0.1:3478")
	}); nerr != nil || err != nil || perr != nil {
		t.Fatal(nerr, err, perr)
	}
	srv, err := derp.NewServer(derp.Options{Verifier: derp.VerifierFunc(func(context.Context, key.NodePublic) (bool, error) { return true, nil })})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(derp.Path, srv)
	ts := httptest.NewUnstartedServer(mux)
	ts.Listener.Close()
	ts.Listener = ln
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	ctx, cancel := context.WithCancel(context.Background())
	go (&stun.Server{}).Serve(ctx, pc.(*net.UDPConn))
	t.Cleanup(func() { cancel(); pc.Close(); srv.Close(); ts.Close() })
	w.dm = &wire.DERPMap{Regions: []wire.DERPRegion{{ID: 1, Code: "tst", Name: "test", Nodes: []wire.DERPNode{{
		Name: "1a", HostName: "relay.test", IPv4: netip.MustParseAddr("198.18.0.1"),
		CertFingerprint: wire.Fingerprint(ts.Certificate().Raw),
	}}}}}
}

type nodeCfg struct {
	e    Engine
	k    key.NodePrivate
	addr netip.Prefix
}

type endpointer interface{ LocalEndpoints() []netip.AddrPort }

// connect configures both engines with the relay map, waits for each to
// learn its STUN-mapped endpoint, and hands each the other's endpoints
// (what coord does).
func (w *natWorld) connect(t *testing.T, a, b nodeCfg, wantMapped bool) {
	t.Helper()
	cfg := func(self, peer nodeCfg, eps []netip.AddrPort) Config {
		return Config{PrivateKey: self.k, Addresses: []netip.Prefix{self.addr}, Routes: []netip.Prefix{meshNet},
			Filter: allowAll, DERPMap: w.dm,
			Peers: []Peer{{Key: peer.k.Public(), Name: "peer", AllowedIPs: []netip.Prefix{peer.addr}, Endpoints: eps}}}
	}
	for _, n := range [][2]nodeCfg{{a, b}, {b, a}} {
		if _, err := n[0].e.Reconfig(cfg(n[0], n[1], nil)); err != nil {
			t.Fatal(err)
		}
	}
	epsOf := func(n nodeCfg, wanPrefix string) []netip.AddrPort {
		deadline := time.Now().Add(10 * time.Second)
		for {
			eps := n.e.(endpointer).LocalEndpoints()
			for _, ep := range eps {
				if !wantMapped || strings.HasPrefix(ep.Addr().String(), wanPrefix) {
					return eps
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no STUN-mapped endpoint in %v", eps)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	epA, epB := epsOf(a, "198.18.10."), epsOf(b, "198.18.20.")
	t.Logf("endpoints: a %v, b %v", epA, epB)
	if _, err := a.e.Reconfig(cfg(a, b, epB)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.e.Reconfig(cfg(b, a, epA)); err != nil {
		t.Fatal(err)
	}
}

func waitPath(t *testing.T, e Engine, prefix string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	var path string
	for time.Now().Before(deadline) {
		if ps := e.Peers(); len(ps) == 1 {
			path = ps[0].Path
			if strings.HasPrefix(path, prefix) {
				return path
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("path %q after %v, want %q...", path, within, prefix)
	return ""
}

func (w *natWorld) engines(t *testing.T) (nodeCfg, nodeCfg) {
	opts := Options{ListenPort: 41641, Offloads: Offloads{TUN: true, UDPGSO: true, UDPGRO: true}}
	a := nodeCfg{e: startEngine(t, w.a, opts), k: key.NewNode(), addr: meshA}
	b := nodeCfg{e: startEngine(t, w.b, opts), k: key.NewNode(), addr: meshB}
	return a, b
}

// Two nodes behind easy NATs: traffic flows at once (relay first), the
// path becomes direct through both NATs, and when UDP dies the path falls
// back to the relay and traffic keeps flowing.
func TestNATEasyEasyDirect(t *testing.T) {
	w := newNATWorld(t)
	a, b := w.engines(t)
	start := time.Now()
	w.connect(t, a, b, true)
	if err := ping(w.a, "100.64.0.2", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("time to first packet: %v", time.Since(start).Round(time.Millisecond))
	path := waitPath(t, a.e, "direct 198.18.20.2:", 15*time.Second)
	waitPath(t, b.e, "direct 198.18.10.2:", 15*time.Second)
	t.Logf("time to direct: %v (%s)", time.Since(start).Round(time.Millisecond), path)
	if err := ping(w.b, "100.64.0.1", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if ps := a.e.Peers(); ps[0].Endpoint.String() != strings.TrimPrefix(path, "direct ") {
		t.Fatalf("Endpoint %v does not match path %q", ps[0].Endpoint, path)
	}

	// Traffic keeps flowing during the cut, as in real use: data sent into
	// silence makes disco check the path at once (goal: relay within 5 s).
	flow := exec.Command("ip", "netns", "exec", w.a, "ping", "-q", "-i", "0.2", "-w", "30", "100.64.0.2")
	if err := flow.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { flow.Process.Kill(); flow.Wait() })
	time.Sleep(500 * time.Millisecond) // the flow is under way on the direct path
	blockUDP(t, w.natA)
	run(t, "ip", "netns", "exec", w.natA, "conntrack", "-F")
	cut := time.Now()
	waitPath(t, a.e, "relay tst", 10*time.Second)
	took := time.Since(cut)
	t.Logf("fell back to the relay after %v", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("fallback took %v with traffic flowing, goal under 5 s", took.Round(time.Millisecond))
	}
	if err := ping(w.a, "100.64.0.2", 15*time.Second); err != nil {
		t.Fatalf("no traffic over the relay after the direct path died: %v", err)
	}
}

// With UDP blocked at one NAT, the pair stays on the relay (TCP 443) and
// still exchanges traffic.
func TestNATUDPBlockedRelay(t *testing.T) {
	w := newNATWorld(t)
	blockUDP(t, w.natA)
	a, b := w.engines(t)
	start := time.Now()
	w.connect(t, a, b, false)
	if err := ping(w.a, "100.64.0.2", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("time to first packet over the relay: %v", time.Since(start).Round(time.Millisecond))
	if err := ping(w.b, "100.64.0.1", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(6 * time.Second) // more than a relay probe round
	for _, e := range []Engine{a.e, b.e} {
		if ps := e.Peers(); len(ps) != 1 || ps[0].Path != "relay tst" || ps[0].Endpoint.IsValid() {
			t.Fatalf("peer status %+v, want relay tst", ps)
		}
	}
	run(t, "ip", "netns", "exec", w.a, "ping", "-c", "3", "-i", "0.2", "-s", "1200", "100.64.0.2")
}
