// Package tlscert gives coord its TLS certificate: a given cert/key pair, or
// a self-signed ECDSA one created once in the state dir. Agents pin it by
// its fingerprint (wire.Fingerprint), so no CA is needed.
package tlscert
