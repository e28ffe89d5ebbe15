package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/lanmesh/lanmesh/internal/atomicfile"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/tlscert"
)

const nodeFile = "derp-node.key" // the relay's Curve25519 handshake key

// loadOrCreateCert returns the TLS certificate from certPath/keyPath, or
// from the state dir, making a self-signed one there on first start.
// Clients pin it by fingerprint, so it never needs a CA.
func loadOrCreateCert(stateDir, certPath, keyPath string, names []string) (tls.Certificate, error) {
	if certPath != "" || keyPath != "" {
		if certPath == "" || keyPath == "" {
			return tls.Certificate{}, errors.New("--tls-cert and --tls-key go together")
		}
		return tlscert.Load(certPath, keyPath)
	}
	return tlscert.LoadOrCreate(stateDir, "lanmesh-derp", names...)
}

// loadOrCreateNodeKey keeps the relay's handshake key stable across restarts.
func loadOrCreateNodeKey(stateDir string) (key.NodePrivate, error) {
	p := filepath.Join(stateDir, nodeFile)
	var k key.NodePrivate
	b, err := os.ReadFile(p)
	if err == nil {
		if err := k.UnmarshalText(b); err != nil {
			return k, fmt.Errorf("%s: %w (delete it to make a new one)", p, err)
		}
		return k, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return k, err
	}
	k = key.NewNode()
	txt, _ := k.MarshalText()
	return k, atomicfile.Write(p, txt, 0o600)
}
