package stun

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
)

// Message types and attributes used here (RFC 5389 §6, §15).
const (
	TypeBindingRequest uint16 = 0x0001
	TypeBindingSuccess uint16 = 0x0101
	TypeBindingError   uint16 = 0x0111
	MagicCookie        uint32 = 0x2112A442
	attrMappedAddress  uint16 = 0x0001
	attrXORMapped      uint16 = 0x0020
	attrSoftware       uint16 = 0x8022
	attrFingerprint    uint16 = 0x8028
	fingerprintXOR     uint32 = 0x5354554e
	headerLen                 = 20
	familyIPv4         byte   = 0x01
	familyIPv6         byte   = 0x02
	maxMessageLen             = 1500 // bigger than any binding message we accept
	software                  = "lanmesh"
)

// DefaultPort is the standard STUN port.
const DefaultPort = 3478

// TxID is a STUN transaction ID.
type TxID [12]byte

// NewTxID returns a random transaction ID.
func NewTxID() TxID {
	var t TxID
	if _, err := rand.Read(t[:]); err != nil {
		panic("crypto/rand failed: " + err.Error()) // never on Linux
	}
	return t
}

// Message is a parsed STUN message: the parts lanmesh uses.
type Message struct {
	Type           uint16
	TxID           TxID
	XORMapped      netip.AddrPort // zero if absent
	Mapped         netip.AddrPort // MAPPED-ADDRESS, zero if absent
	Software       string
	HasFingerprint bool // present and verified
}

// Addr is the mapped address the message reports, preferring
// XOR-MAPPED-ADDRESS (which NATs that rewrite payloads cannot mangle).
func (m Message) Addr() netip.AddrPort {
	if m.XORMapped.IsValid() {
		return m.XORMapped
	}
	return m.Mapped
}

// Is reports whether b looks like a STUN message (for demultiplexing a
// socket shared with WireGuard and disco): it checks the cookie and the
// two zero top bits only.
func Is(b []byte) bool {
	return len(b) >= headerLen && b[0]&0xc0 == 0 && binary.BigEndian.Uint32(b[4:8]) == MagicCookie
}

// BindingRequest returns a Binding request with SOFTWARE and FINGERPRINT.
func BindingRequest(tx TxID) []byte {
	b := header(TypeBindingRequest, tx)
	b = appendAttr(b, attrSoftware, []byte(software))
	return appendFingerprint(b)
}

// BindingResponse returns a Binding success response telling the client addr,
// as XOR-MAPPED-ADDRESS and (for old clients) MAPPED-ADDRESS.
func BindingResponse(tx TxID, addr netip.AddrPort) []byte {
	b := header(TypeBindingSuccess, tx)
	b = appendAttr(b, attrXORMapped, xorAddr(encodeAddr(addr), tx))
	b = appendAttr(b, attrMappedAddress, encodeAddr(addr))
	return appendFingerprint(b)
}

func header(typ uint16, tx TxID) []byte {
	b := make([]byte, headerLen, 96)
	binary.BigEndian.PutUint16(b[0:], typ)
	binary.BigEndian.PutUint32(b[4:], MagicCookie)
	copy(b[8:], tx[:])
	return b
}

// appendAttr appends an attribute with padding and fixes the header length.
func appendAttr(b []byte, typ uint16, v []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)-headerLen))
	return b
}

func appendFingerprint(b []byte) []byte {
	// The CRC covers the message with its length already counting the
	// fingerprint attribute (RFC 5389 §15.5).
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)-headerLen+8))
	crc := crc32.ChecksumIEEE(b) ^ fingerprintXOR
	return appendAttr(b, attrFingerprint, binary.BigEndian.AppendUint32(nil, crc))
}

func encodeAddr(ap netip.AddrPort) []byte {
	a := ap.Addr().Unmap()
	var v []byte
	if a.Is4() {
		v = []byte{0, familyIPv4}
	} else {
		v = []byte{0, familyIPv6}
	}
	v = binary.BigEndian.AppendUint16(v, ap.Port())
	return append(v, a.AsSlice()...)
}

// xorAddr turns a MAPPED-ADDRESS value into XOR-MAPPED-ADDRESS and back.
func xorAddr(v []byte, tx TxID) []byte {
	var key [16]byte
	binary.BigEndian.PutUint32(key[:], MagicCookie)
	copy(key[4:], tx[:])
	out := append([]byte(nil), v...)
	out[2] ^= key[0]
	out[3] ^= key[1]
	for i := 4; i < len(out) && i-4 < len(key); i++ { // decodeAddr rejects longer values
		out[i] ^= key[i-4]
	}
	return out
}

