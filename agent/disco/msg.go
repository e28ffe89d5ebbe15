package disco

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
)

// Message types inside the sealed payload. The payload is
// [type][version][body]; bodies have exact sizes so the parser can reject
// anything else. An incompatible change bumps Version: old nodes then
// refuse the message with a clear error instead of misreading it.
const (
	TypePing        byte = 0x01
	TypePong        byte = 0x02
	TypeCallMeMaybe byte = 0x03
	TypeHold        byte = 0x04

	Version byte = 0

	// MaxEndpoints bounds a CallMeMaybe so a sealed packet stays under the
	// IPv6 minimum MTU (1280) and a peer cannot make us ping the world.
	MaxEndpoints = 64

	txIDLen       = 12
	addrLen       = 18 // 16-byte IP (IPv4 as ::ffff:a.b.c.d) + port
	pingBodyLen   = txIDLen + 32
	pongBodyLen   = txIDLen + addrLen
	holdBodyLen   = 2 + 4 + 4 // attempt, refused-ago and duration in ms
	payloadHdrLen = 2
)

// TxID identifies a ping and the pong that answers it.
type TxID [txIDLen]byte

// Message is one of *Ping, *Pong, *CallMeMaybe, *Hold.
type Message interface {
	// AppendMarshal appends the payload form (type, version, body) to b.
	AppendMarshal(b []byte) []byte
	typ() byte
}

// Ping asks the receiver for a Pong; NodeKey repeats the sender's key so
// the parsed message is self-describing (it must match the sealed header).
type Ping struct {
	TxID    TxID
	NodeKey key.NodePublic
}

// Pong answers a Ping. Src is where the ping came from as the responder
// saw it (our public address on that path); invalid when the ping came
// over the relay.
type Pong struct {
	TxID TxID
	Src  netip.AddrPort
}

// CallMeMaybe, sent over the relay, lists the sender's candidate
// endpoints so the receiver starts pinging them while the sender pings
// back: both NATs open a mapping at about the same time.
type CallMeMaybe struct {
	Endpoints []netip.AddrPort
}

// Hold, sent over the relay, asks the peer to stop pinging us for
// Duration, so that the conntrack entries the failed punching left in
// both NATs expire, and then to punch again in order: the side whose pings
// were refused by the other's NAT box waits for the other's CallMeMaybe.
// RefusedAgo is how long before sending our first refusal came (0: our
// pings were not refused). Attempt counts the holds for this pair, so both
// sides decide the same way. See agent/disco/hold.go.
type Hold struct {
	Attempt    uint16
	RefusedAgo time.Duration
	Duration   time.Duration
}

// Hold durations outside these bounds are refused by the parser.
const (
	MinHold = time.Second
	MaxHold = 10 * time.Minute
)

func (*Hold) typ() byte { return TypeHold }

func (m *Hold) AppendMarshal(b []byte) []byte {
	b = append(b, TypeHold, Version)
	b = binary.BigEndian.AppendUint16(b, m.Attempt)
	b = binary.BigEndian.AppendUint32(b, uint32(m.RefusedAgo.Milliseconds()))
	return binary.BigEndian.AppendUint32(b, uint32(m.Duration.Milliseconds()))
}

func (*Ping) typ() byte        { return TypePing }
func (*Pong) typ() byte        { return TypePong }
func (*CallMeMaybe) typ() byte { return TypeCallMeMaybe }

func (m *Ping) AppendMarshal(b []byte) []byte {
	b = append(b, TypePing, Version)
	b = append(b, m.TxID[:]...)
	return append(b, m.NodeKey[:]...)
}

func (m *Pong) AppendMarshal(b []byte) []byte {
	b = append(b, TypePong, Version)
	b = append(b, m.TxID[:]...)
	return appendAddr(b, m.Src)
}

// AppendMarshal writes at most MaxEndpoints endpoints; invalid ones are
// skipped (the parser would reject them).
func (m *CallMeMaybe) AppendMarshal(b []byte) []byte {
	b = append(b, TypeCallMeMaybe, Version)
	n := 0
	for _, ep := range m.Endpoints {
		if n == MaxEndpoints {
			break
		}
		if validEndpoint(ep) {
			b = appendAddr(b, ep)
			n++
		}
	}
	return b
}

