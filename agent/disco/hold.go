package disco

import (
	"net/netip"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
)

// Punching in order after a refused punch.
//
// A Linux or OpenWrt NAT box whose INPUT chain accepts unsolicited UDP
// (docs/nat-traversal.md, "port-restricted, input accept") breaks plain
// hole punching: our ping reaches that box before its router has sent
// anything to us, the box delivers it to itself (no socket: ICMP port
// unreachable), and the conntrack entry it leaves behind (us -> box:port)
// clashes with the mapping its router needs towards us, so masquerade gives
// the router's pings another, unknown port. Every further ping of ours
// refreshes that entry for 30 s (60 s on OpenWrt), so the pair chases
// stale ports for good.
//
// magicsock reports the port unreachable the peer's box sends back
// (HandleRefused). When a refusal is not followed by a direct path within
// refusalGrace, both sides go quiet towards each other (Hold, over the
// relay) until every entry of the failed attempt has expired, then punch
// in order: the side whose pings were refused waits and pings only when
// the other side's CallMeMaybe says that side's mapping towards us exists,
// so our first ping arrives as a reply. When both were refused, the
// attempt number picks who waits, alternating. Two boxes that both accept
// unsolicited input poison each other whatever the order; they stay on the
// relay (holding longer each time).
const (
	// refusalGrace: a box that rejects (rather than accepts) refuses our
	// first ping too, and a full-cone box in front of the peer lets the
	// peer's pings from a moved port in: either pair goes direct within a
	// probe round, without any hold.
	refusalGrace = RelayProbeInterval + time.Second
	// pingerDelay: the side that pings first after a hold starts this
	// much later, so the waiting side's hold is surely over.
	pingerDelay = time.Second
	// waitFor: how long the waiting side waits for the other's
	// CallMeMaybe before it pings on its own again.
	waitFor = 3 * RelayProbeInterval
)

// holdFor is the quiet time of the n-th hold: past Linux's 30 s timeout of
// an unreplied UDP conntrack entry, then past OpenWrt's 60 s, then longer;
// two attempts each, one per order of the two sides.
func holdFor(n uint16) time.Duration {
	switch {
	case n <= 2:
		return 35 * time.Second
	case n <= 4:
		return 65 * time.Second
	default:
		return 125 * time.Second
	}
}

// HandleRefused takes an ICMP port unreachable that dst's own host sent
// for a datagram we sent to dst. magicsock checks that the ICMP error
// quotes our socket's port; it may still be forged, but the most it does
// is hold a relayed peer's punching for a while (never a direct path).
func (m *Manager) HandleRefused(dst netip.AddrPort) {
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	for _, p := range m.peers {
		if p.cands[dst] == nil || p.best.IsValid() || p.holding(now) || !p.refusedAt.IsZero() {
			continue
		}
		p.refusedAt = now
		m.log.Debug("disco: ping refused by the peer's NAT box", "peer", p.key.ShortString(), "endpoint", dst.String())
	}
}

func (p *peerPath) holding(now time.Time) bool { return now.Before(p.holdUntil) }

// waiting: spontaneous pings are off; only the peer's CallMeMaybe (or a
// ping that got through) makes us ping.
func (p *peerPath) waiting(now time.Time) bool { return !p.best.IsValid() && now.Before(p.waitUntil) }

// clearHold ends the ordered punching (a path works, or the network
// changed).
func (p *peerPath) clearHold() {
	p.refusedAt, p.holdUntil, p.waitUntil = time.Time{}, time.Time{}, time.Time{}
	p.meRefusedAt, p.peerRefusedAt = time.Time{}, time.Time{}
}

// waiter decides who waits after a hold: the side that was refused. When
// both were, the order cannot be told from the refusals (the second
// side's pings are refused too, whether or not they did harm), so the keys
// decide and the order alternates with each attempt: the smaller key waits
// on odd attempts, the larger on even ones.
func (m *Manager) waiter(p *peerPath) bool {
	if p.meRefusedAt.IsZero() {
		return false
	}
	if p.peerRefusedAt.IsZero() {
		return true
	}
	return keyLess(m.pub, p.key) == (p.holds%2 == 1)
}

func keyLess(a, b key.NodePublic) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// checkHold runs from Tick: it starts a hold after an unanswered refusal
// and ends it when its time is up.
func (m *Manager) checkHold(p *peerPath, now time.Time, ob *outbox) {
	if p.best.IsValid() {
		p.clearHold()
		p.holds = 0 // direct again: the next failure starts from the short hold
		return
	}
	if !p.holdUntil.IsZero() && !now.Before(p.holdUntil) {
		wait := m.waiter(p)
		p.clearHold()
		p.nextRound = now
		if wait {
			p.waitUntil = now.Add(waitFor)
		} else {
			// The waiter's hold started when our Hold reached it, so it
			// may end a relay delay after ours: a CallMeMaybe arriving
			// before then would be ignored.
			p.nextRound = now.Add(pingerDelay)
		}
		m.log.Info("disco: hold over, punching again", "peer", p.key.ShortString(), "attempt", p.holds, "waiting_for_peer", wait)
		return
	}
	if p.holdUntil.IsZero() && !p.refusedAt.IsZero() && now.Sub(p.refusedAt) >= refusalGrace {
		p.holds++
		d := holdFor(p.holds)
		m.startHold(p, now, d)
		ob.pkts = append(ob.pkts, outPkt{pkt: m.seal(p, &Hold{Attempt: p.holds, RefusedAgo: refusedAgo(p, now), Duration: d}), relay: p.key})
	}
}

// refusedAgo is the Hold field: how long ago our first refusal came, at
// least 1 ms when there was one.
func refusedAgo(p *peerPath, now time.Time) time.Duration {
	if p.meRefusedAt.IsZero() {
		return 0
	}
	return max(now.Sub(p.meRefusedAt), time.Millisecond)
}

func (m *Manager) startHold(p *peerPath, now time.Time, d time.Duration) {
	p.holdUntil, p.waitUntil, p.nextRound = now.Add(d), time.Time{}, now.Add(d)
	p.meRefusedAt = p.refusedAt
	m.log.Info("disco: pings refused by the peer's NAT box: pausing pings so its conntrack state expires",
		"peer", p.key.ShortString(), "for", d.String(), "attempt", p.holds, "refused_here", !p.refusedAt.IsZero())
}

// handleHold takes the peer's Hold (over the relay). It is sealed by the
// peer's node key, and it only quiets our pings to that peer (never
// another, never a direct path in use), so a hostile peer can only keep
// itself on the relay.
func (m *Manager) handleHold(p *peerPath, msg *Hold, now time.Time, ob *outbox) {
	if p.best.IsValid() {
		return // a stale hold: we are direct
	}
	if msg.Attempt > p.holds {
		p.holds = msg.Attempt
	}
	if msg.RefusedAgo > 0 {
		p.peerRefusedAt = now.Add(-msg.RefusedAgo)
	}
	if p.holding(now) {
		return // ours crossed the peer's: both were refused
	}
	m.startHold(p, now, msg.Duration)
	if !p.meRefusedAt.IsZero() {
		// Tell the peer we were refused too, so both pick the same waiter.
		ob.pkts = append(ob.pkts, outPkt{pkt: m.seal(p, &Hold{Attempt: p.holds, RefusedAgo: refusedAgo(p, now), Duration: msg.Duration}), relay: p.key})
	}
}
