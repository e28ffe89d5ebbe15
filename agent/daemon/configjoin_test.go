package daemon

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/lanmesh/lanmesh/agent/config"
	"github.com/lanmesh/lanmesh/agent/state"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// OpenWrt keeps the netmap cache in RAM (cache_dir /tmp/lanmesh) and only
// the keys in flash: with cache_dir set, netmap.json is written there and
// restored from there, and the state dir holds state.json alone.
func TestNetmapCacheInCacheDir(t *testing.T) {
	stateDir, cacheDir := t.TempDir(), filepath.Join(t.TempDir(), "ram")
	self, peerB := node(1, "router-a"), node(2, "router-b")
	coord := newFakeCoord(self)
	inRAM := func(c *config.Config, _ *Options) { c.CacheDir = cacheDir }
	h := newHarnessWith(t, stateDir, coord, inRAM)
	join(t, h, self, fullMap(self, peerB))
	if c, err := state.LoadNetmap(cacheDir); err != nil || len(c.Map.Peers) != 1 {
		t.Fatalf("cache in cache_dir after join = %+v, %v", c, err)
	}
	if fi, err := os.Stat(cacheDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("cache_dir %v %v, want a 0700 directory made by the agent", fi, err)
	}
	ents, _ := os.ReadDir(stateDir)
	for _, e := range ents {
		if e.Name() != "state.json" {
			t.Errorf("state dir holds %s; want state.json only (the cache belongs in cache_dir)", e.Name())
		}
	}
	h.d.Close()

	h2 := newHarnessWith(t, stateDir, coord, inRAM)
	if cfg, n := h2.eng.last(); n != 1 || len(cfg.Peers) != 1 {
		t.Fatalf("restart did not restore the cache from cache_dir: %d configs, %+v", n, cfg)
	}
}

// The join block of /etc/config/lanmesh carries the exit node settings:
// JoinFromConfig applies them as `lanmesh up` would, and a reload with
// them cleared turns them off.
func TestJoinFromConfigExitNode(t *testing.T) {
	self := node(1, "router-a")
	coord := newFakeCoord(self)
	h := newHarness(t, t.TempDir(), coord)
	key := filepath.Join(t.TempDir(), "authkey")
	if err := os.WriteFile(key, []byte(testAuthKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.Join = config.Join{LoginServer: "https://198.18.0.2", AuthKeyFile: key, AdvertiseExitNode: true, ExitNodeAllowLANAccess: true}
	go func() {
		r := <-coord.mapReqs
		m := &wire.MapMessage{Seq: 1, Full: true, Self: &self, Domain: "mesh.internal"}
		m.Self.Key = r.NodeKey
		s := &session{msgs: make(chan *wire.MapMessage, 10)}
		s.msgs <- m
		coord.sessions <- s
	}()
	if err := h.d.JoinFromConfig(context.Background(), &cfg); err != nil {
		t.Fatal(err)
	}
	prefs := func() state.Prefs { h.d.mu.Lock(); defer h.d.mu.Unlock(); return h.d.st.Prefs }
	p := prefs()
	if !p.AdvertiseExitNode || !p.ExitNodeAllowLANAccess || p.ExitNode != "" {
		t.Fatalf("prefs after join from config = %+v, want the exit node offered and LAN access kept", p)
	}

	// A reload with the offer switched off.
	cfg.Join.AdvertiseExitNode = false
	go func() {
		r := <-coord.mapReqs
		m := &wire.MapMessage{Seq: 1, Full: true, Self: &self, Domain: "mesh.internal"}
		m.Self.Key = r.NodeKey
		s := &session{msgs: make(chan *wire.MapMessage, 10)}
		s.msgs <- m
		coord.sessions <- s
	}()
	if err := h.d.JoinFromConfig(context.Background(), &cfg); err != nil {
		t.Fatal(err)
	}
	if p := prefs(); p.AdvertiseExitNode {
		t.Fatalf("advertise_exit_node 0 on reload left the offer on: %+v", p)
	}
}
