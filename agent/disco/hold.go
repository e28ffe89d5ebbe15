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
	// waitFor: how long the waiting side waits for the other's
	// CallMeMaybe before it pings on its own again.
	waitFor = 3 * RelayProbeInterval
)

// holdFor is the quiet time of the n-th hold: past Linux's 30 s timeout of
// an unreplied UDP conntrack entry, then past OpenWrt's 60 s, then longer.
func holdFor(n uint16) time.Duration {
	switch {
	case n <= 1:
		return 35 * time.Second
	case n == 2:
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
	p.meRefused, p.peerRefused = false, false
}

// waiter decides who waits after a hold: the side that was refused, and
// when both were, the smaller key on odd attempts and the larger on even.
func (m *Manager) waiter(p *peerPath) bool {
	if !p.meRefused {
		return false
	}
	if !p.peerRefused {
		return true
	}
	smaller := keyLess(m.pub, p.key)
	return smaller == (p.holds%2 == 1)
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
		if wait {
			p.waitUntil = now.Add(waitFor)
		}
		p.nextRound = now
		m.log.Info("disco: hold over, punching again", "peer", p.key.ShortString(), "attempt", p.holds, "waiting_for_peer", wait)
		return
	}
	if p.holdUntil.IsZero() && !p.refusedAt.IsZero() && now.Sub(p.refusedAt) >= refusalGrace {
		p.holds++
		d := holdFor(p.holds)
		m.startHold(p, now, d, true)
		ob.pkts = append(ob.pkts, outPkt{pkt: m.seal(p, &Hold{Attempt: p.holds, Refused: true, Duration: d}), relay: p.key})
	}
}

func (m *Manager) startHold(p *peerPath, now time.Time, d time.Duration, refused bool) {
	p.holdUntil, p.waitUntil, p.nextRound = now.Add(d), time.Time{}, now.Add(d)
	p.meRefused = refused
	m.log.Info("disco: pings refused by the peer's NAT box: pausing pings so its conntrack state expires",
		"peer", p.key.ShortString(), "for", d.String(), "attempt", p.holds, "refused_here", refused)
}

// handleHold takes the peer's Hold (over the relay).
func (m *Manager) handleHold(p *peerPath, msg *Hold, now time.Time, ob *outbox) {
	if p.best.IsValid() {
		return // a stale hold: we are direct
	}
	if msg.Attempt > p.holds {
		p.holds = msg.Attempt
	}
	p.peerRefused = msg.Refused
	if p.holding(now) {
		return // ours crossed the peer's: both were refused
	}
	refused := !p.refusedAt.IsZero()
	m.startHold(p, now, msg.Duration, refused)
	if refused {
		// Tell the peer we were refused too, so both pick the same waiter.
		ob.pkts = append(ob.pkts, outPkt{pkt: m.seal(p, &Hold{Attempt: p.holds, Refused: true, Duration: msg.Duration}), relay: p.key})
	}
}
