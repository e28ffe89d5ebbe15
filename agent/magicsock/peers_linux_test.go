package magicsock

import (
	"bytes"
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/lanmesh/lanmesh/agent/disco"
	"github.com/lanmesh/lanmesh/derp"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// startRelay runs a real relay on loopback (pinned TLS) as region id.
func startRelay(t *testing.T, id int, code string) wire.DERPRegion {
	t.Helper()
	srv, err := derp.NewServer(derp.Options{Verifier: derp.VerifierFunc(func(context.Context, key.NodePublic) (bool, error) { return true, nil })})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(derp.Path, srv)
	ts := httptest.NewUnstartedServer(mux)
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	t.Cleanup(func() { srv.Close(); ts.Close() })
	ap := ts.Listener.Addr().(*net.TCPAddr).AddrPort()
	return wire.DERPRegion{ID: id, Code: code, Name: code, Nodes: []wire.DERPNode{{
		Name: code + "a", HostName: "relay.test", IPv4: ap.Addr(), DERPPort: int(ap.Port()), STUNPort: -1,
		CertFingerprint: wire.Fingerprint(ts.Certificate().Raw),
	}}}
}

// wgInit is a WireGuard handshake initiation as far as magicsock looks.
func wgInit(tag byte) []byte {
	b := make([]byte, 148)
	b[0], b[4] = 1, tag
	return b
}

func wgResp(tag byte) []byte {
	b := make([]byte, 92)
	b[0], b[4] = 2, tag
	return b
}

func wgData(tag byte) []byte {
	b := make([]byte, 64)
	b[0], b[4] = 4, tag
	return b
}

// openConn opens c on loopback and collects what its ReceiveFuncs hand
// to WireGuard, with the endpoint each came with.
type got struct {
	pkt []byte
	ep  conn.Endpoint
}

func openConn(t *testing.T, c *Conn) chan got {
	t.Helper()
	c.ifaceEndpoints = func(uint16, string) []netip.AddrPort { return nil }
	c.noNetcheck = true // home region: the map's first
	fns, _, err := c.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); c.Shutdown() })
	ch := make(chan got, 64)
	for _, fn := range fns {
		go func() {
			bs := c.BatchSize()
			bufs := make([][]byte, bs)
			for i := range bufs {
				bufs[i] = make([]byte, 2048)
			}
			sizes, eps := make([]int, bs), make([]conn.Endpoint, bs)
			for {
				n, err := fn(bufs, sizes, eps)
				if err != nil {
					return
				}
				for i := 0; i < n; i++ {
					if sizes[i] > 0 {
						ch <- got{bytes.Clone(bufs[i][:sizes[i]]), eps[i]}
					}
				}
			}
		}()
	}
	return ch
}

func recvWithin(t *testing.T, ch chan got, d time.Duration, what string) got {
	t.Helper()
	select {
	case g := <-ch:
		return g
	case <-time.After(d):
		t.Fatalf("%s: nothing received within %v", what, d)
		return got{}
	}
}

