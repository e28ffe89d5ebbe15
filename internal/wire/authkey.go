package wire

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// An auth key string looks like
//
//	lmk1.<id>.<secret>[.<fingerprint>]
//
// id names the key in coord's store; secret is the bearer part coord keeps
// only as a hash; fingerprint, when present, is the unpadded base64url
// SHA-256 of coord's TLS certificate (DER), which the agent pins so that a
// self-signed coord needs no trust on first use.
type AuthKey struct {
	ID          string
	Secret      string
	Fingerprint string // optional
}

const authKeyPrefix = "lmk1"

func (k AuthKey) String() string {
	s := authKeyPrefix + "." + k.ID + "." + k.Secret
	if k.Fingerprint != "" {
		s += "." + k.Fingerprint
	}
	return s
}

// Redacted is the form for logs and status output (S11).
func (k AuthKey) Redacted() string { return authKeyPrefix + "." + k.ID + ".REDACTED" }

// WithoutFingerprint is the part sent to coord.
func (k AuthKey) WithoutFingerprint() string {
	k.Fingerprint = ""
	return k.String()
}

// ParseAuthKey parses an auth key string. Errors never echo the secret.
func ParseAuthKey(s string) (AuthKey, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) < 3 || len(parts) > 4 || parts[0] != authKeyPrefix {
		return AuthKey{}, errors.New(`auth key: not of the form "lmk1.<id>.<secret>[.<fingerprint>]"; create one with "lanmesh-coord keys create"`)
	}
	k := AuthKey{ID: parts[1], Secret: parts[2]}
	if !isToken(k.ID, 4, 32) || !isToken(k.Secret, 16, 64) {
		return AuthKey{}, errors.New("auth key: id or secret has the wrong length or characters")
	}
	if len(parts) == 4 {
		if _, err := ParseFingerprint(parts[3]); err != nil {
			return AuthKey{}, fmt.Errorf("auth key: %w", err)
		}
		k.Fingerprint = parts[3]
	}
	return k, nil
}

// Fingerprint returns the pin form of a DER certificate.
func Fingerprint(certDER []byte) string {
	sum := sha256.Sum256(certDER)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// ParseFingerprint decodes a pin to its 32 SHA-256 bytes.
func ParseFingerprint(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != sha256.Size {
		return nil, errors.New("coord fingerprint: want 43 characters of unpadded base64url (SHA-256 of coord's certificate)")
	}
	return b, nil
}

func isToken(s string, min, max int) bool {
	if len(s) < min || len(s) > max {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
