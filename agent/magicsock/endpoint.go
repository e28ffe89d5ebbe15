package magicsock

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/lanmesh/lanmesh/internal/key"
)

// Endpoint is what wireguard-go holds for a peer. A peer endpoint names
// the peer's node key, not an address: the UAPI "endpoint=" is the key in
// hex, and every Send looks up the peer's current path (direct address or
// relay), so a path change never needs a UAPI call. A bare endpoint (zero
// key) is a packet source we cannot map to a peer; wireguard-go only uses
// it to answer that packet (cookie replies), because the engine turns its
// roaming off for peers with an endpoint.
type Endpoint struct {
	key  key.NodePublic
	addr netip.AddrPort // bare endpoints only

	// Data-plane activity for disco's liveness check (unix nanoseconds):
	// the last Send over the direct path, and the last WireGuard packet
	// from the peer on any path. suspect: the direct path missed a
	// liveness ping, so Send also uses the relay until disco decides.
	lastSend atomic.Int64
	lastRecv atomic.Int64
	suspect  atomic.Bool
	// initSent is when we last sent the peer an initiation, as the
	// smaller key; 0 once disarmed (see crossing).
	initSent atomic.Int64
	// lastInit is the last initiation sent to the peer, echoed while
	// nothing comes back (see resendDelays).
	lastInit atomic.Pointer[sentInit]
}

func (e *Endpoint) noteRecv() { e.lastRecv.Store(time.Now().UnixNano()) }

var _ conn.Endpoint = (*Endpoint)(nil)

// Key is the peer's node key; zero for a bare address.
func (e *Endpoint) Key() key.NodePublic { return e.key }

func (*Endpoint) ClearSrc()           {}
func (*Endpoint) SrcToString() string { return "" }
func (*Endpoint) SrcIP() netip.Addr   { return netip.Addr{} }
func (e *Endpoint) DstIP() netip.Addr { return e.addr.Addr() }

// DstToString is the form ParseEndpoint reads back (UAPI get/set).
func (e *Endpoint) DstToString() string {
	if e.key.IsZero() {
		return e.addr.String()
	}
	return e.key.Hex()
}

// DstToBytes feeds wireguard-go's cookie MACs, which only need a stable
// per-source value.
func (e *Endpoint) DstToBytes() []byte {
	if e.key.IsZero() {
		b, _ := e.addr.MarshalBinary()
		return b
	}
	return e.key[:]
}

// ParseEndpoint parses a peer's node key in hex (64 digits, what the
// engine writes), or "ip:port" for a bare address.
func (c *Conn) ParseEndpoint(s string) (conn.Endpoint, error) {
	if len(s) == 64 {
		var k key.NodePublic
		if _, err := hex.Decode(k[:], []byte(s)); err != nil {
			return nil, fmt.Errorf("endpoint %q: not a hex node key: %w", s, err)
		}
		if k.IsZero() {
			return nil, fmt.Errorf("endpoint %q: zero node key", s)
		}
		return c.peerEndpoint(k), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: want a 64-digit hex node key or ip:port: %w", s, err)
	}
	return &Endpoint{addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}, nil
}

// ErrNoPath is returned by Send for a peer with neither a proven direct
// path nor a relay connection; wireguard-go retries its handshake later.
var ErrNoPath = errors.New("magicsock: no path to peer yet (no direct path proven, relay not connected)")

// Send writes bufs to ep: to the peer's proven direct address as one
// sendmmsg batch (coalesced into UDP GSO super-datagrams when GSO is on),
// else through the relay.
func (c *Conn) Send(bufs [][]byte, ep conn.Endpoint) error {
	e, ok := ep.(*Endpoint)
	if !ok {
		return conn.ErrWrongEndpointType
	}
	return c.send(bufs, e, true)
}

// send is Send; arm says whether an initiation in bufs gets echoes (not
// when bufs is an echo itself).
func (c *Conn) send(bufs [][]byte, e *Endpoint, arm bool) error {
	dst, ua := e.addr, (*net.UDPAddr)(nil)
	if !e.key.IsZero() {
		c.noteSent(e, bufs)
		if arm {
			c.armResend(e, bufs)
		}
		dst, ua = c.directUDP(e.key)
		if !dst.IsValid() {
			return c.sendRelay(e.key, bufs)
		}
		e.lastSend.Store(time.Now().UnixNano())
		if e.suspect.Load() {
			// The direct path may be dead: the relay copy keeps packets
			// flowing meanwhile (WireGuard drops whichever copy is second).
			_ = c.sendRelay(e.key, bufs)
		}
	}
	s, err := c.socketFor(dst.Addr())
	if err != nil {
		return err
	}
	if ua == nil {
		ua = net.UDPAddrFromAddrPort(dst)
	}
	return s.send(bufs, ua)
}
