package engine

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/lanmesh/lanmesh/internal/key"
)

func pfx(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range s {
		out = append(out, netip.MustParsePrefix(x))
	}
	return out
}

// S19: a netmap carrying one invalid peer (a duplicate node key, an
// unroutable prefix, ...) leaves out exactly that peer, with a reason;
// every other peer and route is applied.
func TestValidatePeersLeavesOutOnlyBadPeers(t *testing.T) {
	self := key.NewNode()
	good1, good2, good3, exit := key.NewNode().Public(), key.NewNode().Public(), key.NewNode().Public(), key.NewNode().Public()
	base := Config{
		PrivateKey:       self,
		Addresses:        pfx("100.64.0.1/32", "fd7a:115c:a1e0::1/128"),
		AdvertisedRoutes: pfx("192.168.1.0/24"),
		Routes:           pfx("100.64.0.0/10", "10.9.0.0/16", "fe80::/64"),
	}
	cases := []struct {
		name   string
		bad    Peer
		exit   []netip.Prefix
		reason string // substring; "" means the peer is valid
	}{
		{"duplicate key", Peer{Key: good1, Name: "dup", AllowedIPs: pfx("100.64.0.9/32")}, nil, "already used by peer \"a\""},
		{"own key", Peer{Key: self.Public(), Name: "me", AllowedIPs: pfx("100.64.0.9/32")}, nil, "own node key"},
		{"zero key", Peer{Name: "zero", AllowedIPs: pfx("100.64.0.9/32")}, nil, "no node key"},
		{"loopback", Peer{Key: exit, Name: "lo", AllowedIPs: pfx("100.64.0.9/32", "127.0.0.0/8")}, nil, "host-scoped"},
		{"metadata", Peer{Key: exit, Name: "md", AllowedIPs: pfx("169.254.169.254/32")}, nil, "host-scoped"},
		{"default route, not exit node", Peer{Key: exit, Name: "x", AllowedIPs: pfx("100.64.0.9/32", "0.0.0.0/0")}, nil, "default route"},
		{"default route of another exit node", Peer{Key: exit, Name: "x", AllowedIPs: pfx("100.64.0.9/32", "0.0.0.0/0")}, pfx("0.0.0.0/0"), "already belongs to peer \"c\""},
		{"default route, chosen exit node", Peer{Key: exit, Name: "x", AllowedIPs: pfx("100.64.0.9/32", "0.0.0.0/0", "::/0")}, pfx("0.0.0.0/0", "::/0"), ""},
		{"own address", Peer{Key: exit, Name: "x", AllowedIPs: pfx("100.64.0.1/32")}, nil, "own address"},
		{"covers own address", Peer{Key: exit, Name: "x", AllowedIPs: pfx("100.64.0.0/10")}, nil, "own address"},
		{"inside own LAN", Peer{Key: exit, Name: "x", AllowedIPs: pfx("192.168.1.128/25")}, nil, "inside 192.168.1.0/24"},
		{"own LAN itself", Peer{Key: exit, Name: "x", AllowedIPs: pfx("192.168.1.0/24")}, nil, "inside 192.168.1.0/24"},
		{"around own LAN", Peer{Key: exit, Name: "x", AllowedIPs: pfx("100.64.0.9/32", "192.168.0.0/16")}, nil, ""},
		{"stolen address", Peer{Key: exit, Name: "x", AllowedIPs: pfx("100.64.0.2/32")}, nil, "already belongs to peer \"a\""},
		{"multicast", Peer{Key: exit, Name: "x", AllowedIPs: pfx("224.0.0.0/8")}, nil, "multicast"},
		{"invalid prefix", Peer{Key: exit, Name: "x", AllowedIPs: []netip.Prefix{{}}}, nil, "invalid prefix"},
		{"mapped", Peer{Key: exit, Name: "x", AllowedIPs: pfx("::ffff:10.0.0.0/104")}, nil, "IPv4-mapped"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			cfg.ExitRoutes = tc.exit
			cfg.Peers = []Peer{
				{Key: good1, Name: "a", AllowedIPs: pfx("100.64.0.2/32", "10.9.0.0/16")},
				tc.bad,
				{Key: good2, Name: "b", AllowedIPs: pfx("100.64.0.3/32")},
			}
			if strings.Contains(tc.name, "another") {
				cfg.Peers = slices.Insert(cfg.Peers, 1, Peer{Key: good3, Name: "c", AllowedIPs: pfx("100.64.0.4/32", "0.0.0.0/0")})
			}
			out, rej, err := ValidateConfig(cfg)
			if err == nil || !strings.Contains(err.Error(), "fe80::/64") {
				t.Fatalf("the link-local route must be left out with an error naming it, got %v", err)
			}
			if want := pfx("100.64.0.0/10", "10.9.0.0/16"); !slices.Equal(out.Routes, want) {
				t.Errorf("routes %v, want %v", out.Routes, want)
			}
			var names []string
			for _, p := range out.Peers {
				names = append(names, p.Name)
			}
			if tc.reason == "" {
				if len(rej) != 0 || !slices.Contains(names, tc.bad.Name) {
					t.Fatalf("valid peer left out: %v (applied %v)", rej, names)
				}
				return
			}
			if len(rej) != 1 || rej[0].Name != tc.bad.Name || rej[0].Key != tc.bad.Key || !strings.Contains(rej[0].Reason, tc.reason) {
				t.Fatalf("rejected %+v, want only %q because %q", rej, tc.bad.Name, tc.reason)
			}
			want := []string{"a", "b"}
			if strings.Contains(tc.name, "another") {
				want = []string{"a", "c", "b"}
			}
			if !slices.Equal(names, want) {
				t.Errorf("applied peers %v, want %v", names, want)
			}
		})
	}
}

