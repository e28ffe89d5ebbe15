package daemon

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/agent/config"
	"github.com/lanmesh/lanmesh/agent/engine"
	"github.com/lanmesh/lanmesh/agent/localapi"
	"github.com/lanmesh/lanmesh/agent/state"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// join brings a fresh harness node up with self and peers and returns
// the open session.
func join(t *testing.T, h *harness, self wire.Node, first *wire.MapMessage) *session {
	t.Helper()
	s := &session{msgs: make(chan *wire.MapMessage, 10)}
	go func() {
		r := <-h.coord.mapReqs
		first.Self.Key = r.NodeKey // coord's view of this node
		s.msgs <- first
		h.coord.sessions <- s
	}()
	if _, err := h.d.Up(context.Background(), localapi.UpRequest{LoginServer: "https://198.18.0.2", AuthKey: testAuthKey, Timeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	return s
}

func fullMap(self wire.Node, peers ...wire.Node) *wire.MapMessage {
	return &wire.MapMessage{Seq: 1, Full: true, Self: &self, Domain: "mesh.internal", Peers: peers,
		PacketFilter: &wire.PacketFilter{Inbound: []wire.FilterRule{{Src: pfx("100.64.0.0/10"), Dst: pfx("100.64.0.1/32"), Protos: []uint8{wire.ProtoICMP}}}}}
}

// DESIGN.md: if coord goes down, peers keep finding each other through
// the last netmap, also across an agent restart. The cache is written
// rarely (flash) and on clean shutdown; a corrupt one is ignored and the
// node has no peers (fails closed).
func TestNetmapCacheRestartWithoutCoord(t *testing.T) {
	dir := t.TempDir()
	self, peerB, peerC := node(1, "router-a"), node(2, "router-b"), node(3, "router-c")
	coord := newFakeCoord(self)
	h := newHarness(t, dir, coord)
	sess := join(t, h, self, fullMap(self, peerB))

	// The first full map is written at once.
	c, err := state.LoadNetmap(dir)
	if err != nil || len(c.Map.Peers) != 1 || c.Map.PacketFilter == nil {
		t.Fatalf("cache after join = %+v, %v\n%s", c, err, h.logs.String())
	}
	if fi, _ := os.Stat(state.NetmapPath(dir)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("cache mode %v", fi.Mode())
	}
	// A delta within 30 s is not written yet (flash wear)...
	sess.msgs <- &wire.MapMessage{Seq: 2, PeersChanged: []wire.Node{peerC}}
	waitFor(t, "delta applied", func() bool { cfg, _ := h.eng.last(); return len(cfg.Peers) == 2 })
	if c, _ := state.LoadNetmap(dir); len(c.Map.Peers) != 1 {
		t.Fatalf("cache rewritten within %v: %d peers", cacheInterval, len(c.Map.Peers))
	}
	// ...but on clean shutdown.
	h.d.Close()
	if c, _ := state.LoadNetmap(dir); len(c.Map.Peers) != 2 {
		t.Fatalf("cache after shutdown has %d peers, want 2", len(c.Map.Peers))
	}

	// Restart with coord down: the engine gets the cached peers and
	// filter before coord answers.
	h2 := newHarness(t, dir, coord)
	cfg, n := h2.eng.last()
	if n != 1 || len(cfg.Peers) != 2 || cfg.Filter == nil || len(cfg.Filter.Inbound) != 1 {
		t.Fatalf("engine after offline restart: %d configs, %+v", n, cfg)
	}
	st := h2.d.Status(context.Background())
	if st.BackendState != localapi.StateRunning || st.Coord.Connected || len(st.Peers) != 2 {
		t.Fatalf("status after offline restart = %+v", st)
	}
	h2.d.Close()

	// Corrupt cache: ignored with a warning, no peers (fail closed).
	if err := os.WriteFile(state.NetmapPath(dir), []byte("{\"version\":1,\"map\":{"), 0o600); err != nil {
		t.Fatal(err)
	}
	h3 := newHarness(t, dir, coord)
	if _, n := h3.eng.last(); n != 0 {
		t.Fatalf("engine configured from a corrupt cache")
	}
	if !strings.Contains(h3.logs.String(), "ignoring the netmap cache") {
		t.Fatalf("no warning about the corrupt cache:\n%s", h3.logs.String())
	}
	if st := h3.d.Status(context.Background()); len(st.Peers) != 0 {
		t.Fatalf("peers from a corrupt cache: %+v", st.Peers)
	}
}

// The packet filter and relay map reach the engine: kept from the full
// map, replaced when a message carries one; status shows the engine's
// path.
func TestFilterDERPMapAndPath(t *testing.T) {
	self, peerB := node(1, "router-a"), node(2, "router-b")
	coord := newFakeCoord(self)
	eng := &pathEngine{fakeEngine: &fakeEngine{}, path: "relay coord"}
	h := newHarnessWith(t, t.TempDir(), coord, func(_ *config.Config, o *Options) {
		o.NewEngine = func(engine.Options, *slog.Logger) (engine.Engine, error) { return eng, nil }
	})
	first := fullMap(self, peerB)
	first.DERPMap = &wire.DERPMap{Regions: []wire.DERPRegion{{ID: 1, Code: "coord", Nodes: []wire.DERPNode{{Name: "1", HostName: "coord.example"}}}}}
	sess := join(t, h, self, first)
	cfg, _ := eng.last()
	if cfg.Filter != first.PacketFilter || cfg.DERPMap == nil || cfg.DERPMap.Regions[0].Code != "coord" {
		t.Fatalf("engine config = %+v", cfg)
	}
	sess.msgs <- &wire.MapMessage{Seq: 2, PeersChanged: []wire.Node{node(3, "c")}}
	waitFor(t, "delta", func() bool { c, _ := eng.last(); return len(c.Peers) == 2 })
	if c, _ := eng.last(); c.Filter != first.PacketFilter {
		t.Fatal("a delta without a filter dropped the filter")
	}
	f2 := &wire.PacketFilter{}
	sess.msgs <- &wire.MapMessage{Seq: 3, PacketFilter: f2}
	waitFor(t, "new filter", func() bool { c, _ := eng.last(); return c.Filter == f2 })

	st := h.d.Status(context.Background())
	if st.Peers[0].Path != "relay coord" {
		t.Fatalf("path = %q", st.Peers[0].Path)
	}
	eng.setPath("")
	if st := h.d.Status(context.Background()); st.Peers[0].Path != "direct" {
		t.Fatalf("fallback path = %q", st.Peers[0].Path)
	}
}

type pathEngine struct {
	*fakeEngine
	path string
}

func (e *pathEngine) setPath(p string) { e.mu.Lock(); e.path = p; e.mu.Unlock() }

func (e *pathEngine) Peers() []engine.PeerStatus {
	ps := e.fakeEngine.Peers()
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range ps {
		ps[i].Path = e.path
	}
	return ps
}

func upReq() localapi.UpRequest {
	return localapi.UpRequest{LoginServer: "https://198.18.0.2", AuthKey: testAuthKey, Timeout: 5 * time.Second}
}

// S20: a restarted agent never restores a peer whose key has expired, nor
// a cache older than netmap_cache_max_age (or saved "in the future", when
// the clock went back and its age cannot be judged).
func TestNetmapCacheHonoursExpiryAndMaxAge(t *testing.T) {
	dir := t.TempDir()
	self, live, gone := node(1, "router-a"), node(2, "router-b"), node(3, "router-c")
	live.KeyExpiry = time.Now().Add(time.Hour)
	gone.KeyExpiry = time.Now().Add(-time.Minute)
	coord := newFakeCoord(self)
	h := newHarness(t, dir, coord)
	join(t, h, self, fullMap(self, live, gone))
	h.d.Close()

	rewrite := func(savedAt time.Time) {
		t.Helper()
		c, err := state.LoadNetmap(dir)
		if err != nil {
			t.Fatal(err)
		}
		c.SavedAt = savedAt
		c.Map.Peers = []wire.Node{live, gone}
		if err := state.StoreNetmap(dir, c); err != nil {
			t.Fatal(err)
		}
	}
	peers := func(h *harness) []string {
		var names []string
		for _, p := range h.d.Status(context.Background()).Peers {
			names = append(names, p.Name)
		}
		return names
	}

	// A fresh cache: the live peer comes back, the expired one does not.
	rewrite(time.Now().Add(-time.Hour))
	h2 := newHarness(t, dir, coord)
	cfg, n := h2.eng.last()
	if n != 1 || len(cfg.Peers) != 1 || cfg.Peers[0].Key != live.Key {
		t.Fatalf("engine after restart: %d configs, peers %+v; want only %s", n, cfg.Peers, live.Name)
	}
	if got := peers(h2); len(got) != 1 || got[0] != live.Name {
		t.Fatalf("status peers = %v, want [%s]", got, live.Name)
	}
	if !strings.Contains(h2.logs.String(), "its key has expired") {
		t.Fatalf("no log about the expired peer:\n%s", h2.logs.String())
	}
	h2.d.Close()

	for _, tc := range []struct {
		name    string
		savedAt time.Time
		maxAge  string
		log     string
	}{
		{"older than the limit", time.Now().Add(-8 * 24 * time.Hour), "", "older than netmap_cache_max_age"},
		{"older than a shorter limit", time.Now().Add(-2 * time.Hour), "1h", "older than netmap_cache_max_age"},
		{"limit 0", time.Now().Add(-time.Minute), "0", "netmap_cache_max_age is 0"},
		{"saved in the future", time.Now().Add(time.Hour), "", "saved in the future"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rewrite(tc.savedAt)
			h := newHarnessWith(t, dir, coord, func(c *config.Config, _ *Options) {
				if tc.maxAge != "" {
					c.NetmapCacheMaxAge = tc.maxAge
				}
			})
			defer h.d.Close()
			if _, n := h.eng.last(); n != 0 {
				t.Fatalf("engine configured from a stale cache")
			}
			if got := peers(h); len(got) != 0 {
				t.Fatalf("peers restored from a stale cache: %v", got)
			}
			if !strings.Contains(h.logs.String(), tc.log) {
				t.Fatalf("log does not say %q:\n%s", tc.log, h.logs.String())
			}
		})
	}
}
