package netmap

import (
	"context"
	"encoding/json"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/coord/store"
	"github.com/lanmesh/lanmesh/internal/wire"
)

type fakeLoader struct {
	nodes  []store.Node
	users  []store.User
	policy string
}

func (f *fakeLoader) Nodes(context.Context) ([]store.Node, error) { return f.nodes, nil }
func (f *fakeLoader) Settings(context.Context) (store.Settings, error) {
	return store.Settings{Domain: "mesh.internal"}, nil
}
func (f *fakeLoader) Users(context.Context) ([]store.User, error) { return f.users, nil }
func (f *fakeLoader) Policy(context.Context) (store.PolicyVersion, error) {
	if f.policy == "" {
		return store.PolicyVersion{}, store.ErrNotFound
	}
	return store.PolicyVersion{Version: int64(len(f.policy)), Body: f.policy}, nil
}

func node(id int64, user string, tags ...string) store.Node {
	return store.Node{ID: id, Name: "n" + string(rune('a'+id)), User: user, Tags: tags,
		IPv4: netip.AddrFrom4([4]byte{100, 64, 0, byte(id)}), IPv6: netip.AddrFrom16([16]byte{0xfd, 15: byte(id)})}
}

func next(t *testing.T, h *Hub, st *Stream) *wire.MapMessage {
	t.Helper()
	snap, err := h.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	line, ok := st.Next(snap)
	if !ok {
		return &wire.MapMessage{Seq: -1}
	}
	if line == nil {
		return nil
	}
	var m wire.MapMessage
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("stream wrote invalid JSON: %v\n%s", err, line)
	}
	return &m
}

func ids(nodes []wire.Node) []wire.NodeID {
	var out []wire.NodeID
	for _, n := range nodes {
		out = append(out, n.ID)
	}
	return out
}

func TestStreamDeltas(t *testing.T) {
	l := &fakeLoader{users: []store.User{{Name: "alice"}, {Name: "bob", Email: "bob@x.example"}},
		nodes: []store.Node{node(1, "alice"), node(2, "alice"), node(3, "bob")}}
	h := NewHub(l, nil)
	defer h.Close()
	st := NewStream(1)

	// Full map: default policy, one user's devices only (S4); a filter.
	m := next(t, h, st)
	if !m.Full || m.Seq != 1 || !slices.Equal(ids(m.Peers), []wire.NodeID{2}) || m.Domain != "mesh.internal" || m.PacketFilter == nil {
		t.Fatalf("full map: %+v", m)
	}
	if m.Self.User != "alice@" || len(m.PacketFilter.Inbound) == 0 {
		t.Fatalf("self %+v filter %+v", m.Self, m.PacketFilter)
	}
	if m := next(t, h, st); m != nil {
		t.Fatalf("nothing changed, got %+v", m)
	}

	// A peer's endpoint changes: one PeersChanged, no filter.
	l.nodes[1].Endpoints = []netip.AddrPort{netip.MustParseAddrPort("198.18.0.2:41641")}
	h.Changed()
	m = next(t, h, st)
	if m == nil || !slices.Equal(ids(m.PeersChanged), []wire.NodeID{2}) || m.PacketFilter != nil || m.Seq != 2 {
		t.Fatalf("endpoint change: %+v", m)
	}

	// Online: the peer goes online without a store change.
	ch, unsub := h.Subscribe()
	h.StreamOpened(2)
	<-ch // online flips are batched
	unsub()
	m = next(t, h, st)
	if m == nil || len(m.PeersChanged) != 1 || !m.PeersChanged[0].Online {
		t.Fatalf("online: %+v", m)
	}

	// A policy that lets bob reach alice's node 1: node 1 gains bob as a
	// peer and a new filter; node 2 has no rule left and is removed.
	l.policy = `{"acls": [{"action": "accept", "src": ["bob@x.example"], "dst": ["alice@:22"]}]}`
	h.Changed()
	m = next(t, h, st)
	if m == nil || !slices.Equal(ids(m.PeersChanged), []wire.NodeID{3}) || !slices.Equal(m.PeersRemoved, []wire.NodeID{2}) || m.PacketFilter == nil {
		t.Fatalf("policy change: %+v", m)
	}
	snap, _ := h.Snapshot(context.Background())
	want, _ := snap.Filter(1)
	if !reflect.DeepEqual(*m.PacketFilter, want) {
		t.Fatalf("encoded filter %+v, compiled %+v", m.PacketFilter, want)
	}
	if !wire.MatchAny(m.PacketFilter.Inbound, netip.MustParseAddr("100.64.0.3"), netip.MustParseAddr("100.64.0.1"), wire.ProtoTCP, 22) {
		t.Fatalf("filter does not admit bob: %+v", m.PacketFilter)
	}

	// A stored policy that no longer parses fails closed (S14).
	l.policy = `{"acls": [`
	h.Changed()
	m = next(t, h, st)
	if h.PolicyError() == nil || m == nil || m.PacketFilter == nil || len(m.PacketFilter.Inbound) != 0 || !slices.Equal(m.PeersRemoved, []wire.NodeID{3}) {
		t.Fatalf("broken stored policy: %v %+v", h.PolicyError(), m)
	}

	// Self deleted: the stream ends.
	l.nodes = l.nodes[1:]
	h.Changed()
	if m := next(t, h, st); m == nil || m.Seq != -1 {
		t.Fatalf("deleted self: %+v", m)
	}
}

