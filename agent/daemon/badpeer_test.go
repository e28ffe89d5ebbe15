package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/agent/localapi"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// S19: a netmap with one invalid peer (a node key another peer holds, an
// unroutable prefix) is applied without that peer, status names it and
// why, and later deltas (revocations, new peers) keep being applied. A
// failed Reconfig is shown in status and retried, never dropped.
func TestBadPeerLeftOutOthersApplied(t *testing.T) {
	self := node(1, "router-a")
	b, c := node(2, "router-b"), node(3, "router-c")
	dup := node(4, "evil")
	dup.Key = b.Key // re-registered with router-b's node key
	lo := node(5, "loopy")
	lo.Addresses = append(lo.Addresses, pfx("127.0.0.0/8")...)
	coord := newFakeCoord(self)
	h := newHarness(t, t.TempDir(), coord)
	ctx := context.Background()

	sessCh := make(chan *session, 1)
	go func() { <-coord.mapReqs; sessCh <- coord.open(self, b, c, dup, lo) }()
	if _, err := h.d.Up(ctx, localapi.UpRequest{LoginServer: "https://198.18.0.2", AuthKey: testAuthKey, Timeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	sess := <-sessCh
	cfg, _ := h.eng.last()
	if len(cfg.Peers) != 2 || cfg.Peers[0].Name != "router-b" || cfg.Peers[1].Name != "router-c" {
		t.Fatalf("engine peers %+v, want router-b and router-c", cfg.Peers)
	}
	st := h.d.Status(ctx)
	if len(st.RejectedPeers) != 2 {
		t.Fatalf("rejected_peers %+v, want evil and loopy", st.RejectedPeers)
	}
	evil, loopy := st.RejectedPeers[0], st.RejectedPeers[1]
	if evil.ID != 4 || evil.Name != "evil" || evil.NodeKey != b.Key.String() || !strings.Contains(evil.Reason, `already used by peer "router-b"`) {
		t.Errorf("evil: %+v", evil)
	}
	if loopy.ID != 5 || !strings.Contains(loopy.Reason, "127.0.0.0/8") {
		t.Errorf("loopy: %+v", loopy)
	}
	js, _ := json.Marshal(st)
	if !strings.Contains(string(js), `"rejected_peers":[{"id":4,"name":"evil","node_key":"`+b.Key.String()) {
		t.Errorf("status JSON does not name the left-out peer: %s", js)
	}
	if !strings.Contains(h.logs.String(), "peer left out of the data plane") {
		t.Error("no log line for the left-out peer")
	}

	// A new peer and a revocation still flow.
	d := node(6, "router-d")
	sess.msgs <- &wire.MapMessage{Seq: 2, PeersChanged: []wire.Node{d}}
	waitFor(t, "new peer applied", func() bool { c, _ := h.eng.last(); return len(c.Peers) == 3 })
	sess.msgs <- &wire.MapMessage{Seq: 3, PeersRemoved: []wire.NodeID{c.ID, lo.ID}}
	waitFor(t, "revocation applied", func() bool {
		cfg, _ := h.eng.last()
		for _, p := range cfg.Peers {
			if p.Key == c.Key {
				return false
			}
		}
		return len(cfg.Peers) == 2
	})
	if st := h.d.Status(ctx); len(st.RejectedPeers) != 1 || st.RejectedPeers[0].Name != "evil" {
		t.Fatalf("rejected after loopy left: %+v", st.RejectedPeers)
	}

	// The data plane fails once: status says so, the refresher retries.
	h.eng.setFailNext(errors.New("engine: nftables: device busy"))
	sess.msgs <- &wire.MapMessage{Seq: 4, PeersRemoved: []wire.NodeID{d.ID}}
	waitFor(t, "engine error in status", func() bool { return h.d.Status(ctx).EngineError != "" })
	if st := h.d.Status(ctx); !strings.Contains(st.EngineError, "device busy") {
		t.Fatalf("engine_error %q", st.EngineError)
	}
	h.d.refresh(false)
	cfg, _ = h.eng.last()
	if len(cfg.Peers) != 1 || cfg.Peers[0].Key != b.Key {
		t.Fatalf("after retry engine peers %+v, want only router-b", cfg.Peers)
	}
	if st := h.d.Status(ctx); st.EngineError != "" {
		t.Fatalf("engine_error after a good retry: %q", st.EngineError)
	}
}
