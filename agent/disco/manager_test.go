package disco

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
)

var (
	addrA  = netip.MustParseAddrPort("198.18.1.1:41641")
	addrB  = netip.MustParseAddrPort("198.18.2.1:41641")
	addrB6 = netip.MustParseAddrPort("[2001:db8::2]:41641")
)

// pair returns two nodes that know each other from the netmap; A has B's
// endpoints, B has A's.
func pair(t *testing.T) (*simNet, *simNode, *simNode) {
	n := newSimNet(t)
	a := n.node(addrA.String())
	b := n.node(addrB.String(), addrB6.String())
	a.m.SetPeers([]Peer{peerOf(b, "fra", addrB)})
	b.m.SetPeers([]Peer{peerOf(a, "fra", addrA)})
	return n, a, b
}

// lastUDP returns the last UDP packet s sent (to dst if valid).
func lastUDP(t *testing.T, s *simNode) simPkt {
	t.Helper()
	for i := len(s.sent) - 1; i >= 0; i-- {
		if s.sent[i].dst.IsValid() {
			return s.sent[i]
		}
	}
	t.Fatal("nothing sent over UDP")
	return simPkt{}
}

// Forged packets are refused: unknown sender, broken box, sealed for
// another node, and a relay frame whose sealed sender is not the relay's
// authenticated source.
func TestForgedRejected(t *testing.T) {
	n, a, b := pair(t)
	stranger := key.NewNode()
	ping := func(from key.NodePrivate, to key.NodePublic) []byte {
		return Seal(from, to, &Ping{NodeKey: from.Public()})
	}
	good := ping(a.priv, b.priv.Public())
	flipped := bytes.Clone(good)
	flipped[len(flipped)-5] ^= 0x40
	forInOther := ping(a.priv, stranger.Public())
	spoofKey := Seal(a.priv, b.priv.Public(), &Ping{NodeKey: stranger.Public()})
	for _, tc := range []struct {
		name string
		pkt  []byte
		want error
		msg  string
	}{
		{"unknown sender", ping(stranger, b.priv.Public()), ErrUnknownPeer, ""},
		{"tampered box", flipped, nil, "does not open"},
		{"sealed for someone else", forInOther, nil, "does not open"},
		{"ping naming another key", spoofKey, ErrKeyMismatch, ""},
		{"not disco", []byte("GET / HTTP/1.1"), nil, "bad magic"},
	} {
		err := b.m.HandleUDP(tc.pkt, addrA)
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: err = %v", tc.name, err)
		}
	}
	if err := b.m.HandleRelay(good, stranger.Public()); !errors.Is(err, ErrRelaySender) {
		t.Errorf("relay source mismatch: err = %v", err)
	}
	if len(b.sent) != 0 {
		t.Fatalf("B answered forged packets: %d sent", len(b.sent))
	}
	// The genuine one is answered with a pong to its source.
	if err := b.m.HandleUDP(good, addrA); err != nil {
		t.Fatal(err)
	}
	if p := lastUDP(t, b); p.dst != addrA {
		t.Fatalf("pong went to %s", p.dst)
	}
	_ = n
}

// A replayed ping (same nonce) is refused and not answered again.
func TestReplayedPingRejected(t *testing.T) {
	_, a, b := pair(t)
	pkt := Seal(a.priv, b.priv.Public(), &Ping{NodeKey: a.priv.Public()})
	if err := b.m.HandleUDP(pkt, addrA); err != nil {
		t.Fatal(err)
	}
	sent := len(b.sent)
	for _, src := range []netip.AddrPort{addrA, netip.MustParseAddrPort("198.18.9.9:1")} {
		if err := b.m.HandleUDP(pkt, src); !errors.Is(err, errReplay) {
			t.Fatalf("replay from %s: err = %v", src, err)
		}
	}
	if err := b.m.HandleRelay(pkt, a.priv.Public()); !errors.Is(err, errReplay) {
		t.Fatalf("replay over relay: err = %v", err)
	}
	if len(b.sent) != sent {
		t.Fatal("replay was answered")
	}
	if st := b.m.Status()[0]; len(st.Candidates) != 1 {
		t.Fatalf("replay from a new address added a candidate: %+v", st.Candidates)
	}
}