// Peer logic on its own: a handshake sent before any path is held and
// flushed when the relay connects; relayed packets come with the peer's
// endpoint; a proven direct path carries sends and maps received packets
// to the peer; a suspect direct path also sends over the relay; a peer in
// another region is reached through a second relay connection, which is
// closed when idle.
func TestPeerRelayLogic(t *testing.T) {
	r1, r2 := startRelay(t, 1, "one"), startRelay(t, 2, "two")
	dm := &wire.DERPMap{Regions: []wire.DERPRegion{r1, r2}}
	ka, kb := key.NewNode(), key.NewNode()
	if pa, pb := ka.Public(), kb.Public(); bytes.Compare(pa[:], pb[:]) > 0 {
		ka, kb = kb, ka // A has the smaller key: its resends never yield
	}
	a, b := New(Options{}), New(Options{})
	a.regionIdle = 300 * time.Millisecond
	chA, chB := openConn(t, a), openConn(t, b)

	// Before SetConfig gives a relay map, A has no path to B: the
	// initiation is held, other packets fail with ErrNoPath.
	epB, err := a.ParseEndpoint(kb.Public().Hex())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Send([][]byte{wgInit(7)}, epB); err != nil {
		t.Fatalf("initiation without a path: %v, want held", err)
	}
	if err := a.Send([][]byte{wgData(1)}, epB); err != ErrNoPath {
		t.Fatalf("data without a path: %v, want ErrNoPath", err)
	}
	if err := b.SetConfig(kb, []Peer{{Key: ka.Public(), HomeRegion: 1}}, dm); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return b.relayCodeNow() == "one" }, "B on the relay") // else the relay drops A's flush
	if err := a.SetConfig(ka, []Peer{{Key: kb.Public(), HomeRegion: 1}}, dm); err != nil {
		t.Fatal(err)
	}
	g := recvWithin(t, chB, 5*time.Second, "held initiation over the relay")
	if g.pkt[0] != 1 || g.pkt[4] != 7 {
		t.Fatalf("B got %x, want the held initiation", g.pkt[:8])
	}
	if e, ok := g.ep.(*Endpoint); !ok || e.Key() != ka.Public() {
		t.Fatalf("relayed packet endpoint %v, want A's key", g.ep)
	}
	if p, _ := a.PeerPath(kb.Public()); p != "relay one" {
		t.Fatalf("A's path %q, want relay one", p)
	}

	// A direct path (as disco would report it): sends go there, and what
	// arrives from there maps to the peer's endpoint.
	epA, _ := b.ParseEndpoint(ka.Public().Hex())
	addrA := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), a.Port())
	addrB := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), b.Port())
	b.onPath(ka.Public(), disco.Path{Direct: addrA})
	a.onPath(kb.Public(), disco.Path{Direct: addrB})
	// The initiation that went over the relay goes once more over the new
	// direct path: over the relay it may have beaten coord's netmap to B.
	g = recvWithin(t, chB, 2*time.Second, "relayed initiation resent directly")
	if g.pkt[0] != 1 || g.pkt[4] != 7 || g.ep != epA {
		t.Fatalf("resend: got %x ep %v, want initiation 7 from A's endpoint", g.pkt[:8], g.ep)
	}
	if err := a.Send([][]byte{wgData(2)}, epB); err != nil {
		t.Fatal(err)
	}
	g = recvWithin(t, chB, 2*time.Second, "direct data")
	if g.pkt[4] != 2 || g.ep != epA {
		t.Fatalf("direct: got tag %d ep %v, want 2 and A's endpoint", g.pkt[4], g.ep)
	}
	if sent, _ := a.activity(kb.Public()); time.Since(sent) > time.Second {
		t.Fatalf("direct send not recorded: %v", sent)
	}
	if _, recv := b.activity(ka.Public()); time.Since(recv) > time.Second {
		t.Fatalf("direct receive not recorded: %v", recv)
	}
	// From an address that is no peer's path: a bare endpoint.
	stranger, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	stranger.WriteToUDPAddrPort(wgData(3), addrB)
	g = recvWithin(t, chB, 2*time.Second, "stranger's packet")
	if e := g.ep.(*Endpoint); !e.Key().IsZero() || e.DstToString() != stranger.LocalAddr().String() {
		t.Fatalf("stranger mapped to %v", g.ep.DstToString())
	}

	// Suspect: each send goes direct and over the relay.
	a.onSuspect(kb.Public(), true)
	if err := a.Send([][]byte{wgData(4)}, epB); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if g = recvWithin(t, chB, 2*time.Second, "suspect copies"); g.pkt[4] != 4 {
			t.Fatalf("got tag %d, want 4", g.pkt[4])
		}
	}
	a.onPath(kb.Public(), disco.Path{}) // back on the relay: suspect ends
	if a.knownEndpoint(kb.Public()).suspect.Load() {
		t.Fatal("still suspect after the path changed")
	}

	// C lives in region 2: A dials region 2 for it; C answers through A's
	// home region, as its netmap says.
	kc := key.NewNode()
	c := New(Options{})
	chC := openConn(t, c)
	dmC := &wire.DERPMap{Regions: []wire.DERPRegion{r2, r1}} // C's home: region 2 (first)
	if err := c.SetConfig(kc, []Peer{{Key: ka.Public(), HomeRegion: 1}}, dmC); err != nil {
		t.Fatal(err)
	}
	if err := a.SetConfig(ka, []Peer{{Key: kb.Public(), HomeRegion: 1}, {Key: kc.Public(), HomeRegion: 2}}, dm); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return c.relayCodeNow() == "two" }, "C on region two")
	epC, _ := a.ParseEndpoint(kc.Public().Hex())
	if err := a.Send([][]byte{wgInit(5)}, epC); err != nil {
		t.Fatal(err)
	}
	g = recvWithin(t, chC, 5*time.Second, "initiation through region two")
	if g.pkt[4] != 5 || g.ep.(*Endpoint).Key() != ka.Public() {
		t.Fatalf("C got tag %d from %v", g.pkt[4], g.ep)
	}
	if p, _ := a.PeerPath(kc.Public()); p != "relay two" {
		t.Fatalf("A's path to C %q, want relay two", p)
	}
	epAc, _ := c.ParseEndpoint(ka.Public().Hex())
	if err := c.Send([][]byte{wgResp(6)}, epAc); err != nil {
		t.Fatal(err)
	}
	if g = recvWithin(t, chA, 5*time.Second, "C's answer via region one"); g.pkt[4] != 6 {
		t.Fatalf("A got tag %d", g.pkt[4])
	}
	// Unused, the region connection closes; the next send opens it again.
	waitUntil(t, func() bool { a.relayMu.Lock(); defer a.relayMu.Unlock(); return len(a.regions) == 0 }, "idle region closed")
	if err := a.Send([][]byte{wgInit(8)}, epC); err != nil {
		t.Fatal(err)
	}
	if g = recvWithin(t, chC, 5*time.Second, "after reopening region two"); g.pkt[4] != 8 {
		t.Fatalf("C got tag %d", g.pkt[4])
	}
}

