package magicsock

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"time"

	"github.com/lanmesh/lanmesh/agent/disco"
	"github.com/lanmesh/lanmesh/derp/stun"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// peerState is what the Conn knows of one peer: the endpoint object
// wireguard-go holds, and the direct address disco proved (invalid: the
// relay carries the peer's traffic).
type peerState struct {
	ep     *Endpoint
	direct netip.AddrPort
	udp    *net.UDPAddr // direct for the socket, made once per path, not per send
	region int          // the peer's home relay region (0: unknown, use ours)
	// pending is the latest handshake message (initiation, response or
	// cookie reply) sent while the peer had no path at all; it goes out
	// as soon as one appears. wireguard-go retries a handshake only every
	// 5 s, so a dropped initiation, or a dropped response to a peer's
	// initiation that arrived before our disco proved its path, would
	// delay the first packet by that much.
	pending     []byte
	pendingTime time.Time
}

// pendingTTL: wireguard-go gives up on an initiation after RekeyTimeout.
const pendingTTL = 5 * time.Second

// initiationYield is how long the node with the larger key holds back its
// initiation after a direct path appears. Both sides usually hold one (persistent
// keepalive starts a handshake at once), disco proves the path on both at
// the same moment, and two initiations that cross make each side a
// responder rejecting the other's response: the handshake then waits for
// wireguard-go's 5 s retry. The smaller key goes first; ours follows only
// if still needed, and a late one is harmless (an extra handshake).
const initiationYield = time.Second

// holdHandshake keeps the latest handshake message for k until a path
// appears; it reports whether it did.
func (c *Conn) holdHandshake(k key.NodePublic, bufs [][]byte) bool {
	return c.keepHandshake(k, bufs, 3)
}

// keepRelayedInitiation keeps an initiation just sent through the relay,
// to send again once when a direct path appears: over the relay it may
// reach the peer before coord's netmap has told the peer about us, and be
// dropped, which would cost wireguard-go's 5 s retry. A second copy the
// peer already processed is rejected as a replay, harmlessly.
func (c *Conn) keepRelayedInitiation(k key.NodePublic, bufs [][]byte) {
	c.keepHandshake(k, bufs, 1)
}

// keepHandshake stores the last handshake message of bufs whose type is
// at most maxType (1 initiation, 2 response, 3 cookie reply) as k's
// pending one.
func (c *Conn) keepHandshake(k key.NodePublic, bufs [][]byte, maxType byte) bool {
	var init []byte
	for _, b := range bufs {
		if len(b) >= 4 && b[0] >= 1 && b[0] <= maxType && IsWireGuard(b) {
			init = b
		}
	}
	if init == nil {
		return false
	}
	c.pmu.Lock()
	defer c.pmu.Unlock()
	ps := c.peers[k]
	if ps == nil {
		return false
	}
	ps.pending, ps.pendingTime = bytes.Clone(init), time.Now()
	return true
}

// hasDirect reports whether disco has proven a direct path to k. Only
// then do both sides flush at the same instant; flushes onto the relay
// (our relay connecting) go out at once.
func (c *Conn) hasDirect(k key.NodePublic) bool {
	c.pmu.RLock()
	defer c.pmu.RUnlock()
	ps := c.peers[k]
	return ps != nil && ps.direct.IsValid()
}

// takePending returns and forgets k's held handshake message, if still fresh.
func (c *Conn) takePending(k key.NodePublic) []byte {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	ps := c.peers[k]
	if ps == nil || ps.pending == nil {
		return nil
	}
	p := ps.pending
	ps.pending = nil
	if time.Since(ps.pendingTime) > pendingTTL {
		return nil
	}
	return p
}

// flushPending sends held handshake messages now that a path may exist (one
// peer, or every peer when k is zero: the relay came up).
func (c *Conn) flushPending(k key.NodePublic) {
	var keys []key.NodePublic
	if k.IsZero() {
		c.pmu.RLock()
		for pk, ps := range c.peers {
			if ps.pending != nil {
				keys = append(keys, pk)
			}
		}
		c.pmu.RUnlock()
	} else {
		keys = []key.NodePublic{k}
	}
	c.pmu.RLock()
	self := c.pub
	c.pmu.RUnlock()
	for _, pk := range keys {
		p := c.takePending(pk)
		if p == nil {
			continue
		}
		send := func() {
			ep := c.knownEndpoint(pk)
			if ep == nil {
				return
			}
			if err := c.Send([][]byte{p}, ep); err != nil {
				c.log.Debug("send held handshake", "peer", pk.ShortString(), "err", err)
			}
		}
		if p[0] == 1 && bytes.Compare(self[:], pk[:]) > 0 && c.hasDirect(pk) {
			time.AfterFunc(initiationYield, func() {
				if c.ctx.Err() == nil {
					send()
				}
			})
			continue
		}
		send()
	}
}

