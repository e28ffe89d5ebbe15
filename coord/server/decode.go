package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"

	"github.com/lanmesh/lanmesh/coord/netmap"
	"github.com/lanmesh/lanmesh/coord/store"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// Limits on what a node may report about itself.
const (
	maxHostname  = 255
	maxOS        = 64
	maxEndpoints = 64
	maxRoutes    = 256
)

// decodeEnvelope parses and checks the shape of a request envelope; the
// nonce and signature are checked by the caller.
func decodeEnvelope(b []byte) (wire.Envelope, error) {
	var env wire.Envelope
	if err := strictJSON(b, &env); err != nil {
		return env, fmt.Errorf("malformed envelope: %w", err)
	}
	if env.Version != wire.ProtocolVersion {
		return env, fmt.Errorf("protocol version %d not supported: this coord speaks version %d", env.Version, wire.ProtocolVersion)
	}
	switch {
	case env.Machine.IsZero():
		return env, errors.New("envelope: missing machine key")
	case env.Nonce == "" || len(env.Nonce) > 128:
		return env, errors.New("envelope: missing or oversized nonce")
	case len(env.Sig) == 0:
		return env, errors.New("envelope: missing signature")
	case len(env.Body) == 0:
		return env, errors.New("envelope: empty body")
	}
	return env, nil
}

func decodeRegister(b []byte) (wire.RegisterRequest, error) {
	var r wire.RegisterRequest
	if err := strictJSON(b, &r); err != nil {
		return r, fmt.Errorf("malformed register request: %w", err)
	}
	switch {
	case r.NodeKey.IsZero():
		return r, errors.New("register request: missing node key")
	case len(r.Hostname) > maxHostname:
		return r, fmt.Errorf("register request: hostname longer than %d bytes", maxHostname)
	case len(r.OS) > maxOS:
		return r, fmt.Errorf("register request: os longer than %d bytes", maxOS)
	}
	return r, nil
}

func decodeMap(b []byte) (wire.MapRequest, error) {
	var r wire.MapRequest
	if err := strictJSON(b, &r); err != nil {
		return r, fmt.Errorf("malformed map request: %w", err)
	}
	switch {
	case r.NodeKey.IsZero():
		return r, errors.New("map request: missing node key")
	case len(r.Hostname) > maxHostname:
		return r, fmt.Errorf("map request: hostname longer than %d bytes", maxHostname)
	case len(r.Endpoints) > maxEndpoints:
		return r, fmt.Errorf("map request: more than %d endpoints", maxEndpoints)
	case len(r.AdvertiseRoutes) > maxRoutes:
		return r, fmt.Errorf("map request: more than %d advertised routes", maxRoutes)
	case len(r.LANHosts) > netmap.MaxLANHosts:
		return r, fmt.Errorf("map request: more than %d LAN hosts", netmap.MaxLANHosts)
	}
	// LAN hosts are checked here for shape; whether each address is inside
	// an approved route is decided per snapshot, as approvals change.
	names := make(map[string]bool, len(r.LANHosts))
	for i, h := range r.LANHosts {
		if h.Name == "" || store.DNSLabel(h.Name) != h.Name {
			return r, fmt.Errorf("map request: lan_hosts[%d]: name %q is not a lower-case DNS label", i, h.Name)
		}
		if names[h.Name] {
			return r, fmt.Errorf("map request: lan_hosts[%d]: name %q appears twice", i, h.Name)
		}
		names[h.Name] = true
		a := h.Addr
		if !a.IsValid() || a.Zone() != "" || a.Is4In6() || a.IsLoopback() || a.IsMulticast() || a.IsLinkLocalUnicast() || a.IsUnspecified() {
			return r, fmt.Errorf("map request: lan_hosts[%d] (%s): address %v is not a unicast LAN address", i, h.Name, h.Addr)
		}
	}
	for _, ep := range r.Endpoints {
		if !ep.IsValid() || ep.Port() == 0 || ep.Addr().IsUnspecified() || ep.Addr().IsMulticast() {
			return r, fmt.Errorf("map request: endpoint %s is not a unicast address with a port", ep)
		}
	}
	for i, p := range r.AdvertiseRoutes {
		if err := checkRoute(p); err != nil {
			return r, fmt.Errorf("map request: advertised route: %w", err)
		}
		r.AdvertiseRoutes[i] = p.Masked()
	}
	return r, nil
}

// checkRoute refuses prefixes no subnet router should offer.
func checkRoute(p netip.Prefix) error {
	if !p.IsValid() {
		return errors.New("invalid prefix")
	}
	a := p.Addr()
	if p != p.Masked() {
		return fmt.Errorf("%s has host bits set (did you mean %s?)", p, p.Masked())
	}
	if a.IsLoopback() || a.IsMulticast() || a.IsLinkLocalUnicast() || (a.IsUnspecified() && p.Bits() != 0) {
		return fmt.Errorf("%s is loopback, link-local, multicast or unspecified", p)
	}
	return nil
}

// strictJSON decodes exactly one JSON value; trailing garbage is an error.
func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after JSON value")
	}
	return nil
}
