package disco

import (
	"crypto/rand"
	"errors"
	"fmt"

	"golang.org/x/crypto/nacl/box"

	"github.com/lanmesh/lanmesh/internal/key"
)

// Magic starts every disco packet. Its first byte 'L' (0x4c) is not a
// WireGuard message type (1..4) and its top two bits are not 00 as every
// STUN message's are, so one UDP socket can carry all three.
const Magic = "LM\xf0\x9f\x94\x97"

const (
	magicLen  = len(Magic)
	keyLen    = 32
	nonceLen  = 24
	headerLen = magicLen + keyLen + nonceLen
	// MinPacketLen is the smallest well-formed packet: the header, the box
	// tag and a payload header.
	MinPacketLen = headerLen + box.Overhead + payloadHdrLen
	// MaxPacketLen bounds what we open: a full CallMeMaybe is ~1230 bytes.
	MaxPacketLen = 1400
)

// Looks reports whether pkt is framed as a disco packet (for the demux of
// a socket shared with WireGuard and STUN). It does no crypto.
func Looks(pkt []byte) bool {
	return len(pkt) >= headerLen && string(pkt[:magicLen]) == Magic
}

// SenderKey returns the node key the packet claims to come from; only Open
// proves it.
func SenderKey(pkt []byte) (key.NodePublic, error) {
	if err := checkFrame(pkt); err != nil {
		return key.NodePublic{}, err
	}
	return key.NodePublic(pkt[magicLen : magicLen+keyLen]), nil
}

func checkFrame(pkt []byte) error {
	switch {
	case len(pkt) < magicLen || string(pkt[:magicLen]) != Magic:
		return errors.New("disco: not a disco packet (bad magic)")
	case len(pkt) < MinPacketLen:
		return fmt.Errorf("disco: packet of %d bytes, need at least %d", len(pkt), MinPacketLen)
	case len(pkt) > MaxPacketLen:
		return fmt.Errorf("disco: packet of %d bytes, at most %d allowed", len(pkt), MaxPacketLen)
	}
	return nil
}

// sharedKey is box.Precompute of our private and the peer's public key,
// kept per peer so a ping costs one XSalsa20-Poly1305, not a Curve25519.
type sharedKey [32]byte

func newSharedKey(priv key.NodePrivate, peer key.NodePublic) *sharedKey {
	var s sharedKey
	box.Precompute((*[32]byte)(&s), (*[32]byte)(&peer), (*[32]byte)(&priv))
	return &s
}

// sealWith frames and seals payload from sender with a random nonce.
func sealWith(s *sharedKey, sender key.NodePublic, payload []byte) []byte {
	var nonce [nonceLen]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		panic("crypto/rand failed: " + err.Error()) // never on Linux
	}
	out := make([]byte, 0, headerLen+len(payload)+box.Overhead)
	out = append(out, Magic...)
	out = append(out, sender[:]...)
	out = append(out, nonce[:]...)
	return box.SealAfterPrecomputation(out, payload, &nonce, (*[32]byte)(s))
}

// openWith checks the frame and opens the box; it does not parse.
func openWith(s *sharedKey, pkt []byte) (nonce [nonceLen]byte, payload []byte, err error) {
	if err := checkFrame(pkt); err != nil {
		return nonce, nil, err
	}
	copy(nonce[:], pkt[magicLen+keyLen:headerLen])
	payload, ok := box.OpenAfterPrecomputation(nil, pkt[headerLen:], &nonce, (*[32]byte)(s))
	if !ok {
		return nonce, nil, errors.New("disco: box does not open (forged, corrupted, or sealed for another node)")
	}
	return nonce, payload, nil
}

// Seal returns m sealed from priv to the peer, framed for the wire.
func Seal(priv key.NodePrivate, to key.NodePublic, m Message) []byte {
	return sealWith(newSharedKey(priv, to), priv.Public(), m.AppendMarshal(nil))
}

// Open authenticates pkt as sealed to priv by the key in its header and
// parses it. It does not check for replays; the Manager does.
func Open(priv key.NodePrivate, pkt []byte) (key.NodePublic, Message, error) {
	from, err := SenderKey(pkt)
	if err != nil {
		return from, nil, err
	}
	_, payload, err := openWith(newSharedKey(priv, from), pkt)
	if err != nil {
		return from, nil, err
	}
	m, err := Parse(payload)
	return from, m, err
}
