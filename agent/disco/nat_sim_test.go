package disco

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// simNAT models a Linux/OpenWrt box that masquerades one inside host as
// conntrack does (port kept unless the reply tuple is taken, then a random
// port; only replies come in), with an input policy for unsolicited UDP to
// the box itself: "drop", "reject" (ICMP port unreachable, no entry) or
// "accept" (port unreachable from the kernel, and a conntrack entry that
// stays 30 s, refreshed by every datagram of the same flow).
type simNAT struct {
	pub    netip.Addr
	inside netip.AddrPort
	input  string
	ct     []ctEntry
}

type ctEntry struct {
	orig, reply [2]netip.AddrPort // src, dst
	expires     time.Time
}

const ctUnreplied = 30 * time.Second

func (x *simNAT) live(now time.Time) []*ctEntry {
	var out []*ctEntry
	for i := range x.ct {
		if now.Before(x.ct[i].expires) {
			out = append(out, &x.ct[i])
		}
	}
	return out
}

func (x *simNAT) find(now time.Time, match func(*ctEntry) bool) *ctEntry {
	for _, e := range x.live(now) {
		if match(e) {
			return e
		}
	}
	return nil
}

// out translates a datagram from the inside host; it returns the public
// source.
func (x *simNAT) out(src, dst netip.AddrPort, now time.Time) netip.AddrPort {
	if e := x.find(now, func(e *ctEntry) bool { return e.orig == [2]netip.AddrPort{src, dst} }); e != nil {
		e.expires = now.Add(ctUnreplied)
		return e.reply[1]
	}
	port := src.Port()
	for x.taken(now, [2]netip.AddrPort{dst, netip.AddrPortFrom(x.pub, port)}) {
		port = uint16(1024 + rand.IntN(64000))
	}
	pub := netip.AddrPortFrom(x.pub, port)
	x.ct = append(x.ct, ctEntry{orig: [2]netip.AddrPort{src, dst}, reply: [2]netip.AddrPort{dst, pub}, expires: now.Add(ctUnreplied)})
	return pub
}

func (x *simNAT) taken(now time.Time, t [2]netip.AddrPort) bool {
	return x.find(now, func(e *ctEntry) bool { return e.orig == t || e.reply == t }) != nil
}

// in takes a datagram to the box's public address: the inside address to
// deliver it to, or refused (the box answers port unreachable).
func (x *simNAT) in(src, dst netip.AddrPort, now time.Time) (to netip.AddrPort, refused bool) {
	t := [2]netip.AddrPort{src, dst}
	if e := x.find(now, func(e *ctEntry) bool { return e.reply == t }); e != nil {
		e.expires = now.Add(ctUnreplied)
		return e.orig[0], false
	}
	if e := x.find(now, func(e *ctEntry) bool { return e.orig == t }); e != nil {
		e.expires = now.Add(ctUnreplied) // an accepted flow to the box itself
		return netip.AddrPort{}, true
	}
	switch x.input {
	case "reject":
		return netip.AddrPort{}, true
	case "accept":
		x.ct = append(x.ct, ctEntry{orig: t, reply: [2]netip.AddrPort{dst, src}, expires: now.Add(ctUnreplied)})
		return netip.AddrPort{}, true
	}
	return netip.AddrPort{}, false
}

// transit passes p through the sender's NAT and the receiver's; false
// means it does not arrive. A refusal goes back to the sender's Manager
// as the ICMP error would (through the sender's NAT, which relates it to
// the sender's flow).
func (n *simNet) transit(p *simPkt) bool {
	now := n.clock.Now()
	orig := p.dst
	for _, x := range n.nats {
		if x.inside == p.src {
			p.src = x.out(p.src, p.dst, now)
		}
	}
	for _, x := range n.nats {
		if x.pub != p.dst.Addr() {
			continue
		}
		to, refused := x.in(p.src, p.dst, now)
		if refused {
			p.from.m.HandleRefused(orig)
		}
		if !to.IsValid() {
			return false
		}
		p.dst = to
	}
	return true
}