// LAN hosts go only to peers the router's filter admits to that address,
// and only inside its approved routes.
func TestLANHostsPerPeer(t *testing.T) {
	lan := netip.MustParsePrefix("198.19.1.0/24")
	r := node(1, "alice", "tag:router")
	r.AdvertisedRoutes, r.ApprovedRoutes = []netip.Prefix{lan}, []netip.Prefix{lan}
	r.LANHosts = []wire.LANHost{{Name: "nas", Addr: netip.MustParseAddr("198.19.1.10")},
		{Name: "tv", Addr: netip.MustParseAddr("198.19.1.30")}, {Name: "outside", Addr: netip.MustParseAddr("198.19.2.1")}}
	l := &fakeLoader{users: []store.User{{Name: "alice"}, {Name: "bob"}},
		nodes:  []store.Node{r, node(2, "alice"), node(3, "bob")},
		policy: `{"tagOwners": {"tag:router": ["alice@"]}, "acls": [{"action": "accept", "src": ["alice@"], "dst": ["198.19.1.10:445"]}, {"action": "accept", "src": ["bob@"], "dst": ["198.19.1.30:8008"]}]}`}
	h := NewHub(l, nil)
	defer h.Close()
	for _, tt := range []struct {
		viewer int64
		want   []string
	}{{2, []string{"nas"}}, {3, []string{"tv"}}} {
		m := next(t, h, NewStream(wire.NodeID(tt.viewer)))
		var got []string
		for _, p := range m.Peers {
			if p.ID == 1 {
				for _, lh := range p.LANHosts {
					got = append(got, lh.Name)
				}
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("viewer %d sees LAN hosts %v, want %v", tt.viewer, got, tt.want)
		}
	}
	self := next(t, h, NewStream(1))
	if len(self.Self.LANHosts) != 2 {
		t.Errorf("router's own valid LAN hosts: %+v", self.Self.LANHosts)
	}
}

func TestHubExpiryAndOnline(t *testing.T) {
	now := time.Now()
	a, b, c := node(1, "u"), node(2, "u"), node(3, "u")
	b.KeyExpiry = now.Add(100 * time.Millisecond)
	c.KeyExpiry = now.Add(-time.Second)
	l := &fakeLoader{nodes: []store.Node{a, b, c}, users: []store.User{{Name: "u"}}}
	h := NewHub(l, nil)
	defer h.Close()
	ch, unsub := h.Subscribe()
	defer unsub()
	s, err := h.Snapshot(context.Background())
	if err != nil || len(s.Nodes) != 2 {
		t.Fatalf("snapshot: %+v %v", s, err)
	}
	h.StreamOpened(1)
	<-ch
	s, _ = h.Snapshot(context.Background())
	if n, _ := s.Node(1); !n.Online {
		t.Fatal("node 1 not online")
	}
	// b's key expiry fires a change by itself.
	select {
	case <-ch:
	case <-time.After(2 * time.Second):
		t.Fatal("no change at key expiry")
	}
	time.Sleep(5 * time.Millisecond)
	s, _ = h.Snapshot(context.Background())
	if _, ok := s.Node(2); ok {
		t.Fatal("expired node still in snapshot")
	}
}

// BenchmarkPolicyFanout is one policy change reaching every stream of a
// 2,000-node mesh of 10 users.
func BenchmarkPolicyFanout(b *testing.B) {
	l := &fakeLoader{}
	for u := range 10 {
		l.users = append(l.users, store.User{Name: string(rune('a' + u))})
	}
	for i := range 2000 {
		n := node(int64(i+1), string(rune('a'+i%10)))
		n.IPv4 = netip.AddrFrom4([4]byte{100, 64, byte((i + 1) >> 8), byte(i + 1)})
		n.IPv6 = netip.AddrFrom16([16]byte{0xfd, 14: byte((i + 1) >> 8), 15: byte(i + 1)})
		l.nodes = append(l.nodes, n)
	}
	h := NewHub(l, nil)
	streams := make([]*Stream, len(l.nodes))
	snap, _ := h.Snapshot(context.Background())
	for i := range streams {
		streams[i] = NewStream(wire.NodeID(i + 1))
		streams[i].Next(snap)
	}
	pols := []string{`{"acls": [{"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:22"]}]}`,
		`{"acls": [{"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:80"]}]}`}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		l.policy = pols[i%2]
		h.Changed()
		snap, _ := h.Snapshot(context.Background())
		for _, st := range streams {
			if line, _ := st.Next(snap); line == nil {
				b.Fatal("no delta")
			}
		}
	}
}

