package netcheck

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/derp/stun"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// startSTUN runs a real STUN server on addr until the test ends.
func startSTUN(t *testing.T, network, addr string) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	return serveSTUN(t, pc)
}

func serveSTUN(t *testing.T, pc net.PacketConn) netip.AddrPort {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); (&stun.Server{}).Serve(ctx, pc.(*net.UDPConn)) }()
	t.Cleanup(func() { cancel(); <-done })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

func stunNode(ap netip.AddrPort) wire.DERPNode {
	n := wire.DERPNode{Name: ap.String(), STUNPort: int(ap.Port()), DERPPort: 1}
	if ap.Addr().Is4() {
		n.IPv4 = ap.Addr()
	} else {
		n.IPv6 = ap.Addr()
	}
	return n
}

func region(id int, nodes ...wire.DERPNode) wire.DERPRegion {
	return wire.DERPRegion{ID: id, Code: "r" + string(rune('0'+id)), Nodes: nodes}
}

func listen(t *testing.T, network, addr string) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

// Two real STUN servers on loopback at two ports, one dual-stack socket:
// UDP, IPv4 and IPv6 work, the mapping does not vary (no NAT), and each
// region has a latency.
func TestLoopbackServers(t *testing.T) {
	s1 := startSTUN(t, "udp4", "127.0.0.1:0")
	s2 := startSTUN(t, "udp4", "127.0.0.1:0")
	s6 := startSTUN(t, "udp6", "[::1]:0")
	conn := listen(t, "udp", ":0")
	c, err := New(Config{Conn: conn})
	if err != nil {
		t.Fatal(err)
	}
	dm := &wire.DERPMap{Regions: []wire.DERPRegion{region(1, stunNode(s1)), region(2, stunNode(s2)), region(3, stunNode(s6))}}
	start := time.Now()
	r, err := c.Run(context.Background(), dm)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("took %v although every server answered at once", took)
	}
	port := conn.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	want := []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)}
	if !r.UDP || !r.IPv4 || !r.IPv6 || !slices.Equal(r.GlobalV4, want) {
		t.Fatalf("report %+v, want UDP, IPv4, IPv6 and global %v", r, want)
	}
	if r.GlobalV6 != netip.AddrPortFrom(netip.MustParseAddr("::1"), port) {
		t.Fatalf("global v6 %v", r.GlobalV6)
	}
	if r.MappingVariesByDest == nil || *r.MappingVariesByDest {
		t.Fatalf("mapping varies = %v, want known false", r.MappingVariesByDest)
	}
	for id := 1; id <= 3; id++ {
		if r.RegionLatency[id] <= 0 {
			t.Fatalf("region %d has no latency: %+v", id, r.RegionLatency)
		}
	}
	if _, ok := r.RegionV6Latency[3]; !ok || len(r.RegionHTTPSLatency) != 0 || r.PreferredRegion == 0 {
		t.Fatalf("report %+v", r)
	}
	// The socket is the caller's and still works afterwards.
	if _, err := conn.WriteTo([]byte("x"), net.UDPAddrFromAddrPort(s1)); err != nil {
		t.Fatal(err)
	}
}

// UDP blocked: no STUN server answers. The check says so within its
// timeout and falls back to TLS latency to the relays, which proves the
// relay's pinned certificate.
func TestUDPBlockedFallsBackToHTTPS(t *testing.T) {
	silent := listen(t, "udp4", "127.0.0.1:0") // receives, never answers
	silentAP := silent.LocalAddr().(*net.UDPAddr).AddrPort()
	good := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(good.Close)
	impostor := httptest.NewUnstartedServer(http.NotFoundHandler())
	impostor.TLS = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}
	impostor.Config.ErrorLog = log.New(io.Discard, "", 0) // its failed handshakes are the point
	impostor.StartTLS()
	t.Cleanup(impostor.Close)
	relay := func(ts *httptest.Server, pin string) wire.DERPNode {
		ap := netip.MustParseAddrPort(ts.Listener.Addr().String())
		return wire.DERPNode{Name: "relay", IPv4: ap.Addr(), DERPPort: int(ap.Port()),
			STUNPort: int(silentAP.Port()), CertFingerprint: pin}
	}
	pin := wire.Fingerprint(good.Certificate().Raw)
	dm := &wire.DERPMap{Regions: []wire.DERPRegion{
		region(1, relay(good, pin)),
		region(2, relay(impostor, pin)), // answers TCP, but not with the pinned cert
	}}
	c, err := New(Config{Conn: listen(t, "udp4", "127.0.0.1:0"), STUNTimeout: 800 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r, err := c.Run(context.Background(), dm)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("took %v with an 800 ms STUN timeout", took)
	}
	if r.UDP || r.IPv4 || r.IPv6 || len(r.GlobalV4) != 0 || r.MappingVariesByDest != nil {
		t.Fatalf("report claims UDP works: %+v", r)
	}
	if r.RegionHTTPSLatency[1] <= 0 || r.RegionLatency[1] != r.RegionHTTPSLatency[1] {
		t.Fatalf("no relay latency for region 1: %+v", r)
	}
	if _, ok := r.RegionHTTPSLatency[2]; ok {
		t.Fatal("a relay with the wrong certificate got a latency")
	}
	if r.PreferredRegion != 1 {
		t.Fatalf("preferred region %d, want 1", r.PreferredRegion)
	}
}