// natPair puts A and B each behind a box with the given input policy
// ("" for none: a public address) and lets them find each other as the
// agents do: the netmap and CallMeMaybe carry the STUN-mapped endpoints.
func natPair(t *testing.T, inA, inB string) (*simNet, *simNode, *simNode) {
	n := newSimNet(t)
	side := func(i int, input string) (*simNode, netip.AddrPort) {
		pub := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i), 2}), 41641)
		if input == "" {
			return n.node(pub.String()), pub
		}
		inside := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, byte(100 + i), 2}), 41641)
		n.nats = append(n.nats, &simNAT{pub: pub.Addr(), inside: inside, input: input})
		return n.node(inside.String()), pub
	}
	a, pubA := side(1, inA)
	b, pubB := side(2, inB)
	a.m.SetLocalEndpoints([]netip.AddrPort{pubA})
	b.m.SetLocalEndpoints([]netip.AddrPort{pubB})
	// B learns A's endpoint first (its netmap came earlier): B's first
	// ping reaches A's box before A has sent anything to B.
	b.m.SetPeers([]Peer{peerOf(a, "coord", pubA)})
	a.m.SetPeers([]Peer{peerOf(b, "coord")})
	n.run(3 * time.Second)
	a.m.SetPeers([]Peer{peerOf(b, "coord", pubB)})
	return n, a, b
}

// TestPunchThroughLinuxNATs: routers behind port-restricted Linux boxes go
// direct whatever the boxes' input policy, except when both accept
// unsolicited UDP; the accept case needs one hold, the others none.
func TestPunchThroughLinuxNATs(t *testing.T) {
	for _, c := range []struct {
		a, b   string
		direct bool
		within time.Duration
		holds  bool
	}{
		{"drop", "drop", true, 6 * time.Second, false},
		{"reject", "reject", true, 6 * time.Second, false},
		{"accept", "", true, 6 * time.Second, false},
		{"accept", "drop", true, 60 * time.Second, true},
		{"accept", "reject", true, 2 * time.Minute, true},
		{"reject", "accept", true, 6 * time.Second, false}, // B pings first: A's box rejects, no harm
		{"accept", "accept", false, 5 * time.Minute, true},
	} {
		t.Run(c.a+"-"+c.b, func(t *testing.T) {
			n, a, b := natPair(t, c.a, c.b)
			start := n.clock.Now()
			both := func() bool { return a.path(b).Direct.IsValid() && b.path(a).Direct.IsValid() }
			for !both() && n.clock.Now().Sub(start) < c.within {
				n.run(100 * time.Millisecond)
			}
			if both() != c.direct {
				t.Fatalf("after %v: paths A %v, B %v; want direct=%v", n.clock.Now().Sub(start), a.path(b), b.path(a), c.direct)
			}
			held := a.m.peers[b.priv.Public()].holds > 0 || b.m.peers[a.priv.Public()].holds > 0 || sentHold(a) || sentHold(b)
			if held != c.holds {
				t.Errorf("a hold happened: %v, want %v", held, c.holds)
			}
			t.Logf("%s-%s: direct=%v after %v", c.a, c.b, both(), n.clock.Now().Sub(start))
			if c.direct {
				// And it stays direct.
				n.run(30 * time.Second)
				if !both() {
					t.Fatalf("direct path lost: A %v, B %v", a.path(b), b.path(a))
				}
			}
		})
	}
}

func sentHold(s *simNode) bool {
	for _, p := range s.sent {
		if !p.dst.IsValid() {
			if _, msg, err := Open(s.net.byKey[p.relayTo].priv, p.pkt); err == nil {
				if _, ok := msg.(*Hold); ok {
					return true
				}
			}
		}
	}
	return false
}
