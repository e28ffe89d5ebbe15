package policy

import (
	"net/netip"
	"os"
	"testing"
)

func pfx(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// homeLabNodes is the mesh of testdata/homelab.hujson.
func homeLabNodes() []Node {
	return []Node{
		{ID: 1, Owner: "dad@home.example", Tags: []string{"tag:router"}, Addresses: pfx("100.64.0.1/32", "fd7a:115c:a1e0::1/128"),
			AdvertisedRoutes: pfx("198.19.1.0/24", "0.0.0.0/0")},
		{ID: 2, Owner: "mom@home.example", Tags: []string{"tag:router"}, Addresses: pfx("100.64.0.2/32"),
			AdvertisedRoutes: pfx("198.19.2.0/24")},
		{ID: 3, User: "dad@home.example", Addresses: pfx("100.64.0.3/32")},
		{ID: 4, User: "mom@home.example", Addresses: pfx("100.64.0.4/32")},
		{ID: 5, User: "kid@home.example", Addresses: pfx("100.64.0.5/32")},
		{ID: 6, User: "kid@home.example", Addresses: pfx("100.64.0.6/32")},
		{ID: 7, User: "guest@friend.example", Addresses: pfx("100.64.0.7/32")},
		{ID: 8, Owner: "dad@home.example", Tags: []string{"tag:iot"}, Addresses: pfx("100.64.0.8/32")},
		{ID: 9, Owner: "dad@home.example", Tags: []string{"tag:nas"}, Addresses: pfx("100.64.0.9/32")},
	}
}

func loadHomeLab(t testing.TB) *Policy {
	t.Helper()
	b, err := os.ReadFile("testdata/homelab.hujson")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse("homelab.hujson", b)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHomeLabPassesItsTests(t *testing.T) {
	p := loadHomeLab(t)
	if err := Check(p, homeLabNodes()); err != nil {
		t.Fatal(err)
	}
}
