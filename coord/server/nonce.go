package server

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
)

// Challenges are stateless (S18): a nonce is a version byte, the issue
// time and 16 random bytes, MAC'd with HMAC-SHA256 under a secret drawn
// at start-up. Issuing one costs coord no memory, so an anonymous flood
// of GET /v1/challenge cannot lock anyone out the way the old table of
// pending nonces could (about 170 requests/s filled it). Single use is
// enforced by the replay cache (replay.go), which only known machines can
// write to. A coord restart draws a new secret, so nonces issued before
// it fail with 401 and the agent fetches a new one.

const (
	nonceVersion = 1
	nonceRandLen = 16
	nonceMACLen  = sha256.Size
	nonceRawLen  = 1 + 8 + nonceRandLen + nonceMACLen // 57 bytes
	// NonceLen is the length of an encoded nonce (base64url, no padding).
	NonceLen = (nonceRawLen*8 + 5) / 6 // 76 characters
	// nonceSkew tolerates a nonce that looks issued slightly in the future:
	// none should, as coord is the only clock involved, but a clock step
	// between issue and use must not refuse every node.
	nonceSkew = 5 * time.Second
)

var (
	errNonceMalformed = errors.New("malformed nonce: fetch a new challenge")
	errNonceForged    = errors.New("nonce not issued by this coord (or coord restarted since): fetch a new challenge")
	errNonceExpired   = errors.New("expired nonce: fetch a new challenge")
)

// nonceID names one nonce in the replay cache: its random part.
type nonceID [nonceRandLen]byte

// nonceMinter issues and checks stateless nonces.
type nonceMinter struct {
	secret []byte
	ttl    time.Duration
	now    func() time.Time
}

func newNonceMinter(ttl time.Duration, now func() time.Time) (*nonceMinter, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("nonce secret: %w", err)
	}
	return &nonceMinter{secret: secret, ttl: ttl, now: now}, nil
}

func (m *nonceMinter) mac(dst, msg []byte) []byte {
	h := hmac.New(sha256.New, m.secret)
	h.Write(msg)
	return h.Sum(dst)
}

// issue returns a fresh nonce; it keeps no state.
func (m *nonceMinter) issue() (string, error) {
	b := make([]byte, 0, nonceRawLen)
	b = append(b, nonceVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(m.now().Unix()))
	var r [nonceRandLen]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	b = append(b, r[:]...)
	b = m.mac(b, b)
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// check verifies s's MAC and age and returns its id and the time after
// which it is no longer accepted (until then the replay cache must
// remember it).
func (m *nonceMinter) check(s string) (nonceID, time.Time, error) {
	var id nonceID
	raw, err := decodeNonce(s)
	if err != nil {
		return id, time.Time{}, err
	}
	body := raw[:nonceRawLen-nonceMACLen]
	if !key.Equal(m.mac(nil, body), raw[len(body):]) {
		return id, time.Time{}, errNonceForged
	}
	issued := time.Unix(int64(binary.BigEndian.Uint64(raw[1:9])), 0)
	now := m.now()
	exp := issued.Add(m.ttl)
	if !now.Before(exp) || issued.After(now.Add(nonceSkew)) {
		return id, time.Time{}, errNonceExpired
	}
	copy(id[:], raw[9:9+nonceRandLen])
	return id, exp, nil
}

// decodeNonce parses a nonce's shape (not its MAC): exact length,
// base64url, known version.
func decodeNonce(s string) ([]byte, error) {
	if len(s) != NonceLen {
		return nil, errNonceMalformed
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(raw) != nonceRawLen || raw[0] != nonceVersion {
		return nil, errNonceMalformed
	}
	return raw, nil
}
