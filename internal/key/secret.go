package key

import "crypto/subtle"

// Secret holds a shared secret (a token, a relay credential, a MAC key).
// It is not comparable: a struct with a slice field cannot be used with
// == or as a map key, so the compiler refuses the non-constant-time
// comparison and Equal is the only way (S8). String redacts (S11).
//
//lanmesh:secret
type Secret struct {
	b []byte
}

// NewSecret copies b into a Secret.
func NewSecret(b []byte) Secret { return Secret{b: append([]byte(nil), b...)} }

// SecretString makes a Secret of a string (a token from a config file).
func SecretString(s string) Secret { return Secret{b: []byte(s)} }

// Equal compares in constant time; two empty secrets are not equal, so an
// unset credential never matches an empty one presented by a client.
func (s Secret) Equal(o Secret) bool {
	if len(s.b) == 0 || len(o.b) == 0 {
		return false
	}
	return subtle.ConstantTimeCompare(s.b, o.b) == 1
}

// EqualBytes compares s with b in constant time, as Equal does.
func (s Secret) EqualBytes(b []byte) bool { return s.Equal(Secret{b: b}) }

// IsZero reports whether s is empty.
func (s Secret) IsZero() bool { return len(s.b) == 0 }

// Bytes returns the secret itself, for the wire or a MAC: never for logs.
func (s Secret) Bytes() []byte { return s.b }

// String never reveals the secret (S11).
func (s Secret) String() string { return "secret:REDACTED" }

// MarshalText writes REDACTED, so a Secret never leaks through JSON or YAML by
// accident; serialise Bytes explicitly where a state file needs it.
func (s Secret) MarshalText() ([]byte, error) { return []byte("REDACTED"), nil }