// The replay cache is bounded and forgets only expired nonces.
func TestReplayCacheBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newReplayCache(time.Minute, 4)
	nonce := func(i byte) [nonceLen]byte { return [nonceLen]byte{i} }
	for i := range byte(4) {
		if err := c.check(nonce(i), now); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.check(nonce(9), now); !errors.Is(err, errNonceFull) {
		t.Fatalf("full cache: err = %v", err)
	}
	if err := c.check(nonce(0), now.Add(59*time.Second)); !errors.Is(err, errReplay) {
		t.Fatalf("replay inside the window: err = %v", err)
	}
	now = now.Add(time.Minute)
	for i := range 10000 { // steady traffic: memory stays flat
		now = now.Add(20 * time.Second)
		if err := c.check(nonce(byte(i%200)+10), now); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if c.len() > 4 || len(c.fifo) > 8 {
		t.Fatalf("cache grew: %d entries, fifo %d", c.len(), len(c.fifo))
	}
}

// Pongs count only for a TxID we sent to that peer, from the address we
// pinged, and only once.
func TestUnsolicitedPongRejected(t *testing.T) {
	n, a, b := pair(t)
	c := n.node("198.18.3.1:41641")
	a.m.SetPeers([]Peer{peerOf(b, "fra", addrB), peerOf(c, "fra")})
	c.m.SetPeers([]Peer{peerOf(a, "fra")})
	a.m.Tick() // first round: A pings B
	ping := lastUDP(t, a)
	_, msg, err := Open(b.priv, ping.pkt)
	if err != nil {
		t.Fatal(err)
	}
	tx := msg.(*Ping).TxID
	pong := func(from key.NodePrivate, tx TxID) []byte {
		return Seal(from, a.priv.Public(), &Pong{TxID: tx, Src: addrA})
	}
	if err := a.m.HandleUDP(pong(b.priv, TxID{0xee}), addrB); !errors.Is(err, ErrUnsolicited) {
		t.Fatalf("random TxID: err = %v", err)
	}
	if err := a.m.HandleUDP(pong(c.priv, tx), c.addrs[0]); !errors.Is(err, ErrUnsolicited) {
		t.Fatalf("TxID sent to another peer: err = %v", err)
	}
	if err := a.m.HandleRelay(pong(b.priv, tx), b.priv.Public()); !errors.Is(err, ErrUnsolicited) {
		t.Fatalf("pong over the relay for a UDP ping: err = %v", err)
	}
	if err := a.m.HandleUDP(pong(b.priv, tx), netip.MustParseAddrPort("198.18.9.9:9")); !errors.Is(err, ErrWrongPongSrc) {
		t.Fatalf("pong from elsewhere: err = %v", err)
	}
	if p := a.path(b); p.Direct.IsValid() {
		t.Fatalf("rejected pongs moved the path: %v", p)
	}
	n.clock.Add(20 * time.Millisecond)
	if err := a.m.HandleUDP(pong(b.priv, tx), addrB); err != nil {
		t.Fatalf("genuine pong: %v", err)
	}
	if p := a.path(b); p.Direct != addrB {
		t.Fatalf("path after the pong: %v", p)
	}
	if err := a.m.HandleUDP(pong(b.priv, tx), addrB); !errors.Is(err, ErrUnsolicited) {
		t.Fatalf("second pong for one ping: err = %v", err)
	}
	// Too late: a pong after PingTimeout finds no pending ping.
	a.m.NetworkChanged()
	_, msg, _ = Open(b.priv, lastUDP(t, a).pkt)
	n.clock.Add(PingTimeout)
	a.m.Tick()
	if err := a.m.HandleUDP(pong(b.priv, msg.(*Ping).TxID), addrB); !errors.Is(err, ErrUnsolicited) {
		t.Fatalf("late pong: err = %v", err)
	}
}

// The relay carries traffic until a pong proves a direct path; a dead
// direct path is noticed within two missed probes and traffic falls back
// to the relay; when the path heals, traffic goes direct again.
func TestUpgradeFallbackRecover(t *testing.T) {
	n, a, b := pair(t)
	n.delay[addrA], n.delay[addrB] = 5*time.Millisecond, 5*time.Millisecond
	if p := a.path(b); p.String() != "relay fra" {
		t.Fatalf("initial path %q, want relay fra", p)
	}
	n.until(time.Second, "A goes direct", func() bool { return a.path(b).Direct == addrB })
	n.until(time.Second, "B goes direct", func() bool { return b.path(a).Direct == addrA })
	st := a.m.Status()[0]
	if st.Path != "direct "+addrB.String() || st.Candidates[0].RTT != 10*time.Millisecond || st.LastPong.IsZero() {
		t.Fatalf("status: %+v", st)
	}

	// Direct paths stay up across several re-probe rounds.
	n.run(2 * DirectProbeInterval)
	if a.path(b).Direct != addrB {
		t.Fatalf("path lost while healthy: %v", a.path(b))
	}

	// Cut UDP: within one direct interval plus two ping timeouts both
	// sides are back on the relay.
	n.drop = func(_, _ netip.AddrPort) bool { return true }
	took := n.until(DirectProbeInterval+2*PingTimeout+time.Second, "fall back to relay",
		func() bool { return !a.path(b).Direct.IsValid() && !b.path(a).Direct.IsValid() })
	t.Logf("fell back after %v", took)
	if got := a.path(b).String(); got != "relay fra" {
		t.Fatalf("path %q after fallback", got)
	}

	// Relay-only peers are re-probed every ~5 s: healing is found soon.
	n.drop = nil
	took = n.until(RelayProbeInterval+time.Second, "upgrade again", func() bool { return a.path(b).Direct == addrB })
	t.Logf("upgraded again after %v", took)
	if len(a.paths) != 3 {
		t.Fatalf("path changes: %v", a.paths)
	}
}

// One lost pong does not end a direct path: the retry answers.
func TestSingleLossNoFallback(t *testing.T) {
	n, a, b := pair(t)
	n.until(time.Second, "direct", func() bool { return a.path(b).Direct == addrB })
	n.run(DirectProbeInterval - 500*time.Millisecond)
	dropped := 0
	n.drop = func(src, _ netip.AddrPort) bool {
		if src == addrB && dropped == 0 {
			dropped++
			return true
		}
		return false
	}
	n.run(DirectProbeInterval)
	if dropped != 1 || a.path(b).Direct != addrB || len(a.paths) != 1 {
		t.Fatalf("dropped %d, path %v, changes %v", dropped, a.path(b), a.paths)
	}
}

// NetworkChanged probes every peer at once instead of waiting 25 s, and
// a dead path is left within about two ping timeouts.
func TestNetworkChangedReprobes(t *testing.T) {
	n, a, b := pair(t)
	n.until(time.Second, "direct", func() bool { return a.path(b).Direct == addrB })
	n.run(time.Second)
	n.drop = func(_, _ netip.AddrPort) bool { return true }
	before := len(a.sent)
	a.m.NetworkChanged()
	if len(a.sent) == before {
		t.Fatal("NetworkChanged sent nothing")
	}
	took := n.until(2*LivenessTimeout+time.Second, "fall back", func() bool { return !a.path(b).Direct.IsValid() })
	if took < 2*LivenessTimeout-100*time.Millisecond {
		t.Fatalf("fell back after %v: one miss must not be enough", took)
	}
}

// CallMeMaybe: A has no endpoint for B from coord; B (on the relay)
// announces its endpoints and A pings them, so both go direct.
func TestCallMeMaybeUpgrades(t *testing.T) {
	n := newSimNet(t)
	a := n.node(addrA.String())
	b := n.node(addrB.String())
	a.m.SetPeers([]Peer{peerOf(b, "fra")})
	b.m.SetPeers([]Peer{peerOf(a, "fra")})
	b.m.SetLocalEndpoints([]netip.AddrPort{addrB, {}, addrB})
	n.until(time.Second, "A direct via CallMeMaybe", func() bool { return a.path(b).Direct == addrB })
	n.until(time.Second, "B direct via A's pings", func() bool { return b.path(a).Direct == addrA })
	var src []string
	for _, c := range b.m.Status()[0].Candidates {
		src = append(src, c.Source)
	}
	if strings.Join(src, ",") != "ping" {
		t.Fatalf("B's candidates: %v", src)
	}
	for _, err := range n.errors {
		t.Errorf("unexpected rejection: %v", err)
	}
}

func TestPathChoice(t *testing.T) {
	v4 := netip.MustParseAddrPort("198.18.2.1:1")
	v6 := netip.MustParseAddrPort("[2001:db8::2]:1")
	cand := func(a netip.AddrPort, rtt time.Duration) *candidate {
		return &candidate{addr: a, rtt: rtt, lastPong: time.Unix(1, 0)}
	}
	for _, tc := range []struct {
		name  string
		c, b  *candidate
		want  bool
		fresh bool // current path from this round
	}{
		{"no current path", cand(v4, 50*time.Millisecond), nil, true, false},
		{"much faster", cand(v4, 10*time.Millisecond), cand(v4, 20*time.Millisecond), true, false},
		{"jitter", cand(v4, 19*time.Millisecond), cand(v4, 20*time.Millisecond), false, false},
		{"v6 a bit slower vs v4 current", cand(v6, 21*time.Millisecond), cand(v4, 20*time.Millisecond), false, false},
		{"v6 a bit slower, same round", cand(v6, 21*time.Millisecond), cand(v4, 20*time.Millisecond), true, true},
		{"jitter, same round", cand(v4, 19*time.Millisecond), cand(v4, 20*time.Millisecond), true, true},
		{"current dead", cand(v4, 90*time.Millisecond), &candidate{addr: v4, rtt: time.Millisecond, lastPong: time.Unix(1, 0), failed: true}, true, false},
	} {
		if got := better(tc.c, tc.b, !tc.fresh); got != tc.want {
			t.Errorf("%s: better = %v, want %v", tc.name, got, tc.want)
		}
	}

	// End to end with the real Manager: the lowest RTT wins; IPv6 wins
	// when within 10%.
	for _, tc := range []struct {
		name     string
		d4, d6   time.Duration
		wantPath netip.AddrPort
	}{
		{"v4 clearly faster", 5 * time.Millisecond, 20 * time.Millisecond, addrB},
		{"v6 clearly faster", 20 * time.Millisecond, 5 * time.Millisecond, addrB6},
		{"v6 slightly slower still preferred", 20 * time.Millisecond, 21 * time.Millisecond, addrB6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, a, b := pair(t)
			a6 := netip.MustParseAddrPort("[2001:db8::1]:41641")
			a.addrs = append(a.addrs, a6)
			n.nodes[a6] = a
			n.delay[addrB], n.delay[addrB6] = tc.d4, tc.d6
			a.m.SetPeers([]Peer{peerOf(b, "fra", addrB, addrB6)})
			n.run(time.Second)
			if got := a.path(b).Direct; got != tc.wantPath {
				t.Fatalf("path %v, want %v (status %+v)", got, tc.wantPath, a.m.Status())
			}
		})
	}
}

