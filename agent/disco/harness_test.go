package disco

import (
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
)

// fakeClock is the clock the tests drive.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// simNet delivers packets between Managers with a per-destination delay,
// a relay that always works, and a switch to drop UDP. It runs the real
// Managers: only the sockets are simulated.
type simNet struct {
	t      *testing.T
	clock  *fakeClock
	nodes  map[netip.AddrPort]*simNode // by each UDP address a node owns
	byKey  map[key.NodePublic]*simNode
	delay  map[netip.AddrPort]time.Duration // one-way, to that address
	drop   func(from, to netip.AddrPort) bool
	nats   []*simNAT // Linux masquerade boxes (nat_sim_test.go)
	queue  []simPkt
	errors []error
}

type simNode struct {
	net   *simNet
	priv  key.NodePrivate
	addrs []netip.AddrPort // [0] is the source of what it sends over v4, a v6 one for v6
	m     *Manager
	sent  []simPkt
	paths []Path
	// Data-plane activity the Manager sees through Config.Activity, and
	// the suspect changes it announced.
	dataSent, dataRecv time.Time
	suspects           []bool
}

type simPkt struct {
	at       time.Time
	from     *simNode
	src, dst netip.AddrPort // invalid dst: relay
	relayTo  key.NodePublic
	pkt      []byte
}

func newSimNet(t *testing.T) *simNet {
	return &simNet{t: t, clock: &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		nodes: map[netip.AddrPort]*simNode{}, byKey: map[key.NodePublic]*simNode{},
		delay: map[netip.AddrPort]time.Duration{}}
}

func (n *simNet) node(addrs ...string) *simNode {
	s := &simNode{net: n, priv: key.NewNode()}
	for _, a := range addrs {
		ap := netip.MustParseAddrPort(a)
		s.addrs = append(s.addrs, ap)
		n.nodes[ap] = s
	}
	m, err := New(Config{PrivateKey: s.priv, Sender: s, Now: n.clock.Now,
		OnPathChange: func(_ key.NodePublic, p Path) { s.paths = append(s.paths, p) },
		Activity:     func(key.NodePublic) (time.Time, time.Time) { return s.dataSent, s.dataRecv },
		OnSuspect:    func(_ key.NodePublic, v bool) { s.suspects = append(s.suspects, v) }})
	if err != nil {
		n.t.Fatal(err)
	}
	s.m = m
	n.byKey[s.priv.Public()] = s
	return s
}

func (s *simNode) src(dst netip.AddrPort) netip.AddrPort {
	for _, a := range s.addrs {
		if a.Addr().Is4() == dst.Addr().Is4() {
			return a
		}
	}
	return s.addrs[0]
}

func (s *simNode) SendUDP(pkt []byte, dst netip.AddrPort) error {
	p := simPkt{at: s.net.clock.Now().Add(s.net.delay[dst]), from: s, src: s.src(dst), dst: dst, pkt: pkt}
	s.sent = append(s.sent, p)
	s.net.queue = append(s.net.queue, p)
	return nil
}

func (s *simNode) SendRelay(pkt []byte, peer key.NodePublic) error {
	p := simPkt{at: s.net.clock.Now().Add(30 * time.Millisecond), from: s, relayTo: peer, pkt: pkt}
	s.sent = append(s.sent, p)
	s.net.queue = append(s.net.queue, p)
	return nil
}

// deliverDue hands every packet that is due to its receiver.
func (n *simNet) deliverDue() {
	now := n.clock.Now()
	for {
		i := slices.IndexFunc(n.queue, func(p simPkt) bool { return !p.at.After(now) })
		if i < 0 {
			return
		}
		p := n.queue[i]
		n.queue = slices.Delete(n.queue, i, i+1)
		if !p.dst.IsValid() {
			if to := n.byKey[p.relayTo]; to != nil {
				if err := to.m.HandleRelay(p.pkt, p.from.priv.Public()); err != nil {
					n.errors = append(n.errors, err)
				}
			}
			continue
		}
		if n.drop != nil && n.drop(p.src, p.dst) {
			continue
		}
		if !n.transit(&p) {
			continue
		}
		if to := n.nodes[p.dst]; to != nil {
			if err := to.m.HandleUDP(p.pkt, p.src); err != nil {
				n.errors = append(n.errors, err)
			}
		}
	}
}

// run advances the clock by d in 1 ms steps, delivering and ticking.
func (n *simNet) run(d time.Duration) {
	for end := n.clock.Now().Add(d); n.clock.Now().Before(end); {
		n.clock.Add(time.Millisecond)
		n.deliverDue()
		for _, s := range n.byKey {
			s.m.Tick()
		}
		n.deliverDue()
	}
}

// until runs until cond holds, failing after max; it returns the time taken.
func (n *simNet) until(max time.Duration, what string, cond func() bool) time.Duration {
	n.t.Helper()
	start := n.clock.Now()
	for !cond() {
		if n.clock.Now().Sub(start) > max {
			n.t.Fatalf("%s: not within %v", what, max)
		}
		n.run(10 * time.Millisecond)
	}
	return n.clock.Now().Sub(start)
}

func (s *simNode) path(peer *simNode) Path {
	p, ok := s.m.Path(peer.priv.Public())
	if !ok {
		s.net.t.Fatalf("peer unknown")
	}
	return p
}

func peerOf(s *simNode, region string, eps ...netip.AddrPort) Peer {
	return Peer{Key: s.priv.Public(), Endpoints: eps, Region: region}
}
