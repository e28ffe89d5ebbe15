package engine

import (
	"fmt"
	"strings"

	"golang.zx2c4.com/wireguard/device"

	"github.com/lanmesh/lanmesh/internal/key"
)

// uapiDevice is the userspace backend: a wireguard-go device configured
// through its UAPI text protocol. Its Bind is magicsock, which addresses
// peers by node key, so a peer's endpoint is its key unless a change
// names a UDP address.
type uapiDevice struct {
	dev *device.Device
}

var _ Device = (*uapiDevice)(nil)

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