// Candidates learned from ping sources are capped and expire, so a peer
// (or replays of its old pings) cannot grow our state.
func TestPingLearnedBounded(t *testing.T) {
	n, a, b := pair(t)
	for i := range 100 {
		src := netip.AddrPortFrom(netip.MustParseAddr("198.18.5.5"), uint16(1000+i))
		if err := b.m.HandleUDP(Seal(a.priv, b.priv.Public(), &Ping{NodeKey: a.priv.Public()}), src); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(b.m.Status()[0].Candidates); got > maxPingLearned+1 {
		t.Fatalf("%d candidates after 100 ping sources", got)
	}
	n.drop = func(_, _ netip.AddrPort) bool { return true }
	n.run(pingLearnedTTL + time.Second)
	if got := b.m.Status()[0].Candidates; len(got) != 1 || got[0].Addr != addrA {
		t.Fatalf("ping-learned candidates did not expire: %+v", got)
	}
}

func TestSetPeersForgets(t *testing.T) {
	_, a, b := pair(t)
	a.m.Tick()
	a.m.SetPeers(nil)
	if _, ok := a.m.Path(b.priv.Public()); ok || len(a.m.pending) != 0 {
		t.Fatal("removed peer still has state")
	}
	if err := a.m.HandleUDP(Seal(b.priv, a.priv.Public(), &Ping{NodeKey: b.priv.Public()}), addrB); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("removed peer's ping: err = %v", err)
	}
}
