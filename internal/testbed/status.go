package testbed

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Status is `lanmesh status --json` as docs/cli.md defines it. Only the
// fields tests read are here; unknown ones are ignored.
type Status struct {
	BackendState string       `json:"backend_state"`
	Coord        StatusCoord  `json:"coord"`
	Self         StatusNode   `json:"self"`
	Peers        []StatusNode `json:"peers"`
	WireGuard    struct {
		Backend string   `json:"backend"` // "kernel" or "userspace"
		Reason  string   `json:"reason"`
		Peers   []string `json:"peers"` // keys read from the WireGuard device
	} `json:"wireguard"`
	NeedsReauth bool   `json:"needs_reauth"`
	AuthURL     string `json:"auth_url"`
}

// DevicePeer reports whether the WireGuard device has a peer with key k.
func (s *Status) DevicePeer(k string) bool {
	for _, p := range s.WireGuard.Peers {
		if p == k {
			return true
		}
	}
	return false
}

type StatusCoord struct {
	URL       string `json:"url"`
	Connected bool   `json:"connected"`
	LastError string `json:"last_error"`
	NextRetry string `json:"next_retry"`
}

type StatusNode struct {
	ID               int64    `json:"id"`
	Name             string   `json:"name"`
	Key              string   `json:"key"`
	Addresses        []string `json:"addresses"`
	AdvertisedRoutes []string `json:"advertised_routes"`
	Routes           []string `json:"routes"`
	Endpoint         string   `json:"endpoint"`
	Path             string   `json:"path"`
	RelayInCoord     bool     `json:"relay_in_coord"`
	LastHandshake    string   `json:"last_handshake"`
	RxBytes          uint64   `json:"rx_bytes"`
	TxBytes          uint64   `json:"tx_bytes"`
	Online           bool     `json:"online"`
}

// ParseStatus decodes and checks `lanmesh status --json` output.
func ParseStatus(b []byte) (*Status, error) {
	var s Status
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("status --json: not the documented JSON: %w", err)
	}
	if s.BackendState == "" {
		return nil, errors.New("status --json: backend_state missing")
	}
	for _, n := range append([]StatusNode{s.Self}, s.Peers...) {
		for _, a := range n.Addresses {
			if _, err := netip.ParsePrefix(a); err != nil {
				return nil, fmt.Errorf("status --json: node %q address %q: %w", n.Name, a, err)
			}
		}
		for _, r := range append(append([]string(nil), n.Routes...), n.AdvertisedRoutes...) {
			if _, err := netip.ParsePrefix(r); err != nil {
				return nil, fmt.Errorf("status --json: node %q route %q: %w", n.Name, r, err)
			}
		}
	}
	return &s, nil
}

// Peer returns the peer called name, or nil.
func (s *Status) Peer(name string) *StatusNode {
	for i := range s.Peers {
		if s.Peers[i].Name == name {
			return &s.Peers[i]
		}
	}
	return nil
}

// PeerByKey returns the peer with public key k, or nil.
func (s *Status) PeerByKey(k string) *StatusNode {
	for i := range s.Peers {
		if s.Peers[i].Key == k {
			return &s.Peers[i]
		}
	}
	return nil
}

// HasRoute reports whether n carries the approved route r.
func (n *StatusNode) HasRoute(r string) bool {
	for _, x := range n.Routes {
		if x == r {
			return true
		}
	}
	return false
}

// IPv4 is the node's first IPv4 mesh address without its prefix length.
func (n *StatusNode) IPv4() string {
	for _, a := range n.Addresses {
		if p, err := netip.ParsePrefix(a); err == nil && p.Addr().Is4() {
			return p.Addr().String()
		}
	}
	return ""
}

// Summary is a one-line description for logs and the demo table.
func (n *StatusNode) Summary() string {
	return fmt.Sprintf("%s %s routes=[%s]", n.Name, strings.Join(n.Addresses, ","), strings.Join(n.Routes, ","))
}
