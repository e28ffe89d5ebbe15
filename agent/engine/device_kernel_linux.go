package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/lanmesh/lanmesh/agent/magicsock"
	"github.com/lanmesh/lanmesh/internal/key"
)

// kernelDevice is the kernel backend: a `wireguard` link made with
// netlink and configured with wgctrl (generic netlink), peer by peer.
//
// The kernel owns the WireGuard protocol and its UDP socket, but that
// socket only ever talks to loopback: each peer's endpoint is a loopback
// UDP socket of the agent (loopPeer) that hands the peer's packets to
// magicsock, which sends them over the path disco proved or the relay,
// from the agent's own port. So NAT traversal, relays and path changes
// work exactly as in the userspace backend, and the kernel never needs
// its endpoints changed (docs/kernel-mode.md explains the trade-off).
type kernelDevice struct {
	name string
	log  *slog.Logger
	bind *magicsock.Conn
	port uint16 // the kernel's UDP port (on loopback)

	mu sync.Mutex // guards wg calls (Kick runs beside Apply) and peers
	wg *wgctrl.Client
	// peers are the loopback sockets, one per configured peer.
	peers   map[key.NodePublic]*loopPeer
	done    sync.WaitGroup
	closing atomic.Bool
}

var _ Device = (*kernelDevice)(nil)

// errNoKernelWireGuard says the kernel cannot make a wireguard link.
var errNoKernelWireGuard = errors.New("the kernel has no WireGuard (module wireguard not loaded or not built)")

// newKernelDevice creates the link (replacing a stale one a crashed agent
// left), brings it up and starts carrying bind's WireGuard packets to it.
// It runs in the engine's namespace; bind must be open (recv its
// receive functions).
func newKernelDevice(name string, mtu int, bind *magicsock.Conn, recv []conn.ReceiveFunc, log *slog.Logger) (*kernelDevice, error) {
	if err := createWireGuardLink(name, mtu); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			deleteLink(name)
		}
	}()
	wg, err := wgctrl.New()
	if err != nil {
		return nil, fmt.Errorf("open WireGuard netlink: %w", err)
	}
	// Port 0: the kernel picks one when the link goes up.
	if err := wg.ConfigureDevice(name, wgtypes.Config{ListenPort: new(int)}); err != nil {
		wg.Close()
		return nil, fmt.Errorf("configure %s: %w", name, err)
	}
	l, err := netlink.LinkByName(name)
	if err == nil {
		err = netlink.LinkSetUp(l)
	}
	if err != nil {
		wg.Close()
		return nil, fmt.Errorf("bring %s up: %w", name, err)
	}
	dev, err := wg.Device(name)
	if err != nil || dev.ListenPort == 0 {
		wg.Close()
		return nil, fmt.Errorf("read %s's port: %v", name, err)
	}
	d := &kernelDevice{name: name, log: log, bind: bind, wg: wg, port: uint16(dev.ListenPort), peers: map[key.NodePublic]*loopPeer{}}
	for _, f := range recv {
		d.done.Add(1)
		go d.fromBind(f)
	}
	ok = true
	return d, nil
}

// createWireGuardLink adds the link; one of the same name (a crashed
// agent's) is deleted first so no stale peer survives.
func createWireGuardLink(name string, mtu int) error {
	if l, err := netlink.LinkByName(name); err == nil {
		if l.Type() != "wireguard" {
			return fmt.Errorf("interface %s exists and is a %s link, not ours: pick another tun_name", name, l.Type())
		}
		if err := netlink.LinkDel(l); err != nil {
			return fmt.Errorf("remove stale %s: %w", name, err)
		}
	}
	la := netlink.NewLinkAttrs()
	la.Name, la.MTU = name, mtu
	if err := netlink.LinkAdd(&netlink.Wireguard{LinkAttrs: la}); err != nil {
		if errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOTSUP) || strings.Contains(err.Error(), "not supported") {
			return fmt.Errorf("%w: %v", errNoKernelWireGuard, err)
		}
		return fmt.Errorf("create wireguard link %s: %w", name, err)
	}
	return nil
}

func deleteLink(name string) {
	if l, err := netlink.LinkByName(name); err == nil {
		_ = netlink.LinkDel(l)
	}
}

// loopPeer is one peer's endpoint as the kernel sees it: a loopback UDP
// socket connected to the kernel's port.
type loopPeer struct {
	key  key.NodePublic
	c    *net.UDPConn
	ep   conn.Endpoint // magicsock's endpoint for the peer (its node key)
	addr netip.AddrPort
}

// peerLocked returns k's loopback socket, making it (and its reader) on
// first use. It runs on the engine's thread, so the socket is in the
// engine's namespace.
func (d *kernelDevice) peerLocked(k key.NodePublic) (*loopPeer, error) {
	if p := d.peers[k]; p != nil {
		return p, nil
	}
	ep, err := d.bind.ParseEndpoint(k.Hex())
	if err != nil {
		return nil, err
	}
	c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(d.port)})
	if err != nil {
		return nil, fmt.Errorf("loopback endpoint for %s: %w", k.ShortString(), err)
	}
	p := &loopPeer{key: k, c: c, ep: ep, addr: c.LocalAddr().(*net.UDPAddr).AddrPort()}
	d.peers[k] = p
	d.done.Add(1)
	go d.toBind(p)
	return p, nil
}

