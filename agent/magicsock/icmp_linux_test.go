package magicsock

import (
	"net/netip"
	"testing"
)

func TestRefusedUDP(t *testing.T) {
	// ICMP port unreachable quoting 198.19.101.2:41641 -> 198.18.2.2:41641.
	quote := func(typ, code, proto byte, sport uint16) []byte {
		b := []byte{typ, code, 0, 0, 0, 0, 0, 0,
			0x45, 0, 0, 60, 0, 0, 0, 0, 64, proto, 0, 0, 198, 19, 101, 2, 198, 18, 2, 2,
			byte(sport >> 8), byte(sport), 0xa2, 0xa9, 0, 40, 0, 0}
		return b
	}
	want := netip.MustParseAddrPort("198.18.2.2:41641")
	for _, c := range []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"port unreachable", quote(3, 3, 17, 41641), true},
		{"other port", quote(3, 3, 17, 1234), false},
		{"host unreachable", quote(3, 1, 17, 41641), false},
		{"echo reply", quote(0, 0, 17, 41641), false},
		{"tcp", quote(3, 3, 6, 41641), false},
		{"short", quote(3, 3, 17, 41641)[:30], false},
		{"empty", nil, false},
	} {
		got, ok := refusedUDP(c.b, 41641)
		if ok != c.ok || (ok && got != want) {
			t.Errorf("%s: %v %v, want ok=%v", c.name, got, ok, c.ok)
		}
	}
}

// FuzzRefusedUDP: the ICMP parser never panics on what the wire brings.
func FuzzRefusedUDP(f *testing.F) {
	f.Add([]byte{3, 3, 0, 0, 0, 0, 0, 0, 0x45})
	f.Fuzz(func(t *testing.T, b []byte) { refusedUDP(b, 41641) })
}
