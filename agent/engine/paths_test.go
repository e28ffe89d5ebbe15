package engine

import (
	"net/netip"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
)

func TestPathPicker(t *testing.T) {
	k := key.NewNode().Public()
	a := netip.MustParseAddrPort("198.18.0.99:1")
	b := netip.MustParseAddrPort("198.18.0.2:2")
	t0 := time.Unix(1000, 0)
	pp := newPathPicker()
	if ep, changed := pp.set(k, []netip.AddrPort{a, b}, t0); ep != a || !changed {
		t.Fatalf("first endpoint = %v changed=%v, want %v true", ep, changed, a)
	}
	if _, changed := pp.set(k, []netip.AddrPort{a, b}, t0); changed {
		t.Fatal("same candidates reported as a change")
	}
	none := []PeerStatus{{Key: k}}
	if m := pp.tick(t0.Add(5*time.Second), none); len(m) != 0 {
		t.Fatalf("moved before the trial ended: %v", m)
	}
	if m := pp.tick(t0.Add(7*time.Second), none); m[k] != b {
		t.Fatalf("after trial moves = %v, want %v", m, b)
	}
	ok := []PeerStatus{{Key: k, LastHandshake: t0.Add(8 * time.Second)}}
	if m := pp.tick(t0.Add(20*time.Second), ok); len(m) != 0 {
		t.Fatalf("moved off a working path: %v", m)
	}
	stale := ok
	pp.tick(t0.Add(8*time.Second+pathAlive-time.Second), ok) // ticks run every second
	if m := pp.tick(t0.Add(8*time.Second+pathAlive+time.Second), stale); len(m) != 0 {
		t.Fatalf("a path that just died must get a trial first: %v", m)
	}
	if m := pp.tick(t0.Add(8*time.Second+pathAlive+8*time.Second), stale); m[k] != a {
		t.Fatalf("dead path not rotated: %v", m)
	}
	single := key.NewNode().Public()
	pp.set(single, []netip.AddrPort{a}, t0)
	if m := pp.tick(t0.Add(time.Hour), []PeerStatus{{Key: single}}); len(m) != 0 {
		t.Fatalf("single candidate rotated: %v", m)
	}
	pp.retain(map[key.NodePublic]bool{single: true})
	if _, ok := pp.peers[k]; ok {
		t.Fatal("retain kept a removed peer")
	}
}
