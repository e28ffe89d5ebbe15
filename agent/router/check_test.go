package router

import (
	"net/netip"
	"testing"
)

// S17: mesh routes never reach loopback or link-local targets.
func TestCheckRoute(t *testing.T) {
	tests := []struct {
		prefix       string
		allowDefault bool
		ok           bool
	}{
		{"100.64.0.0/10", false, true},
		{"198.18.5.0/24", false, true},
		{"fd7a:115c:a1e0::/48", false, true},
		{"127.0.0.0/8", false, false},
		{"127.0.0.1/32", false, false},
		{"0.0.0.0/1", false, false}, // covers 127/8
		{"169.254.169.254/32", false, false},
		{"169.254.0.0/15", false, false},
		{"::1/128", false, false},
		{"fe80::/64", false, false},
		{"0.0.0.0/0", false, false},
		{"::/0", false, false},
		{"0.0.0.0/0", true, true},
		{"::ffff:198.18.0.0/112", false, false},
	}
	for _, tt := range tests {
		err := CheckRoute(netip.MustParsePrefix(tt.prefix), tt.allowDefault)
		if (err == nil) != tt.ok {
			t.Errorf("CheckRoute(%s, %v) = %v, want ok=%v", tt.prefix, tt.allowDefault, err, tt.ok)
		}
	}
	if CheckRoute(netip.Prefix{}, false) == nil {
		t.Error("invalid prefix accepted")
	}
}
