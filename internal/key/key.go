package key

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/curve25519"
)

// NodePrivate is a WireGuard (Curve25519) private key. Compare it only
// with Equal (S8): internal/lint/secretcmp reports == on it.
//
//lanmesh:secret
type NodePrivate [32]byte

// NodePublic is a WireGuard (Curve25519) public key. Its text form is the
// standard base64 that wg(8) and the WireGuard apps use.
type NodePublic [32]byte

// NewNode returns a fresh, clamped WireGuard private key.
func NewNode() NodePrivate {
	var k NodePrivate
	if _, err := rand.Read(k[:]); err != nil {
		panic("crypto/rand failed: " + err.Error()) // never happens on Linux
	}
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return k
}

// IsZero reports whether k was never set.
func (k NodePrivate) IsZero() bool { return k.Equal(NodePrivate{}) }

// Equal compares two private keys in constant time (S8).
func (k NodePrivate) Equal(o NodePrivate) bool { return Equal(k[:], o[:]) }

// Public returns the public half of k.
func (k NodePrivate) Public() NodePublic {
	var p NodePublic
	curve25519.ScalarBaseMult((*[32]byte)(&p), (*[32]byte)(&k))
	return p
}

// String never reveals the key: private keys must not reach logs (S11).
func (k NodePrivate) String() string { return "nodeprivate:REDACTED" }

// Base64 is the wg(8) form of the private key, for the WireGuard UAPI and
// the state file only.
func (k NodePrivate) Base64() string { return base64.StdEncoding.EncodeToString(k[:]) }

// MarshalText is used only by the state file, which is mode 0600.
func (k NodePrivate) MarshalText() ([]byte, error) { return []byte(k.Base64()), nil }

func (k *NodePrivate) UnmarshalText(b []byte) error {
	return decode32("node private key", b, (*[32]byte)(k))
}

// Hex is the form the WireGuard UAPI wants.
func (k NodePrivate) Hex() string { return fmt.Sprintf("%x", k[:]) }

func (k NodePublic) IsZero() bool   { return k == NodePublic{} } //lint:notsecret a public key
func (k NodePublic) String() string { return base64.StdEncoding.EncodeToString(k[:]) }
func (k NodePublic) Hex() string    { return fmt.Sprintf("%x", k[:]) }

// ShortString is for logs and tables: the first 8 characters of the key.
func (k NodePublic) ShortString() string { return "[" + k.String()[:8] + "]" }

func (k NodePublic) MarshalText() ([]byte, error) { return []byte(k.String()), nil }
func (k *NodePublic) UnmarshalText(b []byte) error {
	return decode32("node public key", b, (*[32]byte)(k))
}

// ParseNodePublic parses the base64 form of a WireGuard public key.
func ParseNodePublic(s string) (NodePublic, error) {
	var k NodePublic
	err := k.UnmarshalText([]byte(s))
	return k, err
}

// MachinePrivate is an Ed25519 private key (its 32-byte seed). Compare it
// only with Equal (S8).
//
//lanmesh:secret
type MachinePrivate [32]byte

// MachinePublic is an Ed25519 public key.
type MachinePublic [32]byte

// NewMachine returns a fresh machine key.
func NewMachine() MachinePrivate {
	var k MachinePrivate
	if _, err := rand.Read(k[:]); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return k
}

func (k MachinePrivate) IsZero() bool { return k.Equal(MachinePrivate{}) }

// Equal compares two machine keys in constant time (S8).
func (k MachinePrivate) Equal(o MachinePrivate) bool { return Equal(k[:], o[:]) }

func (k MachinePrivate) String() string { return "machineprivate:REDACTED" }
func (k MachinePrivate) Public() MachinePublic {
	var p MachinePublic
	copy(p[:], ed25519.NewKeyFromSeed(k[:]).Public().(ed25519.PublicKey))
	return p
}

// Sign signs msg with the machine key.
func (k MachinePrivate) Sign(msg []byte) []byte {
	return ed25519.Sign(ed25519.NewKeyFromSeed(k[:]), msg)
}

func (k MachinePrivate) MarshalText() ([]byte, error) {
	return []byte(base64.StdEncoding.EncodeToString(k[:])), nil
}
func (k *MachinePrivate) UnmarshalText(b []byte) error {
	return decode32("machine private key", b, (*[32]byte)(k))
}

func (k MachinePublic) IsZero() bool   { return k == MachinePublic{} } //lint:notsecret a public key
func (k MachinePublic) String() string { return "mkey:" + base64.RawURLEncoding.EncodeToString(k[:]) }

// Verify reports whether sig is k's signature of msg.
func (k MachinePublic) Verify(msg, sig []byte) bool {
	return len(sig) == ed25519.SignatureSize && ed25519.Verify(ed25519.PublicKey(k[:]), msg, sig)
}

func (k MachinePublic) MarshalText() ([]byte, error) { return []byte(k.String()), nil }
func (k *MachinePublic) UnmarshalText(b []byte) error {
	s, ok := strings.CutPrefix(string(b), "mkey:")
	if !ok {
		return errors.New(`machine public key: missing "mkey:" prefix`)
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) != 32 {
		return errors.New("machine public key: want 32 bytes of unpadded base64url")
	}
	copy(k[:], raw)
	return nil
}

// Equal compares two secrets in constant time (S8). Use it for anything
// secret: auth keys, tokens, relay credentials, fingerprints.
func Equal(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }

func decode32(what string, b []byte, dst *[32]byte) error {
	raw, err := base64.StdEncoding.DecodeString(string(b))
	if err != nil || len(raw) != 32 {
		return fmt.Errorf("%s: want 32 bytes of standard base64 (as wg(8) prints)", what)
	}
	copy(dst[:], raw)
	return nil
}
