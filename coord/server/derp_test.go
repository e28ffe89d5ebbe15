package server

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/coord/netmap"
	"github.com/lanmesh/lanmesh/coord/store"
	"github.com/lanmesh/lanmesh/derp"
	"github.com/lanmesh/lanmesh/derp/stun"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// relayCoord is a real coord (SQLite, TLS, admin socket) on 127.0.0.1
// with its embedded relay, STUN and DERP map on, as `serve` runs it.
type relayCoord struct {
	*testCoord
	srv  *Server
	stun netip.AddrPort
}

func startRelayCoord(t *testing.T) *relayCoord {
	t.Helper()
	var stunAddr netip.AddrPort
	tc, srv := startCoordWith(t, t.TempDir(), "", &syncBuf{}, func(srv *Server, ln net.Listener) {
		var err error
		if stunAddr, err = srv.EnableRelay(RelayConfig{STUNAddr: "127.0.0.1:0"}); err != nil {
			t.Fatal(err)
		}
		region, err := CoordRegion("127.0.0.1", ln.Addr().(*net.TCPAddr).Port, int(stunAddr.Port()), srv.Fingerprint())
		if err != nil {
			t.Fatal(err)
		}
		dm, err := BuildDERPMap(&region, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.SetDERPMap(dm); err != nil {
			t.Fatal(err)
		}
	})
	return &relayCoord{testCoord: tc, srv: srv, stun: stunAddr}
}

// joinKeyed registers a node and keeps its private node key, which a
// relay client needs to prove itself.
func (tc *testCoord) joinKeyed(host string, ak wire.AuthKey) (*testNode, key.NodePrivate) {
	tc.t.Helper()
	priv := key.NewNode()
	n := &testNode{t: tc.t, mk: key.NewMachine(), nk: priv.Public()}
	n.c = tc.client(n.mk)
	rr, err := n.c.Register(context.Background(), wire.RegisterRequest{AuthKey: ak.WithoutFingerprint(), NodeKey: n.nk, Hostname: host})
	if err != nil {
		tc.t.Fatalf("register %s: %v", host, err)
	}
	n.self = rr.Node
	return n, priv
}

func (rc *relayCoord) connect(t *testing.T, priv key.NodePrivate) (*derp.Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := derp.Connect(ctx, rc.url+derp.Path, priv, rc.fp)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// recv waits up to d for a relayed packet.
func recv(c *derp.Client, d time.Duration) (key.NodePublic, []byte, error) {
	type res struct {
		k   key.NodePublic
		b   []byte
		err error
	}
	ch := make(chan res, 1)
	go func() {
		k, b, err := c.Recv()
		ch <- res{k, b, err}
	}()
	select {
	case r := <-ch:
		return r.k, r.b, r.err
	case <-time.After(d):
		c.Close() // ends the Recv goroutine
		return key.NodePublic{}, nil, errors.New("timed out")
	}
}

// S9, S15: coord's embedded relay carries packets between registered
// nodes, refuses keys coord does not know, and drops a node's connection
// within a second of `nodes delete`.
func TestEmbeddedRelay(t *testing.T) {
	rc := startRelayCoord(t)
	ak := rc.newKey(true)
	_, aPriv := rc.joinKeyed("a", ak)
	_, bPriv := rc.joinKeyed("b", ak)

	ca, err := rc.connect(t, aPriv)
	if err != nil {
		t.Fatalf("registered node a refused by coord's relay: %v", err)
	}
	cb, err := rc.connect(t, bPriv)
	if err != nil {
		t.Fatalf("registered node b refused by coord's relay: %v", err)
	}
	if err := ca.Send(bPriv.Public(), []byte("hello b")); err != nil {
		t.Fatal(err)
	}
	from, pkt, err := recv(cb, 5*time.Second)
	if err != nil || from != aPriv.Public() || string(pkt) != "hello b" {
		t.Fatalf("b got %q from %s, %v; want %q from a", pkt, from.ShortString(), err, "hello b")
	}
	if err := cb.Send(aPriv.Public(), []byte("hello a")); err != nil {
		t.Fatal(err)
	}
	from, pkt, err = recv(ca, 5*time.Second)
	if err != nil || from != bPriv.Public() || string(pkt) != "hello a" {
		t.Fatalf("a got %q from %s, %v; want %q from b", pkt, from.ShortString(), err, "hello a")
	}

	// S9: a key coord never registered cannot use the relay.
	if c, err := rc.connect(t, key.NewNode()); err == nil {
		c.Close()
		t.Fatal("unknown node key accepted by coord's relay")
	} else if !strings.Contains(err.Error(), "not allowed") {
		t.Fatalf("unknown key: want a refusal naming it not allowed, got %v", err)
	}

	// S15: deleting b ends its relay connection at once.
	gone := make(chan error, 1)
	go func() {
		for {
			if _, err := cb.RecvMessage(); err != nil {
				gone <- err
				return
			}
		}
	}()
	start := time.Now()
	if err := rc.admin.Do(context.Background(), "DELETE", adminapi.NodePath("b"), nil, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-gone:
		t.Logf("deleted node's relay connection ended after %v: %v", time.Since(start), err)
	case <-time.After(time.Second):
		t.Fatal("deleted node still connected to coord's relay after 1s")
	}
	if _, err := rc.connect(t, bPriv); err == nil {
		t.Fatal("deleted node reconnected to coord's relay")
	}
	// a is untouched and packets to b go nowhere.
	if err := ca.Send(bPriv.Public(), []byte("to nobody")); err != nil {
		t.Fatalf("a lost its relay connection when b was deleted: %v", err)
	}
	if m := rc.srv.Relay().Metrics(); m.ClientsDropped < 1 || m.ClientsConnected != 1 {
		t.Fatalf("relay metrics after delete: %+v", m)
	}
}

// The STUN server coord embeds answers with the sender's address.
func TestEmbeddedSTUN(t *testing.T) {
	rc := startRelayCoord(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	mapped, _, err := stun.Request(ctx, pc, rc.stun)
	if err != nil {
		t.Fatalf("STUN at %s: %v", rc.stun, err)
	}
	if want := pc.LocalAddr().(*net.UDPAddr).AddrPort(); mapped != want {
		t.Fatalf("STUN mapped %s, want %s", mapped, want)
	}
}

// The full netmap carries the DERP map naming coord's relay, and that
// entry is enough to reach the relay (URL, pinned certificate).
func TestFullMapCarriesDERPMap(t *testing.T) {
	rc := startRelayCoord(t)
	n, priv := rc.joinKeyed("a", rc.newKey(false))
	ms := n.openMap(wire.MapRequest{})
	full := ms.waitFor(t, "full map", func(m *wire.MapMessage) bool { return m.Full })
	if full.DERPMap == nil {
		t.Fatal("full map has no DERP map")
	}
	r, err := full.DERPMap.Region(CoordRegionID)
	if err != nil || r.Code != CoordRegionCode || len(r.Nodes) != 1 {
		t.Fatalf("coord region: %+v, %v", r, err)
	}
	dn := r.Nodes[0]
	if dn.IPv4 != netip.MustParseAddr("127.0.0.1") || dn.CertFingerprint != rc.fp || dn.STUNPort != int(rc.stun.Port()) {
		t.Fatalf("coord relay node %+v; want 127.0.0.1, pin %s, STUN port %d", dn, rc.fp, rc.stun.Port())
	}
	if got := dn.STUNAddrs(); len(got) != 1 || got[0] != rc.stun {
		t.Fatalf("STUN addresses %v, want %v", got, rc.stun)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := derp.Connect(ctx, dn.URL(), priv, dn.CertFingerprint)
	if err != nil {
		t.Fatalf("relay from the DERP map (%s): %v", dn.URL(), err)
	}
	c.Close()
	// Deltas do not repeat the map.
	rc.joinKeyed("b", rc.newKey(false))
	d := ms.waitFor(t, "delta", func(m *wire.MapMessage) bool { return !m.Full })
	if d.DERPMap != nil {
		t.Fatal("delta repeats the DERP map")
	}
}

// A coord without the relay answers /derp with 404, not an open relay.
func TestRelayOff(t *testing.T) {
	tc := startCoord(t, t.TempDir(), "", &syncBuf{})
	_, priv := tc.joinKeyed("a", tc.newKey(false))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := derp.Connect(ctx, tc.url+derp.Path, priv, tc.fp)
	if err == nil {
		c.Close()
		t.Fatal("relay served by a coord that did not enable it")
	}
	if !strings.Contains(err.Error(), "404") {
		t.Fatalf("want 404, got %v", err)
	}
}

type fakeLoader struct {
	nodes []store.Node
	err   error
}

func (f fakeLoader) Nodes(context.Context) ([]store.Node, error) { return f.nodes, f.err }
func (f fakeLoader) Settings(context.Context) (store.Settings, error) {
	return store.Settings{Domain: "mesh.internal"}, f.err
}

// S9: only live nodes pass; an expired node does not; a store that
// cannot answer means no.
func TestStoreVerifier(t *testing.T) {
	now := time.Now()
	live, expired, tagged := key.NewNode().Public(), key.NewNode().Public(), key.NewNode().Public()
	nodes := []store.Node{
		{ID: 1, Name: "live", NodeKey: live, KeyExpiry: now.Add(time.Hour)},
		{ID: 2, Name: "expired", NodeKey: expired, KeyExpiry: now.Add(-time.Hour)},
		{ID: 3, Name: "tagged", NodeKey: tagged},
	}
	for _, tt := range []struct {
		name    string
		load    fakeLoader
		k       key.NodePublic
		allowed bool
		err     bool
	}{
		{"live node", fakeLoader{nodes: nodes}, live, true, false},
		{"never-expiring node", fakeLoader{nodes: nodes}, tagged, true, false},
		{"expired node", fakeLoader{nodes: nodes}, expired, false, false},
		{"unknown key", fakeLoader{nodes: nodes}, key.NewNode().Public(), false, false},
		{"zero key", fakeLoader{nodes: nodes}, key.NodePublic{}, false, false},
		{"store down", fakeLoader{nodes: nodes, err: errors.New("disk gone")}, live, false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := &storeVerifier{hub: netmap.NewHub(tt.load, func() time.Time { return now })}
			ok, err := v.Allowed(context.Background(), tt.k)
			if ok != tt.allowed || (err != nil) != tt.err {
				t.Fatalf("Allowed = %v, %v; want %v, err %v", ok, err, tt.allowed, tt.err)
			}
		})
	}
}

func TestParseDERPMap(t *testing.T) {
	fp := strings.Repeat("A", 43) // unpadded base64url of 32 bytes
	for _, tt := range []struct {
		name, in, err string
	}{
		{"ok", `{"regions":[{"id":2,"code":"fra","name":"Frankfurt","nodes":[{"name":"f1","host_name":"relay.example","derp_port":8443,"cert_fingerprint":"` + fp + `"}]}]}`, ""},
		{"ok ip", `{"regions":[{"id":7,"code":"x","nodes":[{"name":"n","ipv4":"198.18.0.20","stun_port":-1}]}]}`, ""},
		{"empty", ``, "not a JSON DERP map"},
		{"no regions", `{"regions":[]}`, "no regions"},
		{"typo", `{"regions":[{"id":2,"code":"x","nodes":[{"name":"n","hostname":"r"}]}]}`, "unknown field"},
		{"trailing", `{"regions":[{"id":2,"code":"x","nodes":[{"name":"n","host_name":"r"}]}]} {}`, "trailing"},
		{"bad id", `{"regions":[{"id":0,"code":"x","nodes":[{"name":"n","host_name":"r"}]}]}`, "id must be > 0"},
		{"no address", `{"regions":[{"id":2,"code":"x","nodes":[{"name":"n"}]}]}`, "needs host_name"},
		{"bad port", `{"regions":[{"id":2,"code":"x","nodes":[{"name":"n","host_name":"r","derp_port":70000}]}]}`, "port out of range"},
		{"bad ip", `{"regions":[{"id":2,"code":"x","nodes":[{"name":"n","ipv4":"2001:db8::1"}]}]}`, "not IPv4"},
		{"bad pin", `{"regions":[{"id":2,"code":"x","nodes":[{"name":"n","host_name":"r","cert_fingerprint":"zz"}]}]}`, "region 2"},
		{"embedded", `{"regions":[{"id":2,"code":"x","embedded":true,"nodes":[{"name":"n","host_name":"r"}]}]}`, "marks coord's own relay"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseDERPMap([]byte(tt.in))
			if tt.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("err = %v, want it to name %q", err, tt.err)
			}
		})
	}
}

func TestBuildDERPMap(t *testing.T) {
	coord, err := CoordRegion("coord.example", 443, 3478, "")
	if err != nil {
		t.Fatal(err)
	}
	if !coord.Embedded {
		t.Fatal("coord's region is not marked embedded: agents could not warn that relayed paths need coord")
	}
	if coord.Nodes[0].IPv4.IsValid() || coord.Nodes[0].HostName != "coord.example" {
		t.Fatalf("coord node from a host name: %+v", coord.Nodes[0])
	}
	if r, _ := CoordRegion("2001:db8::1", 443, 0, ""); r.Nodes[0].IPv6 != netip.MustParseAddr("2001:db8::1") || r.Nodes[0].STUNPort != -1 {
		t.Fatalf("coord node from an IPv6 address, STUN off: %+v", r.Nodes[0])
	}
	if _, err := CoordRegion("", 443, 3478, ""); err == nil {
		t.Fatal("coord region without a host accepted")
	}
	extra := &wire.DERPMap{Regions: []wire.DERPRegion{{ID: 2, Code: "fra", Nodes: []wire.DERPNode{{Name: "f", HostName: "f.example"}}}}}
	clash := &wire.DERPMap{Regions: []wire.DERPRegion{{ID: CoordRegionID, Code: "fra", Nodes: []wire.DERPNode{{Name: "f", HostName: "f.example"}}}}}
	for _, tt := range []struct {
		name    string
		coord   *wire.DERPRegion
		extra   *wire.DERPMap
		regions []int
		err     bool
	}{
		{"coord only", &coord, nil, []int{1}, false},
		{"coord and file", &coord, extra, []int{1, 2}, false},
		{"file only (relay off)", nil, extra, []int{2}, false},
		{"file reuses region 1", &coord, clash, nil, true},
		{"file may use 1 when relay off", nil, clash, []int{1}, false},
		{"nothing", nil, nil, nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, err := BuildDERPMap(tt.coord, tt.extra)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			var got []int
			if m != nil {
				for _, r := range m.Regions {
					got = append(got, r.ID)
				}
			}
			if len(got) != len(tt.regions) {
				t.Fatalf("regions %v, want %v", got, tt.regions)
			}
			for i := range got {
				if got[i] != tt.regions[i] {
					t.Fatalf("regions %v, want %v", got, tt.regions)
				}
			}
		})
	}
}

func FuzzParseDERPMap(f *testing.F) {
	f.Add([]byte(`{"regions":[{"id":2,"code":"fra","nodes":[{"name":"f1","host_name":"relay.example","derp_port":8443}]}]}`))
	f.Add([]byte(`{"regions":[{"id":7,"code":"x","nodes":[{"name":"n","ipv4":"198.18.0.20","ipv6":"2001:db8::1","stun_port":-1}]}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseDERPMap(b)
		if err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("accepted an invalid map: %v", err)
		}
		for _, r := range m.Regions {
			for _, n := range r.Nodes {
				_ = n.URL()
				_ = n.STUNAddrs()
			}
		}
	})
}
