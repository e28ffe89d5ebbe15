package disco

import (
	"bytes"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/derp/stun"
	"github.com/lanmesh/lanmesh/internal/key"
)

func sampleMessages() []Message {
	return []Message{
		&Ping{TxID: TxID{1, 2, 3}, NodeKey: key.NewNode().Public()},
		&Pong{TxID: TxID{9}, Src: netip.MustParseAddrPort("198.18.1.2:41641")},
		&Pong{TxID: TxID{8}, Src: netip.MustParseAddrPort("[2001:db8::1]:41641")},
		&Pong{TxID: TxID{7}}, // answered over the relay
		&CallMeMaybe{Endpoints: []netip.AddrPort{
			netip.MustParseAddrPort("198.18.0.5:1"), netip.MustParseAddrPort("[2001:db8::5]:65535")}},
		&CallMeMaybe{Endpoints: []netip.AddrPort{}},
		&Hold{Attempt: 3, RefusedAgo: 6 * time.Second, Duration: 35 * time.Second},
		&Hold{Attempt: 65535, Duration: MaxHold},
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	a, b := key.NewNode(), key.NewNode()
	for _, m := range sampleMessages() {
		pkt := Seal(a, b.Public(), m)
		if !Looks(pkt) {
			t.Fatalf("%T: sealed packet does not look like disco", m)
		}
		from, got, err := Open(b, pkt)
		if err != nil {
			t.Fatalf("%T: %v", m, err)
		}
		if from != a.Public() || !reflect.DeepEqual(got, m) {
			t.Fatalf("%T: got %+v from %v, want %+v", m, got, from, m)
		}
		// Sealed for b: nobody else opens it (wrong receiver).
		if _, _, err := Open(key.NewNode(), pkt); err == nil {
			t.Fatalf("%T: opened by a third node", m)
		}
		// Any flipped bit after the header breaks the box.
		bad := bytes.Clone(pkt)
		bad[len(bad)-1] ^= 1
		if _, _, err := Open(b, bad); err == nil {
			t.Fatalf("%T: tampered packet opened", m)
		}
	}
	if len(Seal(a, b.Public(), &CallMeMaybe{Endpoints: make64()})) > 1280 {
		t.Fatal("a full CallMeMaybe does not fit the IPv6 minimum MTU")
	}
}

func make64() []netip.AddrPort {
	var out []netip.AddrPort
	for i := range MaxEndpoints + 10 {
		out = append(out, netip.AddrPortFrom(netip.MustParseAddr("2001:db8::1"), uint16(i+1)))
	}
	return out
}

func TestCallMeMaybeCapped(t *testing.T) {
	p, err := Parse((&CallMeMaybe{Endpoints: make64()}).AppendMarshal(nil))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(p.(*CallMeMaybe).Endpoints); n != MaxEndpoints {
		t.Fatalf("marshalled %d endpoints, want the cap %d", n, MaxEndpoints)
	}
}

func TestLooksDemux(t *testing.T) {
	disco := Seal(key.NewNode(), key.NewNode().Public(), &Ping{NodeKey: key.NewNode().Public()})
	for _, tc := range []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"disco", disco, true},
		{"wireguard initiation", append([]byte{1, 0, 0, 0}, make([]byte, 144)...), false},
		{"wireguard transport", append([]byte{4, 0, 0, 0}, make([]byte, 60)...), false},
		{"stun", stun.BindingRequest(stun.NewTxID()), false},
		{"short magic", []byte(Magic), false},
		{"empty", nil, false},
	} {
		if got := Looks(tc.pkt); got != tc.want {
			t.Errorf("%s: Looks = %v, want %v", tc.name, got, tc.want)
		}
	}
	// The magic itself can never be mistaken for the other two protocols.
	m := []byte(Magic + strings.Repeat("\x00", 20))
	if m[0] >= 1 && m[0] <= 4 {
		t.Fatal("magic starts like WireGuard")
	}
	if stun.Is(m) {
		t.Fatal("magic parses as STUN")
	}
}