// toBind carries what the kernel sends to p over magicsock (direct path
// or relay, magicsock decides per packet).
func (d *kernelDevice) toBind(p *loopPeer) {
	defer d.done.Done()
	buf := make([]byte, 65535)
	for {
		n, err := p.c.Read(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				d.log.Debug("loopback endpoint read", "peer", p.key.ShortString(), "err", err)
			}
			return
		}
		if err := d.bind.Send([][]byte{buf[:n]}, p.ep); err != nil {
			d.log.Debug("send to peer", "peer", p.key.ShortString(), "err", err)
		}
	}
}

// fromBind hands the WireGuard packets magicsock receives (direct or
// relayed) to the kernel, from the sending peer's loopback socket.
func (d *kernelDevice) fromBind(recv conn.ReceiveFunc) {
	defer d.done.Done()
	n := d.bind.BatchSize()
	bufs, sizes, eps := make([][]byte, n), make([]int, n), make([]conn.Endpoint, n)
	for i := range bufs {
		bufs[i] = make([]byte, 65535)
	}
	for {
		got, err := recv(bufs, sizes, eps)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || d.closing.Load() {
				return
			}
			d.log.Debug("receive", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		for i := range got {
			e, ok := eps[i].(*magicsock.Endpoint)
			if !ok || sizes[i] == 0 {
				continue
			}
			d.mu.Lock()
			p := d.peers[e.Key()]
			d.mu.Unlock()
			if p == nil {
				continue // not (or no longer) a peer
			}
			if _, err := p.c.Write(bufs[i][:sizes[i]]); err != nil {
				d.log.Debug("to kernel", "peer", p.key.ShortString(), "err", err)
			}
		}
	}
}

// Apply sends every change in one wgctrl call: peers not named keep their
// sessions (no full replace unless ReplacePeers).
func (d *kernelDevice) Apply(c DeviceChanges) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	cfg := wgtypes.Config{ReplacePeers: c.ReplacePeers}
	if !c.PrivateKey.IsZero() {
		k := wgtypes.Key(c.PrivateKey)
		cfg.PrivateKey = &k
	}
	var removed []key.NodePublic
	keep := map[key.NodePublic]bool{}
	for _, p := range c.Peers {
		pc := wgtypes.PeerConfig{PublicKey: wgtypes.Key(p.Key)}
		if p.Op == PeerRemove {
			pc.Remove = true
			removed = append(removed, p.Key)
			cfg.Peers = append(cfg.Peers, pc)
			continue
		}
		keep[p.Key] = true
		ep := p.Endpoint
		if !ep.IsValid() {
			lp, err := d.peerLocked(p.Key)
			if err != nil {
				return err
			}
			ep = lp.addr
		}
		if p.Op == PeerAdd || p.Endpoint.IsValid() {
			pc.Endpoint = net.UDPAddrFromAddrPort(ep)
		}
		pc.ReplaceAllowedIPs = true
		for _, a := range p.AllowedIPs {
			a = a.Masked()
			pc.AllowedIPs = append(pc.AllowedIPs, net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())})
		}
		ka := time.Duration(p.Keepalive) * time.Second
		pc.PersistentKeepaliveInterval = &ka
		cfg.Peers = append(cfg.Peers, pc)
	}
	// The private key is in cfg: never log it (S11).
	if err := d.wg.ConfigureDevice(d.name, cfg); err != nil {
		return fmt.Errorf("configure WireGuard %s: %w", d.name, err)
	}
	for _, k := range removed {
		d.dropLocked(k)
	}
	if c.ReplacePeers {
		for k := range d.peers {
			if !keep[k] {
				d.dropLocked(k)
			}
		}
	}
	return nil
}

func (d *kernelDevice) dropLocked(k key.NodePublic) {
	if p := d.peers[k]; p != nil {
		p.c.Close()
		delete(d.peers, k)
	}
}

// Kick turns each peer's persistent keepalive off and on: the kernel sends
// a keepalive at once when it goes on (a handshake when there is no
// session), as kickUAPI does for wireguard-go.
func (d *kernelDevice) Kick(peers []key.NodePublic) error {
	if len(peers) == 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	off, on := time.Duration(0), time.Duration(keepaliveSeconds)*time.Second
	for _, ka := range []*time.Duration{&off, &on} {
		cfg := wgtypes.Config{}
		for _, k := range peers {
			cfg.Peers = append(cfg.Peers, wgtypes.PeerConfig{PublicKey: wgtypes.Key(k), UpdateOnly: true, PersistentKeepaliveInterval: ka})
		}
		if err := d.wg.ConfigureDevice(d.name, cfg); err != nil {
			return fmt.Errorf("kick peers on %s: %w", d.name, err)
		}
	}
	return nil
}

func (d *kernelDevice) Peers() ([]PeerStatus, error) {
	d.mu.Lock()
	dev, err := d.wg.Device(d.name)
	d.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("read WireGuard %s: %w", d.name, err)
	}
	out := make([]PeerStatus, 0, len(dev.Peers))
	for _, p := range dev.Peers {
		out = append(out, PeerStatus{Key: key.NodePublic(p.PublicKey), LastHandshake: p.LastHandshakeTime,
			RxBytes: uint64(p.ReceiveBytes), TxBytes: uint64(p.TransmitBytes)})
	}
	return out, nil
}

// Close deletes the link (its peers and the kernel's socket go with it),
// closes the bind and the loopback sockets and waits for their readers.
func (d *kernelDevice) Close() error {
	d.closing.Store(true)
	deleteLink(d.name)
	err := d.bind.Close()
	d.mu.Lock()
	for k := range d.peers {
		d.dropLocked(k)
	}
	d.mu.Unlock()
	d.done.Wait()
	return errors.Join(err, d.wg.Close())
}