// Routes that only a left-out peer claimed go with it; routes a valid
// peer holds stay.
func TestSanitizeDropsRoutesOfLeftOutPeers(t *testing.T) {
	a, b := key.NewNode().Public(), key.NewNode().Public()
	cfg := Config{
		PrivateKey: key.NewNode(),
		Addresses:  pfx("100.64.0.1/32"),
		Routes:     pfx("100.64.0.0/10", "10.1.0.0/16", "10.2.0.0/16"),
		Peers: []Peer{
			{Key: a, Name: "a", AllowedIPs: pfx("100.64.0.2/32", "10.1.0.0/16")},
			{Key: a, Name: "dup", AllowedIPs: pfx("100.64.0.3/32", "10.2.0.0/16")},
			{Key: b, Name: "b", AllowedIPs: pfx("100.64.0.4/32")},
		},
	}
	out, rej, err := ValidateConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rej) != 1 || rej[0].Name != "dup" {
		t.Fatalf("rejected %+v, want dup", rej)
	}
	if want := pfx("100.64.0.0/10", "10.1.0.0/16"); !slices.Equal(out.Routes, want) {
		t.Errorf("routes %v, want %v", out.Routes, want)
	}
}

func TestDiffPeers(t *testing.T) {
	self := key.NewNode()
	sp := self.Public()
	a, b, c := key.NewNode().Public(), key.NewNode().Public(), key.NewNode().Public()
	have := map[key.NodePublic]Peer{
		a: {Key: a, AllowedIPs: pfx("100.64.0.2/32")},
		b: {Key: b, AllowedIPs: pfx("100.64.0.3/32")},
	}
	want := []Peer{
		{Key: a, AllowedIPs: pfx("100.64.0.2/32")},               // unchanged
		{Key: c, AllowedIPs: pfx("100.64.0.4/32", "10.0.0.0/8")}, // new
	}
	got := diffPeers(sp, have, want, false)
	if len(got) != 2 || got[0].Op != PeerRemove || got[0].Key != b || got[1].Op != PeerAdd || got[1].Key != c {
		t.Fatalf("diff %+v: want remove b, add c", got)
	}
	if !slices.Equal(got[1].AllowedIPs, want[1].AllowedIPs) || got[1].Keepalive != keepaliveFor(sp, c) {
		t.Errorf("add c: %+v", got[1])
	}
	// New allowed IPs: an update with the complete set.
	want[0].AllowedIPs = pfx("100.64.0.2/32", "10.5.0.0/16")
	got = diffPeers(sp, have, want[:1], false)
	if len(got) != 2 || got[1].Op != PeerUpdate || !slices.Equal(got[1].AllowedIPs, want[0].AllowedIPs) {
		t.Fatalf("diff %+v: want remove b, update a", got)
	}
	// A new private key updates every kept peer (who initiates may flip).
	got = diffPeers(sp, map[key.NodePublic]Peer{a: want[0]}, want[:1], true)
	if len(got) != 1 || got[0].Op != PeerUpdate {
		t.Fatalf("diff after key change %+v: want update a", got)
	}
	if got := diffPeers(sp, map[key.NodePublic]Peer{a: want[0]}, want[:1], false); len(got) != 0 {
		t.Errorf("equal: %+v, want no changes", got)
	}
}

func TestChangesUAPI(t *testing.T) {
	k := key.NewNode()
	a, b, c := key.NewNode().Public(), key.NewNode().Public(), key.NewNode().Public()
	s := changesUAPI(DeviceChanges{PrivateKey: k, ReplacePeers: true, Peers: []PeerChange{
		{Op: PeerRemove, Key: a},
		{Op: PeerAdd, Key: b, AllowedIPs: pfx("100.64.0.3/32"), Keepalive: 25},
		{Op: PeerUpdate, Key: c, AllowedIPs: pfx("10.0.0.0/8"), Endpoint: netip.MustParseAddrPort("198.18.0.1:41641")},
	}})
	want := "private_key=" + k.Hex() + "\nreplace_peers=true\n" +
		"public_key=" + a.Hex() + "\nremove=true\n" +
		"public_key=" + b.Hex() + "\nreplace_allowed_ips=true\nallowed_ip=100.64.0.3/32\nendpoint=" + b.Hex() + "\npersistent_keepalive_interval=25\n" +
		"public_key=" + c.Hex() + "\nreplace_allowed_ips=true\nallowed_ip=10.0.0.0/8\nendpoint=198.18.0.1:41641\npersistent_keepalive_interval=0\n"
	if s != want {
		t.Errorf("uapi:\n%s\nwant:\n%s", s, want)
	}
	if changesUAPI(DeviceChanges{}) != "" {
		t.Error("empty changes must be empty text")
	}
}
