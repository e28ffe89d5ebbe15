// Package tlscert gives coord and the relay their TLS certificate: a given
// cert/key pair, or a self-signed ECDSA one created once in the state dir.
// Nodes pin it by its fingerprint (wire.Fingerprint), so no CA is needed.
package tlscert
