package magicsock

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/lanmesh/lanmesh/agent/disco"
	"github.com/lanmesh/lanmesh/derp"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/sockmark"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// relayQueue bounds relayed WireGuard packets waiting for wireguard-go;
// past it they are dropped (the relay is the slow path anyway).
const relayQueue = 256

// Reconnect backoff: quick first retries so a relay restart costs about a
// second, capped so a dead relay is not hammered.
const (
	relayBackoffMin = 250 * time.Millisecond
	relayBackoffMax = 10 * time.Second
)

type relayPkt struct {
	from key.NodePublic
	pkt  []byte
	late bool // a crossing initiation delivered late (holdCrossed)
}

// sendRelay sends WireGuard packets to k through k's home relay (ours
// when it shares it or we do not know it).
func (c *Conn) sendRelay(k key.NodePublic, bufs [][]byte) error {
	cl, _ := c.relayFor(k, true)
	if cl == nil {
		if c.holdHandshake(k, bufs) {
			return nil // sent when a path appears
		}
		return ErrNoPath
	}
	// Kept before sending: a direct path found while the copy is on its
	// way must find it (the peer may answer before Send returns).
	c.keepRelayedInitiation(k, bufs)
	for _, b := range bufs {
		if err := cl.Send(k, b); err != nil {
			return err
		}
	}
	return nil
}

// resetRelay drops the relay connection; relayLoop connects again (to the
// home region as it is now).
func (c *Conn) resetRelay() {
	c.relayMu.Lock()
	cl := c.relay
	c.relayMu.Unlock()
	if cl != nil {
		cl.Close()
	}
}

func (c *Conn) wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// homeRegion is the region to relay through: netcheck's preferred one,
// else the first of the map (coord's own relay, region 1, so the first
// packets flow before netcheck finished).
func (c *Conn) homeRegion() (priv key.NodePrivate, reg wire.DERPRegion, ok bool) {
	c.smu.Lock()
	priv, dm := c.priv, c.dm
	c.smu.Unlock()
	if priv.IsZero() || dm == nil || len(dm.Regions) == 0 {
		return priv, reg, false
	}
	c.relayMu.Lock()
	home := c.home
	c.relayMu.Unlock()
	if r, err := dm.Region(home); err == nil {
		return priv, r, true
	}
	return priv, dm.Regions[0], true
}

// relayURLs are the URLs to dial for n: its IPv4, then its IPv6 address
// when the map has them (no DNS needed inside a LAN or a test world; an
// IPv6-only node still reaches a dual-stack relay), else its host name.
// The host name stays the TLS name.
func relayURLs(n wire.DERPNode) []string {
	port := n.DERPPort
	if port == 0 {
		port = 443
	}
	var out []string
	for _, a := range []netip.Addr{n.IPv4, n.IPv6} {
		if a.IsValid() {
			u := url.URL{Scheme: "https", Host: net.JoinHostPort(a.String(), strconv.Itoa(port)), Path: derp.Path}
			out = append(out, u.String())
		}
	}
	if len(out) == 0 {
		out = append(out, n.URL())
	}
	return out
}

// relayLoop keeps one connection to the home relay, reconnecting with
// backoff, until the Conn shuts down.
func (c *Conn) relayLoop() {
	backoff := relayBackoffMin
	for c.ctx.Err() == nil {
		priv, reg, ok := c.homeRegion()
		if !ok {
			select {
			case <-c.ctx.Done():
				return
			case <-c.relayWake:
			}
			continue
		}
		cl, node := c.connectRelay(priv, reg)
		if cl == nil {
			select {
			case <-c.ctx.Done():
				return
			case <-c.relayWake:
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, relayBackoffMax)
			continue
		}
		backoff = relayBackoffMin
		c.relayMu.Lock()
		c.relay, c.relayCode, c.relayRegion = cl, reg.Code, reg.ID
		extra := c.regions[reg.ID]
		delete(c.regions, reg.ID) // the home connection serves that region now
		c.relayMu.Unlock()
		if extra != nil {
			extra.cl.Close()
		}
		c.log.Info("relay connected", "region", reg.Code, "node", node)
		c.flushPending(key.NodePublic{})
		if c.opts.OnRelayUp != nil {
			c.opts.OnRelayUp()
		}
		err := c.readRelay(cl)
		c.relayMu.Lock()
		c.relay = nil
		c.relayMu.Unlock()
		cl.Close()
		if c.ctx.Err() == nil {
			c.log.Info("relay connection ended; reconnecting", "region", reg.Code, "err", err)
		}
	}
}

// connectRelay tries the region's nodes in order.
func (c *Conn) connectRelay(priv key.NodePrivate, reg wire.DERPRegion) (*derp.Client, string) {
	for _, n := range reg.Nodes {
		for _, u := range relayURLs(n) {
			ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
			var cl *derp.Client
			err := errNotRun
			opts := derp.ClientOptions{Fingerprint: n.CertFingerprint, DialContext: (&net.Dialer{Control: sockmark.Control}).DialContext}
			if n.HostName != "" {
				opts.TLSConfig = tlsServerName(n.HostName)
			}
			// The dial opens a socket: in the engine's network namespace.
			c.inNS(func() { cl, err = derp.ConnectWith(ctx, u, priv, opts) })
			cancel()
			if err == nil {
				return cl, n.Name
			}
			c.log.Debug("relay connect failed", "region", reg.Code, "node", n.Name, "url", u, "err", err)
		}
	}
	return nil, ""
}

func tlsServerName(host string) *tls.Config { return &tls.Config{ServerName: host} }

// readRelay dispatches what the relay delivers until the connection ends.
func (c *Conn) readRelay(cl *derp.Client) error {
	for {
		from, pkt, err := cl.Recv()
		if err != nil {
			return err
		}
		switch {
		case disco.Looks(pkt):
			if m := c.disco.Load(); m != nil {
				if err := m.HandleRelay(pkt, from); err != nil {
					c.log.Debug("relayed disco packet dropped", "peer", from.ShortString(), "err", err)
				}
			}
		case IsWireGuard(pkt):
			select {
			case c.relayCh <- relayPkt{from: from, pkt: pkt}:
			default:
				c.relayDrops.Add(1)
			}
		}
	}
}

// relayReceive is the ReceiveFunc that hands relayed WireGuard packets to
// wireguard-go with the sender's peer endpoint.
func (c *Conn) relayReceive(closed <-chan struct{}) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		var rp relayPkt
		select {
		case <-closed:
			return 0, net.ErrClosed
		case rp = <-c.relayCh:
		}
		n := 0
		for {
			// Only configured peers: a stranger on the relay gets no state.
			if ep := c.knownEndpoint(rp.from); ep != nil && len(rp.pkt) <= len(bufs[n]) && (rp.late || !c.holdCrossed(ep, rp.pkt)) {
				ep.noteRecv()
				sizes[n] = copy(bufs[n], rp.pkt)
				eps[n] = ep
				n++
			}
			if n == len(bufs) {
				return n, nil
			}
			select {
			case rp = <-c.relayCh:
			default:
				return n, nil
			}
		}
	}
}

// HomeRegion is the id of the relay region we are connected to (0: none
// yet); the daemon reports it to coord so peers relay to us there.
func (c *Conn) HomeRegion() int {
	c.relayMu.Lock()
	defer c.relayMu.Unlock()
	if c.relay == nil {
		return 0
	}
	return c.relayRegion
}
