package engine

import (
	"testing"

	"github.com/lanmesh/lanmesh/internal/key"
)

// An exit node advertises 0.0.0.0/0 and ::/0 besides its LAN. Its peers'
// mesh addresses and subnet routes lie inside those default routes and
// must all stay: a default route is the internet, not a LAN a peer could
// steal. Its own LAN stays protected.
func TestValidateExitNodeKeepsPeers(t *testing.T) {
	cfg := Config{
		PrivateKey:       key.NewNode(),
		Addresses:        pfx("100.64.0.2/32", "fd7a:115c:a1e0::2/128"),
		AdvertisedRoutes: pfx("198.19.2.0/24", "0.0.0.0/0", "::/0"),
		Routes:           pfx("100.64.0.0/10"),
		Peers: []Peer{
			{Key: key.NewNode().Public(), Name: "router-a", AllowedIPs: pfx("100.64.0.1/32", "fd7a:115c:a1e0::1/128", "198.19.1.0/24")},
			{Key: key.NewNode().Public(), Name: "laptop", AllowedIPs: pfx("100.64.0.3/32")},
			{Key: key.NewNode().Public(), Name: "thief", AllowedIPs: pfx("100.64.0.4/32", "198.19.2.0/25")},
		},
	}
	out, rej, err := ValidateConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Peers) != 2 || out.Peers[0].Name != "router-a" || out.Peers[1].Name != "laptop" {
		t.Fatalf("applied %+v, rejected %+v; want router-a and laptop applied", out.Peers, rej)
	}
	if len(rej) != 1 || rej[0].Name != "thief" {
		t.Fatalf("rejected %+v, want only the peer claiming part of the advertised LAN", rej)
	}
}