func appendAddr(b []byte, ap netip.AddrPort) []byte {
	var ip [16]byte
	if ap.IsValid() {
		ip = ap.Addr().As16() // IPv4 becomes ::ffff:a.b.c.d
	}
	b = append(b, ip[:]...)
	return binary.BigEndian.AppendUint16(b, ap.Port())
}

// parseAddr decodes appendAddr's form; all zero bytes mean "none". Any
// other encoding of an unusable address comes back as one, for the
// caller's validEndpoint check to refuse.
func parseAddr(b []byte) netip.AddrPort {
	if [addrLen]byte(b[:addrLen]) == [addrLen]byte{} {
		return netip.AddrPort{}
	}
	a := netip.AddrFrom16([16]byte(b[:16])).Unmap()
	return netip.AddrPortFrom(a, binary.BigEndian.Uint16(b[16:18]))
}

func validEndpoint(ap netip.AddrPort) bool {
	a := ap.Addr()
	return ap.IsValid() && ap.Port() != 0 && !a.IsUnspecified() && !a.IsMulticast() && a.Zone() == ""
}

var errShort = errors.New("disco: message too short")

// Parse decodes a payload (what Open returns). It never panics and names
// what is wrong with a bad payload.
func Parse(p []byte) (Message, error) {
	if len(p) < payloadHdrLen {
		return nil, fmt.Errorf("%w: %d bytes, need at least %d", errShort, len(p), payloadHdrLen)
	}
	typ, ver, body := p[0], p[1], p[2:]
	if ver != Version {
		return nil, fmt.Errorf("disco: message version %d, this node speaks %d", ver, Version)
	}
	switch typ {
	case TypePing:
		if len(body) != pingBodyLen {
			return nil, fmt.Errorf("disco: ping body of %d bytes, want %d", len(body), pingBodyLen)
		}
		m := &Ping{TxID: TxID(body[:txIDLen]), NodeKey: key.NodePublic(body[txIDLen:])}
		if m.NodeKey.IsZero() {
			return nil, errors.New("disco: ping with a zero node key")
		}
		return m, nil
	case TypePong:
		if len(body) != pongBodyLen {
			return nil, fmt.Errorf("disco: pong body of %d bytes, want %d", len(body), pongBodyLen)
		}
		m := &Pong{TxID: TxID(body[:txIDLen]), Src: parseAddr(body[txIDLen:])}
		if m.Src.IsValid() && !validEndpoint(m.Src) {
			return nil, fmt.Errorf("disco: pong with an unusable source address %s", m.Src)
		}
		return m, nil
	case TypeCallMeMaybe:
		if len(body)%addrLen != 0 {
			return nil, fmt.Errorf("disco: call-me-maybe body of %d bytes is not a multiple of %d", len(body), addrLen)
		}
		n := len(body) / addrLen
		if n > MaxEndpoints {
			return nil, fmt.Errorf("disco: call-me-maybe with %d endpoints, at most %d allowed", n, MaxEndpoints)
		}
		m := &CallMeMaybe{Endpoints: make([]netip.AddrPort, 0, n)}
		for i := range n {
			ep := parseAddr(body[i*addrLen:])
			if !validEndpoint(ep) {
				return nil, fmt.Errorf("disco: call-me-maybe endpoint %d (%s) is not a usable address", i, ep)
			}
			m.Endpoints = append(m.Endpoints, ep)
		}
		return m, nil
	case TypeHold:
		if len(body) != holdBodyLen {
			return nil, fmt.Errorf("disco: hold body of %d bytes, want %d", len(body), holdBodyLen)
		}
		ago := time.Duration(binary.BigEndian.Uint32(body[2:])) * time.Millisecond
		if ago > MaxHold {
			return nil, fmt.Errorf("disco: hold refused %v ago, at most %v", ago, MaxHold)
		}
		d := time.Duration(binary.BigEndian.Uint32(body[6:])) * time.Millisecond
		if d < MinHold || d > MaxHold {
			return nil, fmt.Errorf("disco: hold of %v, want %v to %v", d, MinHold, MaxHold)
		}
		return &Hold{Attempt: binary.BigEndian.Uint16(body), RefusedAgo: ago, Duration: d}, nil
	default:
		return nil, fmt.Errorf("disco: unknown message type 0x%02x", typ)
	}
}