func TestParseErrors(t *testing.T) {
	ping := (&Ping{NodeKey: key.NewNode().Public()}).AppendMarshal(nil)
	pong := (&Pong{Src: netip.MustParseAddrPort("198.18.0.1:5")}).AppendMarshal(nil)
	cmm := (&CallMeMaybe{Endpoints: []netip.AddrPort{netip.MustParseAddrPort("198.18.0.1:5")}}).AppendMarshal(nil)
	badVer := append([]byte(nil), ping...)
	badVer[1] = 9
	zeroPort := append([]byte(nil), cmm...)
	zeroPort[len(zeroPort)-1], zeroPort[len(zeroPort)-2] = 0, 0
	multicast := (&Pong{}).AppendMarshal(nil)
	copy(multicast[2+12:], netip.MustParseAddr("ff02::1").AsSlice())
	multicast[len(multicast)-1] = 1
	tooMany := []byte{TypeCallMeMaybe, Version}
	for range MaxEndpoints + 1 {
		tooMany = appendAddr(tooMany, netip.MustParseAddrPort("198.18.0.1:5"))
	}
	hold := (&Hold{Duration: time.Minute}).AppendMarshal(nil)
	for _, tc := range []struct {
		name, want string
		p          []byte
	}{
		{"empty", "too short", nil},
		{"one byte", "too short", []byte{TypePing}},
		{"version", "version 9", badVer},
		{"unknown type", "unknown message type 0x7f", []byte{0x7f, Version}},
		{"ping short", "ping body of 43", ping[:len(ping)-1]},
		{"ping long", "ping body of 45", append(ping, 0)},
		{"ping zero key", "zero node key", append([]byte{TypePing, Version}, make([]byte, 44)...)},
		{"pong short", "pong body", pong[:10]},
		{"pong multicast", "unusable source", multicast},
		{"cmm ragged", "not a multiple", cmm[:len(cmm)-1]},
		{"cmm port 0", "not a usable address", zeroPort},
		{"cmm too many", "at most 64", tooMany},
		{"hold short", "hold body of 9", hold[:len(hold)-1]},
		{"hold refused long ago", "hold refused 11m0s ago", (&Hold{RefusedAgo: 11 * time.Minute, Duration: time.Minute}).AppendMarshal(nil)},
		{"hold zero", "hold of 0s", (&Hold{}).AppendMarshal(nil)},
		{"hold huge", "hold of 11m0s", (&Hold{Duration: 11 * time.Minute}).AppendMarshal(nil)},
	} {
		_, err := Parse(tc.p)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to mention %q", tc.name, err, tc.want)
		}
	}
}

func TestFrameErrors(t *testing.T) {
	priv := key.NewNode()
	for _, tc := range []struct {
		name, want string
		pkt        []byte
	}{
		{"bad magic", "bad magic", []byte("hello world")},
		{"short", "need at least", []byte(Magic + "x")},
		{"huge", "at most 1400", append([]byte(Magic), make([]byte, 2000)...)},
		{"garbage box", "does not open", append([]byte(Magic), make([]byte, 100)...)},
	} {
		_, _, err := Open(priv, tc.pkt)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// FuzzParse: the payload parser never panics, and what it accepts
// marshals back to the same bytes (no two encodings of one message).
func FuzzParse(f *testing.F) {
	for _, m := range sampleMessages() {
		f.Add(m.AppendMarshal(nil))
	}
	f.Add([]byte{})
	f.Add([]byte{TypeCallMeMaybe, Version, 1})
	f.Fuzz(func(t *testing.T, p []byte) {
		m, err := Parse(p)
		if err != nil {
			return
		}
		if again := m.AppendMarshal(nil); !bytes.Equal(again, p) {
			t.Fatalf("accepted %x but marshals as %x", p, again)
		}
	})
}

// FuzzOpen: framing and box opening never panic on arbitrary packets.
func FuzzOpen(f *testing.F) {
	priv := key.NewNode()
	f.Add(Seal(key.NewNode(), priv.Public(), &Ping{NodeKey: priv.Public()}))
	f.Add([]byte(Magic))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		Looks(pkt)
		Open(priv, pkt)
	})
}
