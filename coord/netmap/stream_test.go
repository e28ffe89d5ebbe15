package netmap

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/coord/store"
	"github.com/lanmesh/lanmesh/internal/wire"
)

func snap(gen uint64, nodes ...wire.Node) *Snapshot {
	s := &Snapshot{Gen: gen, Domain: "mesh.internal", byID: map[wire.NodeID]int{}}
	for i, n := range nodes {
		s.byID[n.ID] = i
		s.Nodes = append(s.Nodes, n)
	}
	return s
}

func TestStreamDeltas(t *testing.T) {
	a := wire.Node{ID: 1, Name: "a"}
	b := wire.Node{ID: 2, Name: "b"}
	c := wire.Node{ID: 3, Name: "c"}
	b2 := b
	b2.Endpoints = []netip.AddrPort{netip.MustParseAddrPort("198.18.0.2:1")}
	a2 := a
	a2.Online = true

	st := NewStream(1, nil)
	steps := []struct {
		name           string
		snap           *Snapshot
		full, self     bool
		changed        []wire.NodeID
		removed        []wire.NodeID
		none, selfGone bool
	}{
		{name: "full", snap: snap(1, a, b), full: true},
		{name: "nothing changed", snap: snap(2, a, b), none: true},
		{name: "c joins", snap: snap(3, a, b, c), changed: []wire.NodeID{3}},
		{name: "b endpoint", snap: snap(4, a, b2, c), changed: []wire.NodeID{2}},
		{name: "self online", snap: snap(5, a2, b2, c), self: true},
		{name: "b removed", snap: snap(6, a2, c), removed: []wire.NodeID{2}},
		{name: "self deleted", snap: snap(7, c), selfGone: true},
	}
	var seq int64
	for _, s := range steps {
		m, ok := st.Next(s.snap)
		if s.selfGone {
			if ok {
				t.Fatalf("%s: stream not ended", s.name)
			}
			continue
		}
		if s.none {
			if m != nil {
				t.Fatalf("%s: got %+v", s.name, m)
			}
			continue
		}
		seq++
		if m == nil || m.Seq != seq || m.Full != s.full || (m.Self != nil) != (s.self || s.full) {
			t.Fatalf("%s: got %+v", s.name, m)
		}
		var ids []wire.NodeID
		for _, n := range m.PeersChanged {
			ids = append(ids, n.ID)
		}
		if !slices.Equal(ids, s.changed) || !slices.Equal(m.PeersRemoved, s.removed) {
			t.Fatalf("%s: changed %v removed %v", s.name, ids, m.PeersRemoved)
		}
		if s.full && (len(m.Peers) != 1 || m.Peers[0].ID != 2 || m.Domain != "mesh.internal") {
			t.Fatalf("full map peers %+v", m.Peers)
		}
	}
}

func TestFilterHidesPeers(t *testing.T) {
	only := func(self wire.Node, all []wire.Node) []wire.Node { return nil }
	st := NewStream(1, only)
	m, _ := st.Next(snap(1, wire.Node{ID: 1}, wire.Node{ID: 2}))
	if len(m.Peers) != 0 {
		t.Fatalf("filter ignored: %+v", m.Peers)
	}
}

type fakeLoader struct{ nodes []store.Node }

func (f *fakeLoader) Nodes(context.Context) ([]store.Node, error) { return f.nodes, nil }
func (f *fakeLoader) Settings(context.Context) (store.Settings, error) {
	return store.Settings{Domain: "d"}, nil
}

func TestHubExpiryAndOnline(t *testing.T) {
	now := time.Now()
	l := &fakeLoader{nodes: []store.Node{
		{ID: 1, Name: "a", IPv4: netip.MustParseAddr("100.64.0.1"), IPv6: netip.MustParseAddr("fd00::1")},
		{ID: 2, Name: "b", KeyExpiry: now.Add(100 * time.Millisecond), IPv4: netip.MustParseAddr("100.64.0.2"), IPv6: netip.MustParseAddr("fd00::2")},
		{ID: 3, Name: "c", KeyExpiry: now.Add(-time.Second), IPv4: netip.MustParseAddr("100.64.0.3"), IPv6: netip.MustParseAddr("fd00::3")},
	}}
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