// TestStreamCaps: grants' app capabilities reach the destination in its
// packet filter, nodeAttrs reach the targeted node in its self cap_map
// (and no peer's), and a policy change resends both.
func TestStreamCaps(t *testing.T) {
	pol := `{"tagOwners": {"tag:web": ["alice@"]},
	  "grants": [{"src": ["alice@"], "dst": ["tag:web"], "ip": ["tcp:443"], "app": {"example.com/cap/web": [{"role": "admin"}]}}],
	  "nodeAttrs": [{"target": ["tag:web"], "attr": ["funnel"], "app": {"example.com/cap/site": [{"name": "wiki"}]}}]}`
	l := &fakeLoader{users: []store.User{{Name: "alice"}, {Name: "bob"}},
		nodes: []store.Node{node(1, "alice"), node(2, "alice", "tag:web"), node(3, "bob")}, policy: pol}
	h := NewHub(l, nil)
	defer h.Close()
	web, alice := NewStream(2), NewStream(1)

	m := next(t, h, web)
	if got, _ := json.Marshal(m.Self.CapMap); string(got) != `{"example.com/cap/site":[{"name":"wiki"}],"funnel":[]}` {
		t.Errorf("tag:web node's cap_map: %s", got)
	}
	caps := m.PacketFilter.CapsFrom(netip.MustParseAddr("100.64.0.1"))
	if got, _ := json.Marshal(caps); string(got) != `{"example.com/cap/web":[{"role":"admin"}]}` {
		t.Errorf("caps of alice's node on the web node: %s", got)
	}
	if m.PacketFilter.CapsFrom(netip.MustParseAddr("100.64.0.3")) != nil {
		t.Error("bob's node has caps on the web node")
	}
	// The same encoding as encoding/json would write.
	want, _ := json.Marshal(m.PacketFilter)
	snap, _ := h.Snapshot(context.Background())
	got := snap.enc.appendFilter(nil, &snap.entries[snap.byID[2]].result.Filter)
	if string(got) != string(want) {
		t.Errorf("filter encoding\n got %s\nwant %s", got, want)
	}

	m = next(t, h, alice)
	if m.Self.CapMap != nil {
		t.Errorf("alice's node got a cap_map: %v", m.Self.CapMap)
	}
	for _, p := range m.Peers {
		if p.CapMap != nil {
			t.Errorf("peer %d's cap_map was sent to another node: %v", p.ID, p.CapMap)
		}
	}

	// A new value: the web node gets its new self and filter, alice's
	// node nothing.
	l.policy = strings.Replace(strings.Replace(pol, "wiki", "blog!", 1), `"admin"`, `"reader"`, 1)
	h.Changed()
	m = next(t, h, web)
	if m == nil || m.Self == nil || m.PacketFilter == nil {
		t.Fatalf("after the policy change the web node got %+v", m)
	}
	if got, _ := json.Marshal(m.Self.CapMap["example.com/cap/site"]); string(got) != `[{"name":"blog!"}]` {
		t.Errorf("new node cap: %s", got)
	}
	if got, _ := json.Marshal(m.PacketFilter.CapsFrom(netip.MustParseAddr("100.64.0.1"))); string(got) != `{"example.com/cap/web":[{"role":"reader"}]}` {
		t.Errorf("new peer caps: %s", got)
	}
	if m := next(t, h, alice); m != nil {
		t.Errorf("alice's node got %+v for a change that is not hers", m)
	}
	// nodeAttrs gone: self comes again, without cap_map.
	l.policy = `{"tagOwners": {"tag:web": ["alice@"]}, "grants": [{"src": ["alice@"], "dst": ["tag:web"], "ip": ["tcp:443"]}]}`
	h.Changed()
	if m = next(t, h, web); m == nil || m.Self == nil || m.Self.CapMap != nil || len(m.PacketFilter.Caps) != 0 {
		t.Errorf("after removing nodeAttrs and app: %+v", m)
	}
}

// TestAppendFilter: the stream's filter encoding is encoding/json's,
// caps and via included.
func TestAppendFilter(t *testing.T) {
	p := func(s string) netip.Prefix { return netip.MustParsePrefix(s) }
	f := wire.PacketFilter{
		Inbound: []wire.FilterRule{{Src: []netip.Prefix{p("100.64.0.1/32")}, Dst: []netip.Prefix{p("100.64.0.2/32")}, Ports: []wire.PortRange{{First: 443, Last: 443}}, Protos: []uint8{6}}},
		Caps:    []wire.CapGrant{{Src: []netip.Prefix{p("100.64.0.1/32")}, Caps: wire.CapMap{"example.com/cap/a": {json.RawMessage(`{"x":1}`)}}}},
		Via:     []wire.ViaRoute{{Dst: p("198.19.1.0/24"), Peers: []wire.NodeID{3, 6}}},
	}
	for _, f := range []wire.PacketFilter{f, {Via: f.Via}, {Caps: f.Caps, Via: f.Via}, {}} {
		want, _ := json.Marshal(f)
		got := (&encCache{m: map[sliceKey][]byte{}}).appendFilter(nil, &f)
		if string(got) != string(want) {
			t.Errorf("appendFilter\n got %s\nwant %s", got, want)
		}
	}
}