func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s", what)
		}
	}
}

// Crossed initiations: the smaller key, having just sent an initiation,
// holds back the one initiation of the peer that crosses it, so the peer's
// response to ours reaches wireguard-go alone (see crossing.go). Order on
// one relay connection is FIFO, so a held packet shows as one overtaken by
// a later one. The larger key holds nothing; a second initiation, or one
// after transport data or after the window, is not held.
func TestCrossedInitiationHeld(t *testing.T) {
	// Echoes of our initiations would re-arm the guard (they are
	// initiations too); this test is about the guard alone.
	defer func(d []time.Duration) { resendDelays = d }(resendDelays)
	resendDelays = nil
	r1 := startRelay(t, 1, "one")
	dm := &wire.DERPMap{Regions: []wire.DERPRegion{r1}}
	ks, kl := key.NewNode(), key.NewNode()
	if ps, pl := ks.Public(), kl.Public(); bytes.Compare(ps[:], pl[:]) > 0 {
		ks, kl = kl, ks
	}
	s, l := New(Options{}), New(Options{})
	chS, chL := openConn(t, s), openConn(t, l)
	if err := s.SetConfig(ks, []Peer{{Key: kl.Public(), HomeRegion: 1}}, dm); err != nil {
		t.Fatal(err)
	}
	if err := l.SetConfig(kl, []Peer{{Key: ks.Public(), HomeRegion: 1}}, dm); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return s.relayCodeNow() == "one" && l.relayCodeNow() == "one" }, "both on the relay")
	epL, _ := s.ParseEndpoint(kl.Public().Hex())
	epS, _ := l.ParseEndpoint(ks.Public().Hex())
	send := func(c *Conn, pkt []byte, ep conn.Endpoint) {
		t.Helper()
		if err := c.Send([][]byte{pkt}, ep); err != nil {
			t.Fatal(err)
		}
	}
	order := func(ch chan got, what string, want ...byte) {
		t.Helper()
		for _, tag := range want {
			g := recvWithin(t, ch, 5*time.Second, what)
			if g.pkt[4] != tag {
				t.Fatalf("%s: got tag %d, want order %v", what, g.pkt[4], want)
			}
			if e, ok := g.ep.(*Endpoint); !ok || e.Key().IsZero() {
				t.Fatalf("%s: tag %d came without the peer's endpoint", what, tag)
			}
		}
	}

	// They cross: L's initiation comes after S sent its own, and L's
	// response to S's overtakes it.
	send(s, wgInit(1), epL)
	// The hold starts when L's initiation reaches S, which is after this
	// send begins: timing from here cannot overstate it under load.
	start := time.Now()
	send(l, wgInit(2), epS)
	send(l, wgResp(3), epS)
	order(chL, "the larger key holds nothing", 1)
	order(chS, "the crossing initiation is held", 3, 2)
	if d := time.Since(start); d < crossDelay-20*time.Millisecond {
		t.Fatalf("held initiation delivered after %v, want about %v", d, crossDelay)
	}
	// One per initiation of ours: the next one is not held.
	send(l, wgInit(4), epS)
	send(l, wgData(5), epS)
	order(chS, "the next initiation", 4, 5)
	// Transport data disarms the guard.
	send(s, wgInit(6), epL)
	order(chL, "S's second initiation", 6)
	send(l, wgData(7), epS)
	send(l, wgInit(8), epS)
	send(l, wgData(9), epS)
	order(chS, "an initiation after data", 7, 8, 9)
	// Outside the window, nothing is held.
	send(s, wgInit(10), epL)
	order(chL, "S's third initiation", 10)
	time.Sleep(crossWindow + 100*time.Millisecond)
	send(l, wgInit(11), epS)
	send(l, wgData(12), epS)
	order(chS, "a late initiation", 11, 12)
}

