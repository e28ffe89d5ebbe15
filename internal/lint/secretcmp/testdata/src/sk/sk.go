// Package sk declares secret types the way internal/key does.
package sk

// Private is a private key.
//
//lanmesh:secret
type Private [32]byte // want Private:`secret`

// Public is not a secret.
type Public [32]byte

// Secret carries a token.
type Secret string //lanmesh:secret // want Secret:`secret`

// Equal is what key.Equal would be if someone "simplified" it: in a
// package that declares secrets every byte comparison is reported.
func Equal(a, b []byte) bool { return string(a) == string(b) } // want `secret string\(a\) compared with ==`

// IsZero compares a public key; the line says it is not a secret.
func (p Public) IsZero() bool { return p == Public{} } //lint:notsecret a public key
