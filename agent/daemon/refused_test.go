package daemon

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/agent/localapi"
	"github.com/lanmesh/lanmesh/agent/state"
	"github.com/lanmesh/lanmesh/internal/controlclient"
	"github.com/lanmesh/lanmesh/internal/testenv"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// After "lanmesh-coord nodes delete" coord closes the node's stream and
// refuses the next one (401, reason not_registered). The node must leave
// the mesh at once: no peers and no filter in the engine, no netmap cache
// to come back from (S20), status NeedsLogin with what happened and no
// next_retry, and no further attempts.
func TestDeletedNodeLeavesAndStopsRetrying(t *testing.T) {
	dir := t.TempDir()
	self, peer := node(1, "router-a"), node(2, "router-b")
	coord := newFakeCoord(self)
	h := newHarness(t, dir, coord)
	sess := join(t, h, self, fullMap(self, peer))
	if cfg, _ := h.eng.last(); len(cfg.Peers) != 1 || cfg.Filter == nil {
		t.Fatalf("engine after join: %+v", cfg)
	}
	if _, err := os.Stat(state.NetmapPath(dir)); err != nil {
		t.Fatalf("no netmap cache after join: %v", err)
	}

	// coord deletes the node: the stream ends, the next one is refused.
	refusal := &controlclient.StatusError{Code: 401, Reason: wire.ReasonNotRegistered, Message: "machine not registered: join with an auth key first"}
	go func() {
		<-coord.mapReqs
		coord.sessions <- &session{msgs: closedMsgs(), err: refusal}
	}()
	close(sess.msgs)

	waitFor(t, "NeedsLogin", func() bool {
		return h.d.Status(context.Background()).BackendState == localapi.StateNeedsLogin
	})
	st := h.d.Status(context.Background())
	if len(st.Peers) != 0 || st.Coord.NextRetry != "" || st.Coord.Connected ||
		!strings.Contains(st.Coord.LastError, "deleted by the mesh admin") || !strings.Contains(st.Coord.LastError, "lanmesh up --auth-key") {
		t.Fatalf("status after delete = %+v", st)
	}
	if cfg, _ := h.eng.last(); len(cfg.Peers) != 0 || cfg.Filter != nil || len(cfg.Routes) != 0 {
		t.Fatalf("engine keeps the mesh after delete: %+v", cfg)
	}
	if _, err := os.Stat(state.NetmapPath(dir)); !os.IsNotExist(err) {
		t.Fatalf("netmap cache kept after delete: %v", err)
	}
	// No retry: the loop has ended and asks coord nothing more.
	select {
	case <-coord.mapReqs:
		t.Fatal("the agent retried after a final refusal")
	case <-time.After(2500 * time.Millisecond): // longer than minBackoff+jitter
	}
	if !strings.Contains(h.logs.String(), "will not retry") {
		t.Fatalf("no log of the refusal:\n%s", h.logs.String())
	}

	// A restart comes up with no peers (nothing cached) and is refused again.
	h.d.Close()
	go func() {
		<-coord.mapReqs
		coord.sessions <- &session{msgs: closedMsgs(), err: refusal}
	}()
	h2 := newHarness(t, dir, coord)
	waitFor(t, "NeedsLogin after restart", func() bool {
		return h2.d.Status(context.Background()).BackendState == localapi.StateNeedsLogin
	})
	// The refusal may already have cleared the (empty) data plane; what
	// must never happen is a config with the old peers or filter.
	h2.eng.mu.Lock()
	defer h2.eng.mu.Unlock()
	for i, cfg := range h2.eng.configs {
		if len(cfg.Peers) != 0 || cfg.Filter != nil {
			t.Fatalf("a deleted node restored its mesh after a restart (config %d: %+v)", i, cfg)
		}
	}
}

// Every final reason names what happened and what to do; a plain 401
// (say, an expired challenge nonce) is not final and is retried.
func TestRefusalMessages(t *testing.T) {
	for reason, want := range map[string]string{
		wire.ReasonNotRegistered:   "deleted by the mesh admin",
		wire.ReasonNodeExpired:     "key has expired",
		wire.ReasonNodeKeyMismatch: "another node key",
		wire.ReasonUserDisabled:    "users enable",
	} {
		if got := refusalMessage(&controlclient.StatusError{Code: 401, Reason: reason, Message: "m"}); !strings.Contains(got, want) || !strings.Contains(got, "not retrying") {
			t.Errorf("%s: %q does not say %q", reason, got, want)
		}
	}
	if (&controlclient.StatusError{Code: 401, Message: "nonce expired"}).NeedsLogin() {
		t.Fatal("a 401 without a reason must be retried")
	}
}

// Agents reconnect within 5 s of coord coming back, however long it was
// away: the backoff is capped at 3 s (±20% jitter). Here coord refuses
// connections for 12 s (with the old 30 s cap the agent would wait 8 s
// and then 16 s), and the time from coord's return to a working stream
// is measured.
func TestReconnectSoonAfterCoordReturns(t *testing.T) {
	if testing.Short() {
		testenv.Optional(t, "takes 15 s; not under -short")
	}
	self, peer := node(1, "router-a"), node(2, "router-b")
	coord := newFakeCoord(self)
	h := newHarness(t, t.TempDir(), coord)
	sess := join(t, h, self, fullMap(self, peer))

	upAt := time.Now().Add(12 * time.Second)
	var mu sync.Mutex
	var attempts []time.Time // every map request, the last one succeeds
	go func() {
		for range coord.mapReqs {
			mu.Lock()
			attempts = append(attempts, time.Now())
			mu.Unlock()
			if time.Now().Before(upAt) {
				coord.sessions <- &session{msgs: closedMsgs(), err: fmtErr()}
				continue
			}
			coord.open(self, peer)
			return
		}
	}()
	close(sess.msgs) // coord goes down
	waitFor(t, "disconnected", func() bool { return !h.d.Status(context.Background()).Coord.Connected })
	time.Sleep(time.Until(upAt))
	deadline := upAt.Add(10 * time.Second)
	for !h.d.Status(context.Background()).Coord.Connected {
		if time.Now().After(deadline) {
			t.Fatalf("not reconnected 10 s after coord came back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(upAt)
	mu.Lock()
	defer mu.Unlock()
	// The gaps between attempts show the cap whatever the outage's length
	// and the jitter's luck: none may exceed 3 s + 20% (+ scheduling slack).
	var gaps []string
	var maxGap time.Duration
	for i := 1; i < len(attempts); i++ {
		g := attempts[i].Sub(attempts[i-1])
		maxGap = max(maxGap, g)
		gaps = append(gaps, g.Round(100*time.Millisecond).String())
	}
	t.Logf("reconnected %v after coord came back; gaps between its %d attempts: %v", took.Round(time.Millisecond), len(attempts), gaps)
	if took > 5*time.Second {
		t.Fatalf("reconnect took %v, want under 5 s", took)
	}
	if maxGap > 4500*time.Millisecond {
		t.Fatalf("attempts %v apart while coord was down: a longer outage would take that long to notice its return", maxGap.Round(time.Millisecond))
	}
}
