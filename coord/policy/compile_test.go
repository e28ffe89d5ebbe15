package policy

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/lanmesh/lanmesh/internal/wire"
)

func mustParse(t testing.TB, s string) *Policy {
	t.Helper()
	p, err := Parse("test.hujson", []byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustCompile(t testing.TB, p *Policy, nodes []Node) *Compiled {
	t.Helper()
	c, err := Compile(p, nodes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// flow is one packet to judge against compiled filters.
type flow struct {
	src, dst string
	proto    uint8
	port     uint16
	want     bool
}

func checkFlows(t *testing.T, c *Compiled, flows []flow) {
	t.Helper()
	for _, f := range flows {
		got, why := c.admits(netip.MustParseAddr(f.src), netip.MustParseAddr(f.dst), f.proto, f.port)
		if got != f.want {
			t.Errorf("%s -> %s proto %d port %d: admitted=%v%s, want %v", f.src, f.dst, f.proto, f.port, got, why, f.want)
		}
	}
}

// A small mesh: alice's laptop, bob's laptop, a router tagged by alice
// serving 198.19.1.0/24 and offering an exit, a second router serving
// 198.19.2.0/24.
func meshNodes() []Node {
	return []Node{
		{ID: 1, User: "alice@example.com", Addresses: pfx("100.64.0.1/32", "fd7a::1/128")},
		{ID: 2, User: "bob@example.com", Addresses: pfx("100.64.0.2/32")},
		{ID: 3, Owner: "alice@example.com", Tags: []string{"tag:router"}, Addresses: pfx("100.64.0.3/32"),
			ApprovedRoutes: pfx("198.19.1.0/24", "0.0.0.0/0"), AdvertisedRoutes: pfx("198.19.1.0/24", "0.0.0.0/0")},
		{ID: 4, Owner: "bob@example.com", Tags: []string{"tag:router"}, Addresses: pfx("100.64.0.4/32"),
			ApprovedRoutes: pfx("198.19.2.0/24"), AdvertisedRoutes: pfx("198.19.2.0/24", "198.19.99.0/24")},
	}
}

const owners = `"tagOwners": {"tag:router": ["alice@example.com"]}, "hosts": {"lan1": "198.19.1.0/24", "printer": "198.19.1.20", "lan2": "198.19.2.0/24"}`

// S2: "*" as a source is mesh nodes and approved routes, never the world.
func TestS2StarSourceIsMeshOnly(t *testing.T) {
	p := mustParse(t, `{`+owners+`, "acls": [{"action": "accept", "src": ["*"], "dst": ["bob@example.com:*"]}]}`)
	c := mustCompile(t, p, meshNodes())
	r, _ := c.Node(2)
	if len(r.Filter.Inbound) != 1 {
		t.Fatalf("inbound %+v", r.Filter.Inbound)
	}
	src := r.Filter.Inbound[0].Src
	for _, bad := range pfx("0.0.0.0/0", "::/0") {
		if slices.Contains(src, bad) {
			t.Errorf("* expanded to %v", bad)
		}
	}
	checkFlows(t, c, []flow{
		{"100.64.0.1", "100.64.0.2", wire.ProtoTCP, 22, true},
		{"198.19.1.7", "100.64.0.2", wire.ProtoTCP, 22, true},   // approved route
		{"198.19.99.7", "100.64.0.2", wire.ProtoTCP, 22, false}, // advertised, not approved
		{"198.18.0.9", "100.64.0.2", wire.ProtoTCP, 22, false},  // internet, even via the exit node
	})
	for _, a := range []string{"198.18.0.9", "8.8.8.8", "198.19.99.7", "10.0.0.1"} {
		if wire.MatchAny(r.Filter.Inbound, netip.MustParseAddr(a), netip.MustParseAddr("100.64.0.2"), wire.ProtoTCP, 22) {
			t.Errorf("bob's filter admits %s", a)
		}
	}
}

// S3: the protocol of a rule is enforced.
func TestS3ProtocolEnforced(t *testing.T) {
	p := mustParse(t, `{`+owners+`, "acls": [
		{"action": "accept", "src": ["alice@example.com"], "dst": ["bob@example.com:53"], "proto": "udp"},
		{"action": "accept", "src": ["alice@example.com"], "dst": ["tag:router:*"], "proto": "icmp"},
		{"action": "accept", "src": ["bob@example.com"], "dst": ["alice@example.com:22"]},
	]}`)
	c := mustCompile(t, p, meshNodes())
	checkFlows(t, c, []flow{
		{"100.64.0.1", "100.64.0.2", wire.ProtoUDP, 53, true},
		{"100.64.0.1", "100.64.0.2", wire.ProtoTCP, 53, false},
		{"100.64.0.1", "100.64.0.2", wire.ProtoUDP, 54, false},
		{"100.64.0.1", "100.64.0.2", wire.ProtoICMP, 0, false},
		{"100.64.0.1", "100.64.0.3", wire.ProtoICMP, 0, true},
		{"100.64.0.1", "100.64.0.3", wire.ProtoICMPv6, 0, true},
		{"100.64.0.1", "100.64.0.3", wire.ProtoTCP, 22, false},
		{"100.64.0.1", "100.64.0.3", wire.ProtoUDP, 22, false},
		// No proto: TCP, UDP and ICMP, as in Tailscale; nothing else.
		{"100.64.0.2", "100.64.0.1", wire.ProtoTCP, 22, true},
		{"100.64.0.2", "100.64.0.1", wire.ProtoUDP, 22, true},
		{"100.64.0.2", "100.64.0.1", wire.ProtoICMP, 0, true},
		{"100.64.0.2", "100.64.0.1", wire.ProtoTCP, 23, false},
		{"100.64.0.2", "100.64.0.1", wire.ProtoGRE, 0, false},
		{"100.64.0.2", "100.64.0.1", wire.ProtoSCTP, 22, false},
	})
}

// S1: LAN hosts behind a router get nothing from the router's identity;
// a LAN is a source only where the policy names it.
func TestS1LANHostsDoNotInheritRouterRights(t *testing.T) {
	tests := []struct {
		name    string
		acls    string
		flows   []flow
		forward int // rules in router 3's Forward filter
	}{
		{"router identity grants LAN nothing",
			`{"action": "accept", "src": ["tag:router", "alice@example.com"], "dst": ["*:*"]}`,
			[]flow{
				{"100.64.0.3", "100.64.0.2", wire.ProtoTCP, 22, true},  // the router itself
				{"198.19.1.7", "100.64.0.2", wire.ProtoTCP, 22, false}, // a host on its LAN
				{"198.19.1.7", "198.19.2.5", wire.ProtoTCP, 22, false}, // ... to another LAN
				{"100.64.0.1", "198.19.2.5", wire.ProtoTCP, 22, true},
			}, 0},
		{"named LAN is a source",
			`{"action": "accept", "src": ["lan1"], "dst": ["lan2:22"]}`,
			[]flow{
				{"198.19.1.7", "198.19.2.5", wire.ProtoTCP, 22, true},
				{"198.19.1.7", "198.19.2.5", wire.ProtoTCP, 80, false},
				{"198.19.1.7", "100.64.0.2", wire.ProtoTCP, 22, false},
				{"198.19.2.5", "198.19.1.7", wire.ProtoTCP, 22, false},
			}, 1},
		{"named host only",
			`{"action": "accept", "src": ["printer"], "dst": ["bob@example.com:*"]}`,
			[]flow{
				{"198.19.1.20", "100.64.0.2", wire.ProtoTCP, 631, true},
				{"198.19.1.21", "100.64.0.2", wire.ProtoTCP, 631, false},
			}, 1},
		{"covering prefix selects the approved route",
			`{"action": "accept", "src": ["198.19.0.0/16"], "dst": ["bob@example.com:*"]}`,
			[]flow{
				{"198.19.1.7", "100.64.0.2", wire.ProtoTCP, 1, true},
				{"198.19.2.7", "100.64.0.2", wire.ProtoTCP, 1, true},
				{"198.19.99.7", "100.64.0.2", wire.ProtoTCP, 1, false}, // not approved: not routed
			}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, `{`+owners+`, "acls": [`+tt.acls+`]}`)
			c := mustCompile(t, p, meshNodes())
			checkFlows(t, c, tt.flows)
			r, _ := c.Node(3)
			if len(r.Filter.Forward) != tt.forward {
				t.Errorf("router forward filter %+v, want %d rules", r.Filter.Forward, tt.forward)
			}
			for _, fr := range r.Filter.Forward {
				for _, s := range fr.Src {
					if !pfx("198.19.1.0/24")[0].Overlaps(s) || s.Bits() < 24 {
						t.Errorf("forward src %v outside the router's LAN", s)
					}
				}
			}
		})
	}
}

// S4: a node's peers are exactly the nodes it may talk to, in either
// direction, and its routes are only approved ones.
func TestS4PeersOnlyWhatPolicyAllows(t *testing.T) {
	nodes := append(meshNodes(), Node{ID: 5, User: "guest@example.org", Addresses: pfx("100.64.0.5/32")})
	p := mustParse(t, `{`+owners+`, "acls": [
		{"action": "accept", "src": ["alice@example.com"], "dst": ["bob@example.com:22"]},
		{"action": "accept", "src": ["lan2"], "dst": ["printer:631"]},
	]}`)
	c := mustCompile(t, p, nodes)
	want := map[wire.NodeID][]wire.NodeID{
		1: {2}, // alice may send to bob
		2: {1}, // bob may receive from alice: one direction is enough
		3: {4}, // router 3 holds the printer; router 4's LAN may reach it
		4: {3}, // router 4 forwards its LAN to router 3
		5: {},  // the guest is in no rule
	}
	for id, w := range want {
		r, _ := c.Node(id)
		if got := r.Peers(); !slices.Equal(got, w) && !(len(got) == 0 && len(w) == 0) {
			t.Errorf("node %d peers %v, want %v", id, got, w)
		}
		for _, other := range c.Nodes() {
			if r.HasPeer(other) != slices.Contains(w, other) {
				t.Errorf("node %d HasPeer(%d) = %v", id, other, r.HasPeer(other))
			}
		}
	}
	r, _ := c.Node(4)
	if !slices.Equal(r.Routes, pfx("198.19.2.0/24")) {
		t.Errorf("node 4 routes %v, want only the approved one", r.Routes)
	}
}

// S17: routes never carry traffic to loopback or link-local unless the
// policy names them.
func TestS17HostScopedNotReachableViaRoutes(t *testing.T) {
	nodes := meshNodes()
	nodes[3].ApprovedRoutes = append(nodes[3].ApprovedRoutes, pfx("169.254.0.0/16", "127.0.0.0/8")...)
	tests := []struct {
		name  string
		acls  string
		flows []flow
	}{
		{"everything via exit and subnets",
			`{"action": "accept", "src": ["alice@example.com"], "dst": ["0.0.0.0/0:*", "*:*", "autogroup:internet:*"]}`,
			[]flow{
				{"100.64.0.1", "198.18.0.9", wire.ProtoTCP, 80, true}, // the internet via the exit node
				{"100.64.0.1", "198.19.2.5", wire.ProtoTCP, 80, true},
				{"100.64.0.1", "127.0.0.1", wire.ProtoTCP, 80, false},
				{"100.64.0.1", "169.254.169.254", wire.ProtoTCP, 80, false},
				{"100.64.0.1", "169.254.1.1", wire.ProtoTCP, 80, false},
			}},
		{"named explicitly",
			`{"action": "accept", "src": ["alice@example.com"], "dst": ["169.254.169.254:80"]}`,
			[]flow{
				{"100.64.0.1", "169.254.169.254", wire.ProtoTCP, 80, true},
				{"100.64.0.1", "169.254.169.253", wire.ProtoTCP, 80, false},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustCompile(t, mustParse(t, `{`+owners+`, "acls": [`+tt.acls+`]}`), nodes)
			checkFlows(t, c, tt.flows)
		})
	}
	c := mustCompile(t, mustParse(t, `{`+owners+`, "acls": [{"action": "accept", "src": ["*"], "dst": ["0.0.0.0/0:*", "::/0:*", "*:*"]}]}`), nodes)
	for _, id := range c.Nodes() {
		r, _ := c.Node(id)
		for _, fr := range append(r.Filter.Inbound, r.Filter.Forward...) {
			for _, d := range fr.Dst {
				for _, h := range hostScoped {
					if d.Overlaps(h) {
						t.Errorf("node %d filter reaches %v (host-scoped %v)", id, d, h)
					}
				}
			}
		}
	}
}

func TestDefaultPolicy(t *testing.T) {
	nodes := append(meshNodes(), Node{ID: 5, User: "alice@example.com", Addresses: pfx("100.64.0.5/32")})
	c := mustCompile(t, nil, nodes)
	checkFlows(t, c, []flow{
		{"100.64.0.1", "100.64.0.5", wire.ProtoTCP, 22, true},  // alice's devices
		{"100.64.0.1", "100.64.0.3", wire.ProtoTCP, 22, true},  // alice's router (tagged, her key)
		{"100.64.0.1", "198.19.1.7", wire.ProtoTCP, 22, true},  // the LAN it routes
		{"198.19.1.7", "100.64.0.1", wire.ProtoUDP, 53, true},  // and back
		{"100.64.0.1", "100.64.0.2", wire.ProtoTCP, 22, false}, // not bob's
		{"100.64.0.1", "198.19.2.7", wire.ProtoTCP, 22, false}, // nor bob's LAN
		{"198.19.1.7", "198.19.2.7", wire.ProtoTCP, 22, false}, // LANs of different users
		{"198.19.2.7", "100.64.0.2", wire.ProtoTCP, 22, true},
		{"100.64.0.1", "8.8.8.8", wire.ProtoTCP, 443, false}, // exit needs a rule
		{"100.64.0.1", "127.0.0.1", wire.ProtoTCP, 22, false},
	})
	r, _ := c.Node(1)
	if got := r.Peers(); !slices.Equal(got, []wire.NodeID{3, 5}) {
		t.Errorf("alice's peers %v", got)
	}
	r, _ = c.Node(2)
	if got := r.Peers(); !slices.Equal(got, []wire.NodeID{4}) {
		t.Errorf("bob's peers %v", got)
	}
}

func TestAutogroupSelf(t *testing.T) {
	nodes := append(meshNodes(), Node{ID: 5, User: "alice@example.com", Addresses: pfx("100.64.0.5/32")},
		Node{ID: 6, User: "bob@example.com", Addresses: pfx("100.64.0.6/32")})
	c := mustCompile(t, mustParse(t, `{`+owners+`, "acls": [{"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:22"]}]}`), nodes)
	checkFlows(t, c, []flow{
		{"100.64.0.1", "100.64.0.5", wire.ProtoTCP, 22, true},
		{"100.64.0.2", "100.64.0.6", wire.ProtoTCP, 22, true},
		{"100.64.0.1", "100.64.0.6", wire.ProtoTCP, 22, false},
		{"100.64.0.1", "100.64.0.3", wire.ProtoTCP, 22, false}, // tagged: not alice's in rules
		{"100.64.0.1", "100.64.0.5", wire.ProtoTCP, 23, false},
	})
	r, _ := c.Node(1)
	if got := r.Peers(); !slices.Equal(got, []wire.NodeID{5}) {
		t.Errorf("peers %v", got)
	}
}

func TestAutoApprovers(t *testing.T) {
	p := mustParse(t, `{`+owners+`, "autoApprovers": {"routes": {"198.19.0.0/16": ["tag:router"]}, "exitNode": ["bob@example.com"]}}`)
	nodes := []Node{
		{ID: 1, Owner: "a@b", Tags: []string{"tag:router"}, Addresses: pfx("100.64.0.1/32"), AdvertisedRoutes: pfx("198.19.5.0/24", "10.0.0.0/8", "0.0.0.0/0")},
		{ID: 2, User: "bob@example.com", Addresses: pfx("100.64.0.2/32"), AdvertisedRoutes: pfx("198.19.6.0/24", "0.0.0.0/0")},
		{ID: 3, User: "carol@example.com", Addresses: pfx("100.64.0.3/32"), ApprovedRoutes: pfx("10.1.0.0/16")},
	}
	c := mustCompile(t, p, nodes)
	want := map[wire.NodeID][]netip.Prefix{1: pfx("198.19.5.0/24"), 2: pfx("0.0.0.0/0"), 3: pfx("10.1.0.0/16")}
	for id, w := range want {
		r, _ := c.Node(id)
		if !slices.Equal(r.Routes, w) {
			t.Errorf("node %d routes %v, want %v", id, r.Routes, w)
		}
	}
}

func TestCompileDeterministicAndChanged(t *testing.T) {
	p := loadHomeLab(t)
	nodes := homeLabNodes()
	a := mustCompile(t, p, nodes)
	rev := slices.Clone(nodes)
	slices.Reverse(rev)
	b := mustCompile(t, p, rev)
	if ch := Changed(a, b); len(ch) != 0 {
		t.Fatalf("same input in another order changed %v", ch)
	}
	if ch := Changed(nil, a); len(ch) != len(nodes) {
		t.Fatalf("Changed(nil, a) = %v", ch)
	}
	// The guest leaves: the TV's router, the parents (who reach everything) and the guest change.
	without := slices.DeleteFunc(slices.Clone(nodes), func(n Node) bool { return n.ID == 7 })
	c := mustCompile(t, p, without)
	if ch := Changed(a, c); !slices.Equal(ch, []wire.NodeID{1, 3, 4, 7}) {
		t.Errorf("after removing the guest, changed %v, want [1 3 4 7]", ch)
	}
	// A kid's device is retagged as IoT: its own and its peers' results change.
	nodes[5].Tags, nodes[5].Owner = []string{"tag:iot"}, "dad@home.example"
	d := mustCompile(t, p, nodes)
	ch := Changed(a, d)
	if !slices.Contains(ch, 6) || !slices.Contains(ch, 9) || slices.Contains(ch, 7) {
		t.Errorf("after retagging node 6, changed %v", ch)
	}
}

func TestCompileBadNodes(t *testing.T) {
	for name, nodes := range map[string][]Node{
		"duplicate id":   {{ID: 1, Addresses: pfx("100.64.0.1/32")}, {ID: 1, Addresses: pfx("100.64.0.2/32")}},
		"invalid prefix": {{ID: 1, Addresses: []netip.Prefix{{}}}},
		"mapped prefix":  {{ID: 1, Addresses: pfx("::ffff:100.64.0.1/128")}},
	} {
		if _, err := Compile(nil, nodes); err == nil {
			t.Errorf("%s: Compile succeeded", name)
		}
	}
}

func TestCheckReportsFailingTests(t *testing.T) {
	p := mustParse(t, "{"+owners+`, "acls": [{"action": "accept", "src": ["alice@example.com"], "dst": ["printer:631"], "proto": "tcp"}],
"tests": [
  {"src": "alice@example.com", "accept": ["printer:631"], "deny": ["printer:22"]},
  {"src": "alice@example.com", "proto": "udp", "accept": ["printer:631"]},
  {"src": "bob@example.com", "deny": ["printer:631"], "accept": ["printer:631"]},
]}`)
	err := Check(p, meshNodes())
	if err == nil {
		t.Fatal("Check passed")
	}
	got := err.Error()
	for _, want := range []string{
		`test.hujson:4:59: tests[1].accept[0]: test failed: alice@example.com -> printer:631/udp was denied`,
		`test.hujson:5:66: tests[2].accept[0]: test failed: bob@example.com -> printer:631/tcp was denied`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("error\n%s\nlacks\n%s", got, want)
		}
	}
	if strings.Contains(got, "tests[0]") || strings.Contains(got, "deny") {
		t.Errorf("passing tests reported: %s", got)
	}
	// The same tests with no router for the printer's LAN are judged on
	// the policy alone (a stand-in node holds the address): the same
	// verdicts.
	err = Check(p, meshNodes()[:2])
	if err == nil || strings.Contains(err.Error(), "tests[0]") || !strings.Contains(err.Error(), "tests[2].accept[0]") {
		t.Errorf("Check without a route: %v", err)
	}
}