// Shared-socket mode (magicsock): netcheck only sends; the socket's owner
// feeds it STUN packets. Answers from anyone but the server asked are
// ignored.
func TestSharedSocket(t *testing.T) {
	s1 := startSTUN(t, "udp4", "127.0.0.1:0")
	s2 := startSTUN(t, "udp4", "127.0.0.1:0")
	conn := listen(t, "udp4", "127.0.0.1:0")
	var c *Checker
	c, err := New(Config{Send: func(pkt []byte, dst netip.AddrPort) error {
		_, err := conn.WriteTo(pkt, net.UDPAddrFromAddrPort(dst))
		return err
	}})
	if err != nil {
		t.Fatal(err)
	}
	spoofed := make(chan bool, 16)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			src := from.(*net.UDPAddr).AddrPort()
			// Replay each answer as if from another address first.
			spoofed <- c.HandleSTUN(buf[:n], netip.AddrPortFrom(src.Addr(), src.Port()+1))
			c.HandleSTUN(buf[:n], src)
		}
	}()
	dm := &wire.DERPMap{Regions: []wire.DERPRegion{region(1, stunNode(s1), stunNode(s2))}}
	r, err := c.Run(context.Background(), dm)
	if err != nil {
		t.Fatal(err)
	}
	if !r.UDP || r.MappingVariesByDest == nil || *r.MappingVariesByDest || r.PreferredRegion != 1 {
		t.Fatalf("report %+v", r)
	}
	if <-spoofed {
		t.Fatal("an answer from the wrong address was accepted")
	}
	if c.HandleSTUN([]byte("not stun"), s1) {
		t.Fatal("garbage accepted")
	}
}

// selfSigned returns a fresh certificate (httptest's servers all share one).
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}
}

func TestConfigErrors(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("no Conn and no Send accepted")
	}
	c, _ := New(Config{Send: func([]byte, netip.AddrPort) error { return nil }})
	if _, err := c.Run(context.Background(), &wire.DERPMap{}); err == nil {
		t.Fatal("empty map accepted")
	}
	if _, err := c.Run(context.Background(), &wire.DERPMap{Regions: []wire.DERPRegion{{ID: 0}}}); err == nil {
		t.Fatal("invalid map accepted")
	}
}

func TestPreferred(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		lat  map[int]time.Duration
		want int
	}{
		{nil, 0},
		{map[int]time.Duration{3: 5 * ms, 1: 9 * ms}, 3},
		{map[int]time.Duration{3: 5 * ms, 2: 5 * ms}, 2},
	} {
		if got := preferred(tc.lat); got != tc.want {
			t.Errorf("preferred(%v) = %d, want %d", tc.lat, got, tc.want)
		}
	}
}

// A relay node known only by host name is still STUN-probed: the name is
// resolved (here by a resolver that knows it) and an unresolvable one is
// skipped without spoiling the report.
func TestHostNameOnlyNode(t *testing.T) {
	s := startSTUN(t, "udp4", "127.0.0.1:0")
	conn := listen(t, "udp4", "127.0.0.1:0")
	var asked []string
	c, err := New(Config{Conn: conn, STUNTimeout: time.Second, HTTPSTimeout: 100 * time.Millisecond,
		Resolve: func(_ context.Context, host string) ([]netip.Addr, error) {
			asked = append(asked, host)
			if host == "relay.test" {
				return []netip.Addr{netip.MustParseAddr("::ffff:127.0.0.1"), netip.MustParseAddr("127.0.0.2")}, nil
			}
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}})
	if err != nil {
		t.Fatal(err)
	}
	dm := &wire.DERPMap{Regions: []wire.DERPRegion{
		region(1, wire.DERPNode{Name: "1a", HostName: "relay.test", STUNPort: int(s.Port()), DERPPort: 1}),
		region(2, wire.DERPNode{Name: "2a", HostName: "gone.test", DERPPort: 1}),
	}}
	r, err := c.Run(context.Background(), dm)
	if err != nil {
		t.Fatal(err)
	}
	if !r.UDP || !r.IPv4 || len(r.GlobalV4) != 1 || r.GlobalV4[0] != conn.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Fatalf("report %+v", r)
	}
	if _, ok := r.RegionV4Latency[1]; !ok || r.PreferredRegion != 1 {
		t.Fatalf("region 1 not measured by STUN: %+v", r)
	}
	if !slices.Equal(asked, []string{"relay.test", "gone.test"}) {
		t.Fatalf("resolved %v", asked)
	}
}