// An initiation that reached the peer before the peer knew our key is
// dropped there; its echo, sent while nothing came back, reaches the peer
// once it is configured, well before wireguard-go's 5 s retry. An answer
// from the peer stops the echoes.
func TestInitiationEcho(t *testing.T) {
	r1 := startRelay(t, 1, "one")
	dm := &wire.DERPMap{Regions: []wire.DERPRegion{r1}}
	ks, kl := key.NewNode(), key.NewNode()
	s, l := New(Options{}), New(Options{})
	chS, chL := openConn(t, s), openConn(t, l)
	if err := s.SetConfig(ks, []Peer{{Key: kl.Public(), HomeRegion: 1}}, dm); err != nil {
		t.Fatal(err)
	}
	if err := l.SetConfig(kl, nil, dm); err != nil { // L does not know S yet
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return s.relayCodeNow() == "one" && l.relayCodeNow() == "one" }, "both on the relay")
	epL, _ := s.ParseEndpoint(kl.Public().Hex())

	sent := time.Now()
	if err := s.Send([][]byte{wgInit(1)}, epL); err != nil {
		t.Fatal(err)
	}
	select {
	case g := <-chL:
		t.Fatalf("L handed a stranger's packet (tag %d) to WireGuard", g.pkt[4])
	case <-time.After(100 * time.Millisecond):
	}
	// Coord's netmap reaches L: it now knows S.
	if err := l.SetConfig(kl, []Peer{{Key: ks.Public(), HomeRegion: 1}}, dm); err != nil {
		t.Fatal(err)
	}
	epS, _ := l.ParseEndpoint(ks.Public().Hex())
	g := recvWithin(t, chL, 2*time.Second, "the echo of S's initiation")
	if g.pkt[4] != 1 || g.pkt[0] != 1 {
		t.Fatalf("L got %v, want the initiation with tag 1", g.pkt[:5])
	}
	if e, ok := g.ep.(*Endpoint); !ok || e.Key() != ks.Public() {
		t.Fatalf("the echo came without S's endpoint: %v", g.ep)
	}
	if d := time.Since(sent); d > 1500*time.Millisecond {
		t.Errorf("echo arrived %v after the initiation; want well under wireguard-go's 5 s retry", d)
	}
	// L answers; S stops echoing.
	if err := l.Send([][]byte{wgResp(2)}, epS); err != nil {
		t.Fatal(err)
	}
	if g := recvWithin(t, chS, 2*time.Second, "L's response"); g.pkt[4] != 2 {
		t.Fatalf("S got tag %d, want the response", g.pkt[4])
	}
	select {
	case g := <-chL:
		t.Fatalf("S echoed again (tag %d) after L answered", g.pkt[4])
	case <-time.After(3*time.Second - time.Since(sent)): // past the last echo
	}
}