func decodeAddr(v []byte) (netip.AddrPort, error) {
	if len(v) < 4 {
		return netip.AddrPort{}, fmt.Errorf("address attribute of %d bytes", len(v))
	}
	port := binary.BigEndian.Uint16(v[2:])
	switch v[1] {
	case familyIPv4:
		if len(v) != 8 {
			return netip.AddrPort{}, fmt.Errorf("IPv4 address attribute of %d bytes, want 8", len(v))
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(v[4:8])), port), nil
	case familyIPv6:
		if len(v) != 20 {
			return netip.AddrPort{}, fmt.Errorf("IPv6 address attribute of %d bytes, want 20", len(v))
		}
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(v[4:20])), port), nil
	}
	return netip.AddrPort{}, fmt.Errorf("unknown address family 0x%02x", v[1])
}

// Parse parses and validates a STUN message. Every length is checked
// against the packet; a FINGERPRINT, if present, must be last and correct.
func Parse(b []byte) (Message, error) {
	var m Message
	if len(b) < headerLen {
		return m, fmt.Errorf("stun: %d bytes is shorter than a header", len(b))
	}
	if len(b) > maxMessageLen {
		return m, fmt.Errorf("stun: message of %d bytes is too long", len(b))
	}
	if b[0]&0xc0 != 0 {
		return m, errors.New("stun: top bits of the type are set (not STUN)")
	}
	if binary.BigEndian.Uint32(b[4:8]) != MagicCookie {
		return m, errors.New("stun: wrong magic cookie (not RFC 5389 STUN)")
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n%4 != 0 || headerLen+n != len(b) {
		return m, fmt.Errorf("stun: header says %d bytes of attributes, packet has %d", n, len(b)-headerLen)
	}
	m.Type = binary.BigEndian.Uint16(b[0:2])
	copy(m.TxID[:], b[8:20])
	for off := headerLen; off < len(b); {
		if len(b)-off < 4 {
			return m, fmt.Errorf("stun: truncated attribute header at byte %d", off)
		}
		typ := binary.BigEndian.Uint16(b[off:])
		l := int(binary.BigEndian.Uint16(b[off+2:]))
		start := off + 4
		end := start + l
		padded := start + (l+3)&^3
		if padded > len(b) {
			return m, fmt.Errorf("stun: attribute 0x%04x of %d bytes overruns the message", typ, l)
		}
		v := b[start:end]
		if m.HasFingerprint {
			return m, errors.New("stun: attribute after FINGERPRINT")
		}
		var err error
		switch typ {
		case attrXORMapped:
			var raw netip.AddrPort
			if len(v) >= 4 {
				raw, err = decodeAddr(xorAddr(v, m.TxID))
			} else {
				err = fmt.Errorf("address attribute of %d bytes", len(v))
			}
			m.XORMapped = raw
		case attrMappedAddress:
			m.Mapped, err = decodeAddr(v)
		case attrSoftware:
			if l > 763 { // RFC 5389 §15.10: fewer than 128 characters
				err = fmt.Errorf("SOFTWARE of %d bytes", l)
			}
			m.Software = string(v)
		case attrFingerprint:
			if l != 4 {
				err = fmt.Errorf("FINGERPRINT of %d bytes", l)
				break
			}
			want := crc32.ChecksumIEEE(b[:off]) ^ fingerprintXOR
			if binary.BigEndian.Uint32(v) != want {
				err = errors.New("FINGERPRINT does not match")
			}
			m.HasFingerprint = true
		}
		if err != nil {
			return m, fmt.Errorf("stun: attribute 0x%04x: %w", typ, err)
		}
		off = padded
	}
	return m, nil
}

// ParseBindingRequest returns the transaction ID of a Binding request.
func ParseBindingRequest(b []byte) (TxID, error) {
	m, err := Parse(b)
	if err != nil {
		return TxID{}, err
	}
	if m.Type != TypeBindingRequest {
		return TxID{}, fmt.Errorf("stun: message type 0x%04x is not a Binding request", m.Type)
	}
	return m.TxID, nil
}

// ParseResponse returns the transaction ID and mapped address of a
// Binding success response.
func ParseResponse(b []byte) (TxID, netip.AddrPort, error) {
	m, err := Parse(b)
	if err != nil {
		return TxID{}, netip.AddrPort{}, err
	}
	if m.Type != TypeBindingSuccess {
		return m.TxID, netip.AddrPort{}, fmt.Errorf("stun: message type 0x%04x is not a Binding success response", m.Type)
	}
	addr := m.Addr()
	if !addr.IsValid() {
		return m.TxID, netip.AddrPort{}, errors.New("stun: response without a mapped address")
	}
	return m.TxID, addr, nil
}
