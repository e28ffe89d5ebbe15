package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/lanmesh/lanmesh/internal/key"
)

// uapiDevice is the userspace backend: a wireguard-go device configured
// through its UAPI text protocol. Its Bind is magicsock, which addresses
// peers by node key, so a peer's endpoint is its key unless a change
// names a UDP address.
type uapiDevice struct {
	dev  *device.Device
	uapi net.Listener // the UAPI socket (Options.UAPISocket), or nil
}

var _ Device = (*uapiDevice)(nil)

// newUAPIDevice makes the wireguard-go device on t and bind, listening on
// UDP port (0 picks one), and brings it up.
func newUAPIDevice(t tun.Device, bind conn.Bind, port uint16, log *slog.Logger) (*uapiDevice, error) {
	wg := device.NewDevice(t, bind, deviceLogger(log))
	// Our endpoints are node keys and magicsock picks the path per packet;
	// wireguard-go must not replace them with packet source addresses.
	wg.DisableSomeRoamingForBrokenMobileSemantics()
	if err := wg.IpcSet(fmt.Sprintf("listen_port=%d\n", port)); err != nil {
		wg.Close()
		return nil, fmt.Errorf("listen on UDP port %d: %w", port, err)
	}
	if err := wg.Up(); err != nil {
		wg.Close()
		return nil, fmt.Errorf("bring WireGuard device up: %w", err)
	}
	return &uapiDevice{dev: wg}, nil
}

// serveUAPI opens wireguard-go's UAPI socket for the device,
// /var/run/wireguard/NAME.sock (root only), so the device itself can be
// read with the UAPI text protocol: what WireGuard really has, not the
// netmap. (`wg show` and wgctrl cannot parse it: the endpoints are node
// keys.)
func (d *uapiDevice) serveUAPI(name string, log *slog.Logger) error {
	f, err := ipc.UAPIOpen(name)
	if err != nil {
		return fmt.Errorf("open the UAPI socket for %s (wireguard_uapi): %w; another process may own /var/run/wireguard/%s.sock, or pick another tun_name", name, err, name)
	}
	l, err := ipc.UAPIListen(name, f)
	if err != nil {
		f.Close()
		return fmt.Errorf("listen on the UAPI socket for %s: %w", name, err)
	}
	d.uapi = l
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					log.Debug("wireguard UAPI socket closed", "err", err)
				}
				return
			}
			go d.dev.IpcHandle(c)
		}
	}()
	return nil
}

func deviceLogger(l *slog.Logger) *device.Logger {
	dl := &device.Logger{Verbosef: device.DiscardLogf, Errorf: func(f string, a ...any) {
		l.Warn("wireguard: " + fmt.Sprintf(f, a...))
	}}
	if l.Enabled(context.Background(), slog.LevelDebug) {
		dl.Verbosef = func(f string, a ...any) { l.Debug("wireguard: " + fmt.Sprintf(f, a...)) }
	}
	return dl
}

func (d *uapiDevice) Apply(c DeviceChanges) error {
	s := changesUAPI(c)
	if s == "" {
		return nil
	}
	// The text holds the private key: never log it (S11).
	if err := d.dev.IpcSet(s); err != nil {
		return fmt.Errorf("configure WireGuard: %w", err)
	}
	return nil
}

func (d *uapiDevice) Kick(peers []key.NodePublic) error {
	var b strings.Builder
	for _, k := range peers {
		kickUAPI(&b, k)
	}
	if b.Len() == 0 {
		return nil
	}
	return d.dev.IpcSet(b.String())
}

func (d *uapiDevice) Peers() ([]PeerStatus, error) {
	s, err := d.dev.IpcGet()
	if err != nil {
		return nil, fmt.Errorf("read WireGuard state: %w", err)
	}
	st, err := parseUAPI(s)
	return st.Peers, err
}

func (d *uapiDevice) Close() error {
	if d.uapi != nil {
		d.uapi.Close()
	}
	d.dev.Close() // closes the TUN (the link goes) and the Bind's sockets
	return nil
}

// changesUAPI is c as one UAPI "set" text ("" when there is nothing to do).
func changesUAPI(c DeviceChanges) string {
	var b strings.Builder
	if !c.PrivateKey.IsZero() {
		fmt.Fprintf(&b, "private_key=%s\n", c.PrivateKey.Hex())
	}
	if c.ReplacePeers {
		b.WriteString("replace_peers=true\n")
	}
	for _, p := range c.Peers {
		switch p.Op {
		case PeerRemove:
			removeUAPI(&b, p.Key)
		case PeerAdd:
			if p.Endpoint.IsValid() {
				peerUAPI(&b, Peer{Key: p.Key, AllowedIPs: p.AllowedIPs}, p.Endpoint, p.Keepalive)
			} else {
				newPeerUAPI(&b, Peer{Key: p.Key, AllowedIPs: p.AllowedIPs}, p.Keepalive)
			}
		case PeerUpdate:
			// The endpoint (the node key) stays unless one is named.
			peerUAPI(&b, Peer{Key: p.Key, AllowedIPs: p.AllowedIPs}, p.Endpoint, p.Keepalive)
		}
	}
	return b.String()
}
