package ipam

import (
	"net/netip"
	"testing"
)

func TestAddrs(t *testing.T) {
	ula := netip.MustParsePrefix("fd12:3456:789a::/48")
	for _, tc := range []struct {
		n      uint32
		v4, v6 string
		bad    bool
	}{
		{n: 1, v4: "100.64.0.1", v6: "fd12:3456:789a::1"},
		{n: 254, v4: "100.64.0.254", v6: "fd12:3456:789a::fe"},
		{n: 257, v4: "100.64.1.1", v6: "fd12:3456:789a::101"},
		{n: 0, bad: true},
		{n: 255, bad: true},
		{n: 256, bad: true},
		{n: MaxHost + 1, bad: true},
	} {
		v4, v6, err := Addrs(tc.n, ula)
		if tc.bad {
			if err == nil {
				t.Errorf("Addrs(%d) accepted", tc.n)
			}
			continue
		}
		if err != nil || v4.String() != tc.v4 || v6.String() != tc.v6 {
			t.Errorf("Addrs(%d) = %v %v %v, want %s %s", tc.n, v4, v6, err, tc.v4, tc.v6)
		}
		if !CGNAT.Contains(v4) {
			t.Errorf("%v outside %v", v4, CGNAT)
		}
	}
	if n, ok := Next(254); !ok || n != 257 {
		t.Errorf("Next(254) = %d %v, want 257", n, ok)
	}
	if _, ok := Next(MaxHost); ok {
		t.Error("Next(MaxHost) found a host")
	}
	u := NewULA()
	if u.Bits() != 48 || u.Addr().As16()[0] != 0xfd {
		t.Errorf("NewULA = %v", u)
	}
}
