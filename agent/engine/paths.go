package engine

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"

	"github.com/lanmesh/lanmesh/agent/magicsock"
	"github.com/lanmesh/lanmesh/agent/netcheck"
	"github.com/lanmesh/lanmesh/internal/key"
)

// Paths are magicsock's job: wireguard-go's endpoint for a peer is the
// peer's node key, and magicsock sends each packet over the path disco
// proved (direct UDP) or through the home relay. The engine only tells
// magicsock about peers, nudges WireGuard when a path appears, and reports
// the path in PeerStatus.

// newPeerUAPI is the UAPI section that adds p with its node key as the
// endpoint. The endpoint comes before the keepalive so the first
// keepalive (and the handshake it triggers) already has somewhere to go.
func newPeerUAPI(b *strings.Builder, p Peer, keepalive int) {
	fmt.Fprintf(b, "public_key=%s\n", p.Key.Hex())
	b.WriteString("replace_allowed_ips=true\n")
	for _, a := range p.AllowedIPs {
		fmt.Fprintf(b, "allowed_ip=%s\n", a.Masked())
	}
	fmt.Fprintf(b, "endpoint=%s\n", p.Key.Hex())
	fmt.Fprintf(b, "persistent_keepalive_interval=%d\n", keepalive)
}

// kickUAPI re-arms k's keepalive, which makes the device send at once: a
// keepalive over a session, or a handshake when there is none. Used when
// a path appears so the first packet does not wait for wireguard-go's 5 s
// handshake retry.
func kickUAPI(b *strings.Builder, k key.NodePublic) {
	fmt.Fprintf(b, "public_key=%s\nupdate_only=true\n", k.Hex())
	fmt.Fprintf(b, "persistent_keepalive_interval=0\npersistent_keepalive_interval=%d\n", keepaliveSeconds)
}

// kick nudges the device for peers (all configured ones when none given).
// It runs on its own goroutine: callers are magicsock's receive and relay
// paths, which must not wait on the device.
func (e *engine) kick(peers ...key.NodePublic) {
	e.appliedMu.Lock()
	defer e.appliedMu.Unlock()
	select {
	case <-e.stop:
		return // closing: Close waits for kicks already started
	default:
	}
	e.kicks.Go(func() {
		e.kickMu.Lock()
		defer e.kickMu.Unlock()
		e.appliedMu.Lock()
		if len(peers) == 0 {
			peers = e.peerKeys
		}
		self := e.selfKey
		e.appliedMu.Unlock()
		var kick []key.NodePublic
		for _, k := range peers {
			if initiates(self, k) {
				kick = append(kick, k)
			}
		}
		if len(kick) == 0 {
			return
		}
		if err := e.dev.Kick(kick); err != nil {
			e.log.Debug("kick peers", "err", err)
		}
	})
}

// runInNS runs f on a fresh thread inside the engine's namespace. The
// thread is never unlocked, so it exits with the goroutine rather than
// going back to the pool in a foreign namespace.
func (e *engine) runInNS(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if err := netns.Set(e.ns); err != nil {
			e.log.Warn("enter network namespace", "err", err)
			return
		}
		f()
	}()
	<-done
}

// LocalEndpoints are this node's candidate endpoints for peers (interface
// addresses and STUN-mapped ones); the daemon sends them to coord.
func (e *engine) LocalEndpoints() []netip.AddrPort { return e.bind.LocalEndpoints() }

// NetworkChanged re-runs netcheck and re-probes every peer; the daemon
// calls it on netlink link and address changes.
func (e *engine) NetworkChanged() { e.bind.NetworkChanged() }

// HomeRegion is the relay region this node is connected to (0: none);
// the daemon reports it to coord so peers relay through it.
func (e *engine) HomeRegion() int { return e.bind.HomeRegion() }

// Netcheck checks the network now over the WireGuard socket.
func (e *engine) Netcheck(ctx context.Context) (*netcheck.Report, error) {
	return e.bind.Netcheck(ctx)
}

// discoPeers is cfg's peers as magicsock takes them.
func discoPeers(cfg Config) []magicsock.Peer {
	out := make([]magicsock.Peer, 0, len(cfg.Peers))
	for _, p := range cfg.Peers {
		out = append(out, magicsock.Peer{Key: p.Key, Endpoints: p.Endpoints, HomeRegion: p.HomeRegion})
	}
	return out
}
