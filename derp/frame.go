package derp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/lanmesh/lanmesh/internal/key"
)

// FrameType is the first byte of every frame.
type FrameType byte

// Frame types. Values are part of the wire protocol: never renumber.
const (
	FrameServerKey  FrameType = 0x01 // server -> client: magic, server key, challenge
	FrameClientInfo FrameType = 0x02 // client -> server: node key, nonce, sealed challenge+info
	FrameServerInfo FrameType = 0x03 // server -> client: handshake accepted, JSON info
	FrameSendPacket FrameType = 0x04 // client -> server: dst key, packet
	FrameRecvPacket FrameType = 0x05 // server -> client: src key, packet
	FrameKeepAlive  FrameType = 0x06 // both ways, empty
	FramePing       FrameType = 0x07 // both ways: 8 bytes echoed in a Pong
	FramePong       FrameType = 0x08
	FramePeerGone   FrameType = 0x09 // server -> client: key, reason byte
	FrameHealth     FrameType = 0x0a // server -> client: UTF-8 problem, empty = healthy
	FrameError      FrameType = 0x0b // server -> client: UTF-8 reason; the server closes next
)

func (t FrameType) String() string {
	switch t {
	case FrameServerKey:
		return "ServerKey"
	case FrameClientInfo:
		return "ClientInfo"
	case FrameServerInfo:
		return "ServerInfo"
	case FrameSendPacket:
		return "SendPacket"
	case FrameRecvPacket:
		return "RecvPacket"
	case FrameKeepAlive:
		return "KeepAlive"
	case FramePing:
		return "Ping"
	case FramePong:
		return "Pong"
	case FramePeerGone:
		return "PeerGone"
	case FrameHealth:
		return "Health"
	case FrameError:
		return "Error"
	}
	return fmt.Sprintf("FrameType(0x%02x)", byte(t))
}

// Limits.
const (
	// MaxPacketSize is the largest relayed packet: bigger than any
	// WireGuard packet, including GSO-free jumbo ones.
	MaxPacketSize = 64 << 10
	// MaxFrameSize is the largest frame payload: a packet plus a key and
	// some header room.
	MaxFrameSize   = MaxPacketSize + 64
	frameHeaderLen = 5
	keyLen         = 32
	pingLen        = 8
	maxTextLen     = 1 << 10 // Health and Error messages
)

// ErrFrameTooLarge is returned when a peer announces a frame past MaxFrameSize.
var ErrFrameTooLarge = errors.New("derp: frame larger than the protocol allows")

// ReadFrame reads one frame into buf (growing it when needed, up to
// MaxFrameSize) and returns its type and payload, which aliases buf.
// A frame over the limit is an error without reading its payload, so a
// bogus length cannot make us allocate.
func ReadFrame(r io.Reader, buf []byte) (FrameType, []byte, error) {
	var hdr [frameHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxFrameSize {
		return 0, nil, fmt.Errorf("%w: %s of %d bytes (max %d)", ErrFrameTooLarge, FrameType(hdr[0]), n, MaxFrameSize)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, fmt.Errorf("derp: read %s payload (%d bytes): %w", FrameType(hdr[0]), n, err)
	}
	return FrameType(hdr[0]), buf, nil
}

// readFrameMax is ReadFrame with a smaller payload limit, checked before
// the payload is read: for frames from clients not yet authenticated.
func readFrameMax(r io.Reader, max uint32) (FrameType, []byte, error) {
	var hdr [frameHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > max {
		return 0, nil, fmt.Errorf("%w: %s of %d bytes (max %d here)", ErrFrameTooLarge, FrameType(hdr[0]), n, max)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, fmt.Errorf("derp: read %s payload (%d bytes): %w", FrameType(hdr[0]), n, err)
	}
	return FrameType(hdr[0]), buf, nil
}

// appendFrame appends a whole frame whose payload is the concatenation of parts.
func appendFrame(dst []byte, t FrameType, parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	dst = append(dst, byte(t))
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	for _, p := range parts {
		dst = append(dst, p...)
	}
	return dst
}

// WriteFrame writes one frame. The caller serialises writers.
func WriteFrame(w io.Writer, t FrameType, parts ...[]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if n > MaxFrameSize {
		return fmt.Errorf("%w: %s of %d bytes", ErrFrameTooLarge, t, n)
	}
	_, err := w.Write(appendFrame(make([]byte, 0, frameHeaderLen+n), t, parts...))
	return err
}

// parseKeyPacket splits a SendPacket or RecvPacket payload.
func parseKeyPacket(t FrameType, p []byte) (key.NodePublic, []byte, error) {
	var k key.NodePublic
	if len(p) < keyLen {
		return k, nil, fmt.Errorf("derp: %s of %d bytes is shorter than a key", t, len(p))
	}
	if len(p)-keyLen > MaxPacketSize {
		return k, nil, fmt.Errorf("derp: %s packet of %d bytes over the %d limit", t, len(p)-keyLen, MaxPacketSize)
	}
	copy(k[:], p)
	return k, p[keyLen:], nil
}

// PeerGoneReason says why a PeerGone was sent.
type PeerGoneReason byte

const (
	PeerGoneDisconnected PeerGoneReason = 0x00 // was connected, left
	PeerGoneNotHere      PeerGoneReason = 0x01 // not connected to this relay
)

func parsePeerGone(p []byte) (key.NodePublic, PeerGoneReason, error) {
	var k key.NodePublic
	if len(p) != keyLen && len(p) != keyLen+1 {
		return k, 0, fmt.Errorf("derp: PeerGone of %d bytes, want %d or %d", len(p), keyLen, keyLen+1)
	}
	copy(k[:], p)
	if len(p) == keyLen {
		return k, PeerGoneDisconnected, nil
	}
	return k, PeerGoneReason(p[keyLen]), nil
}