// Peer is a peer as the engine configures it.
type Peer struct {
	Key       key.NodePublic
	Endpoints []netip.AddrPort // candidates from coord
	// HomeRegion is the relay region the peer is connected to (coord's
	// netmap); relayed packets go there. 0: unknown, our home region.
	HomeRegion int
}

// peerEndpoint returns k's endpoint, creating its state: wireguard-go may
// parse an endpoint before SetConfig tells us about the peer.
func (c *Conn) peerEndpoint(k key.NodePublic) *Endpoint {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	ps := c.peers[k]
	if ps == nil {
		ps = &peerState{ep: &Endpoint{key: k}}
		c.peers[k] = ps
	}
	return ps.ep
}

func (c *Conn) knownEndpoint(k key.NodePublic) *Endpoint {
	c.pmu.RLock()
	defer c.pmu.RUnlock()
	if ps := c.peers[k]; ps != nil {
		return ps.ep
	}
	return nil
}

func (c *Conn) directPath(k key.NodePublic) netip.AddrPort {
	d, _ := c.directUDP(k)
	return d
}

// directUDP is directPath with its *net.UDPAddr for sending.
func (c *Conn) directUDP(k key.NodePublic) (netip.AddrPort, *net.UDPAddr) {
	c.pmu.RLock()
	defer c.pmu.RUnlock()
	if ps := c.peers[k]; ps != nil {
		return ps.direct, ps.udp
	}
	return netip.AddrPort{}, nil
}

// endpointFor maps a packet's source to its peer's endpoint when that
// source is a peer's proven direct path; else a bare endpoint, which the
// device uses for its answer only (roaming is off, see Endpoint).
func (c *Conn) endpointFor(src netip.AddrPort) *Endpoint {
	c.pmu.RLock()
	k, ok := c.byAddr[src]
	var ep *Endpoint
	if ok {
		ep = c.peers[k].ep
	}
	c.pmu.RUnlock()
	if ep != nil {
		ep.noteRecv()
		return ep
	}
	return &Endpoint{addr: src}
}

// activity is disco's Config.Activity: when data last went to k directly
// and when anything last came from k.
func (c *Conn) activity(k key.NodePublic) (sent, recv time.Time) {
	ep := c.knownEndpoint(k)
	if ep == nil {
		return
	}
	if n := ep.lastSend.Load(); n != 0 {
		sent = time.Unix(0, n)
	}
	if n := ep.lastRecv.Load(); n != 0 {
		recv = time.Unix(0, n)
	}
	return sent, recv
}

// onSuspect is disco's OnSuspect.
func (c *Conn) onSuspect(k key.NodePublic, suspect bool) {
	if ep := c.knownEndpoint(k); ep != nil {
		ep.suspect.Store(suspect)
	}
}

// onPath is disco's OnPathChange: traffic moves at the next Send.
func (c *Conn) onPath(k key.NodePublic, p disco.Path) {
	c.pmu.Lock()
	ps := c.peers[k]
	if ps == nil {
		ps = &peerState{ep: &Endpoint{key: k}}
		c.peers[k] = ps
	}
	if ps.direct.IsValid() && c.byAddr[ps.direct] == k {
		delete(c.byAddr, ps.direct)
	}
	ps.direct, ps.udp = p.Direct, nil
	if p.Direct.IsValid() {
		ps.udp = net.UDPAddrFromAddrPort(p.Direct)
	}
	ps.ep.suspect.Store(false)
	if p.Direct.IsValid() {
		c.byAddr[p.Direct] = k
	}
	c.pmu.Unlock()
	if p.Direct.IsValid() {
		c.flushPending(k)
	}
	if c.opts.OnPathChange != nil {
		c.opts.OnPathChange(k)
	}
}

