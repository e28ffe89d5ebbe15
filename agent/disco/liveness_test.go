package disco

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

// flow simulates a data flow from a to b for d: a sends every 100 ms over
// its direct path, and b's replies arrive while drop lets UDP through.
func flow(n *simNet, a, b *simNode, d time.Duration) {
	for end := n.clock.Now().Add(d); n.clock.Now().Before(end); {
		now := n.clock.Now()
		a.dataSent = now
		if n.drop == nil || !n.drop(addrB, addrA) {
			a.dataRecv = now
		}
		n.run(100 * time.Millisecond)
	}
}

// With data flowing, a dead direct path (NAT mapping flushed) is left for
// the relay in under 5 s: silence prompts a ping at once, a missed one
// marks the path suspect (the data plane then duplicates to the relay)
// and a second miss falls back.
func TestDataSilenceFallsBackFast(t *testing.T) {
	n, a, b := pair(t)
	n.delay[addrA], n.delay[addrB] = 5*time.Millisecond, 5*time.Millisecond
	n.until(time.Second, "direct", func() bool { return a.path(b).Direct == addrB && b.path(a).Direct == addrA })
	flow(n, a, b, 6*time.Second) // past a probe round: healthy traffic keeps the path
	if a.path(b).Direct != addrB || len(a.suspects) != 0 {
		t.Fatalf("healthy flow: path %v, suspects %v", a.path(b), a.suspects)
	}

	n.drop = func(_, _ netip.AddrPort) bool { return true }
	start := n.clock.Now()
	var suspectAt time.Duration
	for a.path(b).Direct.IsValid() {
		if n.clock.Now().Sub(start) > 5*time.Second {
			t.Fatalf("still direct after 5 s of silence; suspects %v", a.suspects)
		}
		if suspectAt == 0 && slices.Contains(a.suspects, true) {
			suspectAt = n.clock.Now().Sub(start)
		}
		flow(n, a, b, 100*time.Millisecond)
	}
	took := n.clock.Now().Sub(start)
	t.Logf("suspect after %v, relay after %v", suspectAt, took)
	want := SilenceBeforePing + missesToFallBack*LivenessTimeout
	if took < want-200*time.Millisecond || took > want+time.Second {
		t.Fatalf("fell back after %v, want about %v", took, want)
	}
	if suspectAt == 0 || suspectAt >= took {
		t.Fatalf("no suspect phase before the fallback: %v", a.suspects)
	}
	if !slices.Equal(a.suspects, []bool{true, false}) {
		t.Fatalf("suspect changes %v, want [true false]", a.suspects)
	}

	// Probing goes on over the relay: the healed path is used again.
	n.drop = nil
	n.until(RelayProbeInterval+time.Second, "direct again", func() bool { return a.path(b).Direct == addrB })
}

// One-way data (nothing to answer) costs a liveness ping now and then but
// never the path; an idle path sends no liveness pings.
func TestOneWayDataKeepsPath(t *testing.T) {
	n, a, b := pair(t)
	n.until(time.Second, "direct", func() bool { return a.path(b).Direct == addrB })
	for range 100 { // 10 s of one-way data
		a.dataSent = n.clock.Now()
		n.run(100 * time.Millisecond)
	}
	if a.path(b).Direct != addrB || len(a.paths) != 1 || len(a.suspects) != 0 {
		t.Fatalf("path %v, changes %v, suspects %v", a.path(b), a.paths, a.suspects)
	}

	// Idle for a while: only probe rounds (every DirectProbeInterval).
	n.run(3 * time.Second)
	before := len(a.sent)
	n.run(DirectProbeInterval - 100*time.Millisecond)
	if got := len(a.sent) - before; got > 2 {
		t.Fatalf("idle path: %d packets in less than a probe interval", got)
	}
}

// A single lost liveness pong makes the path suspect and the answer to
// the retry clears it without a path change.
func TestSuspectClears(t *testing.T) {
	n, a, b := pair(t)
	n.until(time.Second, "direct", func() bool { return a.path(b).Direct == addrB })
	flow(n, a, b, time.Second)
	// B's packets are lost until A suspects the path; the retry is answered.
	n.drop = func(src, _ netip.AddrPort) bool { return src == addrB && len(a.suspects) == 0 }
	n.until(4*time.Second, "suspect", func() bool {
		a.dataSent = n.clock.Now()
		return len(a.suspects) > 0
	})
	n.until(2*time.Second, "cleared", func() bool { return len(a.suspects) == 2 })
	if a.path(b).Direct != addrB || len(a.paths) != 1 || !slices.Equal(a.suspects, []bool{true, false}) {
		t.Fatalf("path %v, changes %v, suspects %v", a.path(b), a.paths, a.suspects)
	}
}
