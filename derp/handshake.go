package derp

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/nacl/box"

	"github.com/lanmesh/lanmesh/internal/key"
)

// ProtocolVersion is the relay protocol version, carried in ClientInfo
// and ServerInfo.
const ProtocolVersion = 1

// magic opens every ServerKey frame, so a client that reached some other
// HTTP server fails with a clear error instead of misparsing.
const magic = "LMDERP\xf0\x9f"

const (
	challengeLen = 32
	nonceLen     = 24
	serverKeyLen = len(magic) + keyLen + challengeLen
	// maxClientInfoLen caps the one frame read before a client is
	// authenticated: key, nonce, box overhead and challenge are 104 bytes,
	// today's JSON 13; the rest leaves room for new fields.
	maxClientInfoLen = 512
)

// ClientInfo is the JSON a client seals with the challenge.
type ClientInfo struct {
	Version int `json:"version"`
	// CanPing etc. would go here; unknown fields are ignored for
	// forward compatibility.
}

// ServerInfo is the JSON body of a ServerInfo frame.
type ServerInfo struct {
	Version int `json:"version"`
	// RateBytesPerSec and Burst tell the client its send budget (0 = none).
	RateBytesPerSec int64 `json:"rate_bytes_per_sec,omitempty"`
	Burst           int64 `json:"burst,omitempty"`
}

// encodeServerKey builds the ServerKey payload.
func encodeServerKey(pub key.NodePublic, challenge [challengeLen]byte) []byte {
	b := make([]byte, 0, serverKeyLen)
	b = append(b, magic...)
	b = append(b, pub[:]...)
	return append(b, challenge[:]...)
}

// parseServerKey validates a ServerKey payload.
func parseServerKey(p []byte) (pub key.NodePublic, challenge [challengeLen]byte, err error) {
	if len(p) != serverKeyLen {
		return pub, challenge, fmt.Errorf("derp: ServerKey of %d bytes, want %d", len(p), serverKeyLen)
	}
	if !bytes.Equal(p[:len(magic)], []byte(magic)) {
		return pub, challenge, errors.New("derp: ServerKey without the lanmesh relay magic; is this URL a lanmesh relay?")
	}
	copy(pub[:], p[len(magic):])
	copy(challenge[:], p[len(magic)+keyLen:])
	return pub, challenge, nil
}

// sealClientInfo builds the ClientInfo payload: the client's node public
// key, a fresh nonce and box(challenge || json) from the node key to the
// server key. Only the holder of the node private key can make it, and
// the per-connection challenge makes it useless for any other connection.
func sealClientInfo(priv key.NodePrivate, server key.NodePublic, challenge [challengeLen]byte, info ClientInfo) ([]byte, error) {
	js, err := json.Marshal(info)
	if err != nil {
		return nil, err
	}
	var nonce [nonceLen]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, err
	}
	pub := priv.Public()
	msg := append(challenge[:], js...)
	out := make([]byte, 0, keyLen+nonceLen+len(msg)+box.Overhead)
	out = append(out, pub[:]...)
	out = append(out, nonce[:]...)
	return box.Seal(out, msg, &nonce, (*[32]byte)(&server), (*[32]byte)(&priv)), nil
}

// openClientInfo checks a ClientInfo payload against this connection's
// challenge and returns the proven node key.
func openClientInfo(p []byte, serverPriv key.NodePrivate, challenge [challengeLen]byte) (key.NodePublic, ClientInfo, error) {
	var pub key.NodePublic
	var info ClientInfo
	if len(p) < keyLen+nonceLen+box.Overhead+challengeLen {
		return pub, info, fmt.Errorf("derp: ClientInfo of %d bytes is too short", len(p))
	}
	if len(p) > maxClientInfoLen {
		return pub, info, fmt.Errorf("derp: ClientInfo of %d bytes is over the %d limit", len(p), maxClientInfoLen)
	}
	copy(pub[:], p)
	if pub.IsZero() {
		return pub, info, errors.New("derp: ClientInfo with an all-zero node key")
	}
	var nonce [nonceLen]byte
	copy(nonce[:], p[keyLen:])
	msg, ok := box.Open(nil, p[keyLen+nonceLen:], &nonce, (*[32]byte)(&pub), (*[32]byte)(&serverPriv))
	if !ok {
		return pub, info, errors.New("derp: ClientInfo box does not open: the client does not hold the key it claims")
	}
	if len(msg) < challengeLen || !key.Equal(msg[:challengeLen], challenge[:]) {
		return pub, info, errors.New("derp: ClientInfo answers a different challenge")
	}
	if err := json.Unmarshal(msg[challengeLen:], &info); err != nil {
		return pub, info, fmt.Errorf("derp: ClientInfo JSON: %w", err)
	}
	if info.Version < 1 {
		return pub, info, fmt.Errorf("derp: ClientInfo protocol version %d, this relay speaks %d", info.Version, ProtocolVersion)
	}
	return pub, info, nil
}

// textPayload cuts a Health/Error text to size and to valid UTF-8.
func textPayload(s string) []byte {
	s = strings.ToValidUTF8(s, "?")
	if len(s) > maxTextLen {
		s = s[:maxTextLen]
		for !utf8.ValidString(s) { // a rune split by the cut
			s = s[:len(s)-1]
		}
	}
	return []byte(s)
}

func parseText(t FrameType, p []byte) (string, error) {
	if len(p) > maxTextLen || !utf8.Valid(p) {
		return "", fmt.Errorf("derp: %s text of %d bytes is too long or not UTF-8", t, len(p))
	}
	return string(p), nil
}