// SetConfig gives the Conn our node key, the peers and the relay map. It
// starts disco, the relay client and netcheck on first use; a new key
// restarts disco (its sealing keys change).
func (c *Conn) SetConfig(priv key.NodePrivate, peers []Peer, dm *wire.DERPMap) error {
	if priv.IsZero() {
		return fmt.Errorf("magicsock: no node private key")
	}
	if dm != nil {
		if err := dm.Validate(); err != nil {
			return fmt.Errorf("magicsock: %w", err)
		}
	}
	c.smu.Lock()
	defer c.smu.Unlock()
	if c.ctx.Err() != nil {
		return fmt.Errorf("magicsock: shut down")
	}
	if !priv.Equal(c.priv) {
		if c.discoStop != nil {
			c.discoStop()
		}
		m, err := disco.New(disco.Config{PrivateKey: priv, Sender: discoSender{c}, Logger: c.log, OnPathChange: c.onPath,
			Activity: c.activity, OnSuspect: c.onSuspect})
		if err != nil {
			return fmt.Errorf("magicsock: %w", err)
		}
		c.pmu.Lock()
		for _, ps := range c.peers {
			ps.direct, ps.udp = netip.AddrPort{}, nil
		}
		clear(c.byAddr)
		c.pub = priv.Public()
		c.pmu.Unlock()
		ctx, cancel := context.WithCancel(c.ctx)
		c.discoStop = cancel
		c.wg.Go(func() { m.Run(ctx) })
		c.disco.Store(m)
		m.SetLocalEndpoints(c.LocalEndpoints())
		c.priv = priv
		c.resetRelay() // the relay authenticated the old key
		c.closeRegionRelays()
	}
	if !reflect.DeepEqual(dm, c.dm) {
		c.dm = dm
		c.dmNow.Store(dm)
		c.relayMu.Lock()
		c.home = 0 // netcheck picks again; until then the first region
		c.relayMu.Unlock()
		c.resetRelay()
		c.closeRegionRelays()
		c.wakeNetcheck()
	}
	if !c.started {
		c.started = true
		c.wg.Go(c.relayLoop)
		c.wg.Go(c.netcheckLoop)
		c.wg.Go(c.refusalLoop)
	}
	c.wake(c.relayWake)

	keep := map[key.NodePublic]bool{}
	dps := make([]disco.Peer, 0, len(peers))
	c.pmu.Lock()
	for _, p := range peers {
		keep[p.Key] = true
		dps = append(dps, disco.Peer{Key: p.Key, Endpoints: slices.Clone(p.Endpoints), Region: c.regionCode(dm, p.HomeRegion)})
		ps := c.peers[p.Key]
		if ps == nil {
			ps = &peerState{ep: &Endpoint{key: p.Key}}
			c.peers[p.Key] = ps
		}
		ps.region = p.HomeRegion
	}
	for k, ps := range c.peers {
		if !keep[k] {
			if ps.direct.IsValid() && c.byAddr[ps.direct] == k {
				delete(c.byAddr, ps.direct)
			}
			delete(c.peers, k)
		}
	}
	c.pmu.Unlock()
	c.disco.Load().SetPeers(dps)
	return nil
}

// PeerPath says how packets reach k now: "direct <ip:port>", "relay
// <region code>", or "" when there is no path yet. direct is the address
// when direct.
func (c *Conn) PeerPath(k key.NodePublic) (path string, direct netip.AddrPort) {
	if d := c.directPath(k); d.IsValid() {
		return "direct " + d.String(), d
	}
	if _, code := c.relayFor(k, false); code != "" {
		return "relay " + code, netip.AddrPort{}
	}
	return "", netip.AddrPort{}
}

// DiscoStatus is disco's view of every peer (candidates, RTTs).
func (c *Conn) DiscoStatus() []disco.PeerStatus {
	if m := c.disco.Load(); m != nil {
		return m.Status()
	}
	return nil
}

// discoSender is the Conn as disco's Sender.
type discoSender struct{ c *Conn }

func (s discoSender) SendUDP(pkt []byte, dst netip.AddrPort) error { return s.c.WriteTo(pkt, dst) }

func (s discoSender) SendRelay(pkt []byte, peer key.NodePublic) error {
	cl, _ := s.c.relayFor(peer, true)
	if cl == nil {
		return ErrNoPath
	}
	return cl.Send(peer, pkt)
}

// handleOther demultiplexes what arrives on the UDP socket and is not
// WireGuard: disco, STUN answers for netcheck, and anything else to the
// Options.Handler hook.
func (c *Conn) handleOther(pkt []byte, src netip.AddrPort) {
	if disco.Looks(pkt) {
		if m := c.disco.Load(); m != nil {
			if err := m.HandleUDP(pkt, src); err != nil {
				c.log.Debug("disco packet dropped", "src", src, "err", err)
			}
			return
		}
	}
	if stun.Is(pkt) && c.checker.HandleSTUN(pkt, src) {
		return
	}
	if c.opts.Handler != nil {
		c.opts.Handler(pkt, src)
	}
}
