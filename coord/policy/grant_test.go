package policy

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/lanmesh/lanmesh/internal/wire"
)

// TestGrantEquivalentToACL: a grant's network part and the equivalent
// ACL compile to the same packet filters and peers on every node. The
// node's nftables ruleset is a function of its wire.PacketFilter alone
// (agent/firewall builds it from nothing else), so equal filters are
// equal nftables filters.
func TestGrantEquivalentToACL(t *testing.T) {
	nodes := append(meshNodes(), Node{ID: 5, User: "alice@example.com", Addresses: pfx("100.64.0.5/32")})
	pairs := []struct{ name, grant, acl string }{
		{"all", `{"src": ["*"], "dst": ["*"], "ip": ["*"]}`,
			`{"action": "accept", "src": ["*"], "dst": ["*:*"]}`},
		{"tcp port", `{"src": ["alice@example.com"], "dst": ["tag:router"], "ip": ["tcp:22"]}`,
			`{"action": "accept", "src": ["alice@example.com"], "dst": ["tag:router:22"], "proto": "tcp"}`},
		{"bare ports", `{"src": ["bob@example.com"], "dst": ["printer", "lan2"], "ip": ["631,9100"]}`,
			`{"action": "accept", "src": ["bob@example.com"], "dst": ["printer:631,9100", "lan2:631,9100"]}`},
		{"udp range", `{"src": ["lan2"], "dst": ["lan1"], "ip": ["udp:5000-5010"]}`,
			`{"action": "accept", "src": ["lan2"], "dst": ["lan1:5000-5010"], "proto": "udp"}`},
		{"icmp", `{"src": ["autogroup:member"], "dst": ["*"], "ip": ["icmp:*"]}`,
			`{"action": "accept", "src": ["autogroup:member"], "dst": ["*:*"], "proto": "icmp"}`},
		{"self", `{"src": ["autogroup:member"], "dst": ["autogroup:self"], "ip": ["*"]}`,
			`{"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*"]}`},
		{"internet", `{"src": ["alice@example.com"], "dst": ["autogroup:internet"], "ip": ["tcp:443"]}`,
			`{"action": "accept", "src": ["alice@example.com"], "dst": ["autogroup:internet:443"], "proto": "tcp"}`},
		{"proto number", `{"src": ["tag:router"], "dst": ["tag:router"], "ip": ["47:*"]}`,
			`{"action": "accept", "src": ["tag:router"], "dst": ["tag:router:*"], "proto": "47"}`},
	}
	for _, pc := range pairs {
		t.Run(pc.name, func(t *testing.T) {
			g := mustParse(t, "{"+owners+`, "grants": [`+pc.grant+`]}`)
			a := mustParse(t, "{"+owners+`, "acls": [`+pc.acl+`]}`)
			cg, ca := mustCompile(t, g, nodes), mustCompile(t, a, nodes)
			for _, id := range ca.Nodes() {
				rg, _ := cg.Node(id)
				ra, _ := ca.Node(id)
				if !reflect.DeepEqual(rg.Filter, ra.Filter) {
					t.Errorf("node %d: grant filter\n%+v\nacl filter\n%+v", id, rg.Filter, ra.Filter)
				}
				if !reflect.DeepEqual(rg.Peers(), ra.Peers()) || rg.Sum != ra.Sum {
					t.Errorf("node %d: grant peers %v, acl peers %v", id, rg.Peers(), ra.Peers())
				}
			}
		})
	}
	// Several ip entries are several ACLs, one per protocol.
	g := mustParse(t, "{"+owners+`, "grants": [{"src": ["bob@example.com"], "dst": ["alice@example.com"], "ip": ["tcp:22", "udp:53"]}]}`)
	a := mustParse(t, "{"+owners+`, "acls": [
		{"action": "accept", "src": ["bob@example.com"], "dst": ["alice@example.com:22"], "proto": "tcp"},
		{"action": "accept", "src": ["bob@example.com"], "dst": ["alice@example.com:53"], "proto": "udp"}]}`)
	rg, _ := mustCompile(t, g, nodes).Node(1)
	ra, _ := mustCompile(t, a, nodes).Node(1)
	if !reflect.DeepEqual(rg.Filter, ra.Filter) || len(rg.Filter.Inbound) != 2 {
		t.Errorf("two ip entries: grant %+v, acls %+v", rg.Filter, ra.Filter)
	}
}

// TestGrantAppCaps: app capabilities reach the destination node's view
// of its peers, from the sources the grant names only.
func TestGrantAppCaps(t *testing.T) {
	nodes := meshNodes()
	p := mustParse(t, "{"+owners+`, "grants": [
		{"src": ["bob@example.com"], "dst": ["tag:router"], "app": {"example.com/cap/admin": [{"level": "full"}]}},
		{"src": ["*"], "dst": ["tag:router"], "ip": ["tcp:443"], "app": {"example.com/cap/web": [{"path": "/"}]}},
	]}`)
	c := mustCompile(t, p, nodes)
	r3, _ := c.Node(3)
	capsOf := func(ip string) string {
		b, _ := json.Marshal(r3.Filter.CapsFrom(netip.MustParseAddr(ip)))
		return string(b)
	}
	if got := capsOf("100.64.0.2"); got != `{"example.com/cap/admin":[{"level":"full"}],"example.com/cap/web":[{"path":"/"}]}` {
		t.Errorf("bob's caps on node 3: %s", got)
	}
	if got := capsOf("fd7a::1"); got != `{"example.com/cap/web":[{"path":"/"}]}` {
		t.Errorf("alice's caps on node 3: %s", got)
	}
	// "*" is mesh addresses and approved LANs, never the world (S2).
	if got := capsOf("198.19.1.7"); got != `{"example.com/cap/web":[{"path":"/"}]}` {
		t.Errorf("a LAN host's caps on node 3: %s", got)
	}
	if got := capsOf("198.18.0.1"); got != "null" {
		t.Errorf("an internet address has caps on node 3: %s", got)
	}
	if r1, _ := c.Node(1); len(r1.Filter.Caps) != 0 {
		t.Errorf("node 1 is no grant's dst, yet has caps %+v", r1.Filter.Caps)
	}
	// Caps are part of the result: changing a value changes the sum,
	// so coord sends the node its new filter.
	p2 := mustParse(t, "{"+owners+`, "grants": [
		{"src": ["bob@example.com"], "dst": ["tag:router"], "app": {"example.com/cap/admin": [{"level": "read"}]}},
		{"src": ["*"], "dst": ["tag:router"], "ip": ["tcp:443"], "app": {"example.com/cap/web": [{"path": "/"}]}},
	]}`)
	if r, _ := mustCompile(t, p2, nodes).Node(3); r.Sum == r3.Sum {
		t.Error("a changed capability value left the node's sum unchanged")
	}
	// autogroup:self: only the node's own user's devices get the caps.
	ps := mustParse(t, "{"+owners+`, "grants": [{"src": ["autogroup:member"], "dst": ["autogroup:self"], "app": {"example.com/cap/own": [{}]}}]}`)
	cs := mustCompile(t, ps, nodes)
	r1, _ := cs.Node(1)
	if r1.Filter.CapsFrom(netip.MustParseAddr("100.64.0.1")) == nil || r1.Filter.CapsFrom(netip.MustParseAddr("100.64.0.2")) != nil {
		t.Errorf("autogroup:self caps on alice's node: %+v", r1.Filter.Caps)
	}
	if r3s, _ := cs.Node(3); len(r3s.Filter.Caps) != 0 {
		t.Errorf("a tagged node got autogroup:self caps: %+v", r3s.Filter.Caps)
	}
	r := r3
	// An app-only grant opens no port.
	for _, fr := range r.Filter.Inbound {
		if !slicesEqualPorts(fr.Ports, []wire.PortRange{{First: 443, Last: 443}}) {
			t.Errorf("an app-only grant opened %+v", fr)
		}
	}
}

func slicesEqualPorts(a, b []wire.PortRange) bool { return reflect.DeepEqual(a, b) }

func TestGrantErrors(t *testing.T) {
	for _, tt := range []struct{ name, grant, want string }{
		{"neither", `{"src": ["*"], "dst": ["*"]}`, `grants[0]: a grant needs "ip"`},
		{"no src", `{"dst": ["*"], "ip": ["*"]}`, `grants[0]: missing "src"`},
		{"bad ip", `{"src": ["*"], "dst": ["*"], "ip": ["tcp:80:90"]}`, `grants[0].ip[0]: ip "tcp:80:90"`},
		{"icmp port", `{"src": ["*"], "dst": ["*"], "ip": ["icmp:80"]}`, `proto "icmp" has no ports`},
		{"tailscale cap", `{"src": ["*"], "dst": ["*"], "app": {"tailscale.com/cap/x": [{}]}}`, `must not be in the tailscale.com domain`},
		{"bad cap", `{"src": ["*"], "dst": ["*"], "app": {"nocap": [{}]}}`, `must have the form {domain}/{path}`},
		{"cap internet", `{"src": ["*"], "dst": ["autogroup:internet"], "app": {"example.com/cap/x": [{}]}}`, `cannot be granted on autogroup:internet`},
		{"danger dst", `{"src": ["*"], "dst": ["autogroup:danger-all"], "ip": ["*"]}`, `only allowed in src`},
		{"self src", `{"src": ["autogroup:self"], "dst": ["*"], "ip": ["*"]}`, `only allowed in dst`},
		{"via user", `{"src": ["*"], "dst": ["lan1"], "ip": ["*"], "via": ["alice@example.com"]}`, `via can only name tags`},
		{"via unknown tag", `{"src": ["*"], "dst": ["lan1"], "ip": ["*"], "via": ["tag:router", "tag:nope"]}`, `grants[0].via[1]: unknown tag "tag:nope"`},
		{"all addresses", `{"src": ["*"], "dst": ["0.0.0.0/0"], "ip": ["*"]}`, `use "*" or "autogroup:internet"`},
		{"star to self", `{"src": ["*"], "dst": ["autogroup:self"], "ip": ["*"]}`, `a grant's src may only name users`},
		{"unknown tag", `{"src": ["tag:nope"], "dst": ["*"], "ip": ["*"]}`, `unknown tag "tag:nope"`},
	} {
		_, err := Parse("g.hujson", []byte("{"+owners+`, "grants": [`+tt.grant+`]}`))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want %q", tt.name, err, tt.want)
		}
	}
}

// TestGrantVia: with via, only the routers with the via tag admit the
// grant's traffic into the routes they serve; another router serving
// the same LAN does not, and traffic to a node's own address is
// unchanged.
func TestGrantVia(t *testing.T) {
	nodes := meshNodes()
	nodes[2].Tags = append(nodes[2].Tags, "tag:via")
	nodes = append(nodes, Node{ID: 6, Owner: "alice@example.com", Tags: []string{"tag:router"}, Addresses: pfx("100.64.0.6/32"),
		ApprovedRoutes: pfx("198.19.1.0/24"), AdvertisedRoutes: pfx("198.19.1.0/24")})
	p := mustParse(t, `{"tagOwners": {"tag:router": [], "tag:via": []}, "hosts": {"lan1": "198.19.1.0/24"},
		"grants": [{"src": ["bob@example.com"], "dst": ["lan1", "tag:router"], "ip": ["tcp:443"], "via": ["tag:via"]}]}`)
	c := mustCompile(t, p, nodes)
	r3, _ := c.Node(3)
	r6, _ := c.Node(6)
	has := func(r *NodeResult, pf string) bool {
		for _, fr := range r.Filter.Inbound {
			for _, d := range fr.Dst {
				if d.String() == pf {
					return true
				}
			}
		}
		return false
	}
	if !has(r3, "198.19.1.0/24") || !has(r3, "100.64.0.3/32") {
		t.Errorf("via router: %+v", r3.Filter.Inbound)
	}
	if has(r6, "198.19.1.0/24") || !has(r6, "100.64.0.6/32") {
		t.Errorf("non-via router admits the LAN or lost its own address: %+v", r6.Filter.Inbound)
	}
}

// TestIPSets: an ipset is the prefixes its operations leave, in order;
// as a dst it compiles as the same prefixes written out.
func TestIPSets(t *testing.T) {
	nodes := meshNodes()
	p := mustParse(t, "{"+owners+`, "ipsets": {
		"ipset:lans": ["add lan1", "add 198.19.2.0/24", "remove printer"],
		"ipset:more": ["ipset:lans", "198.19.99.0/24"],
	}, "acls": [{"action": "accept", "src": ["bob@example.com"], "dst": ["ipset:lans:443"], "proto": "tcp"}]}`)
	if got := fmt.Sprint(p.IPSets["ipset:lans"]); !strings.Contains(got, "198.19.1.0/28") || strings.Contains(got, "198.19.1.20/32") || !strings.Contains(got, "198.19.2.0/24") {
		t.Errorf("ipset:lans = %s", got)
	}
	c := mustCompile(t, p, nodes)
	checkFlows(t, c, []flow{
		{"100.64.0.2", "198.19.1.21", wire.ProtoTCP, 443, true},
		{"100.64.0.2", "198.19.1.20", wire.ProtoTCP, 443, false}, // removed
		{"100.64.0.2", "198.19.2.5", wire.ProtoTCP, 443, true},
	})
	for in, want := range map[string]string{
		`{"ipset:a": ["ipset:b"], "ipset:b": ["ipset:a"]}`: `ipset cycle`,
		`{"ipset:a": ["tag:x"]}`:                           `tags, users and groups are not allowed`,
		`{"ipset:a": ["add ipset:nope"]}`:                  `unknown ipset "ipset:nope"`,
	} {
		if _, err := Parse("i.hujson", []byte(`{"ipsets": `+in+`}`)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", in, err, want)
		}
	}
}

// TestPostures: no lanmesh node shows a posture, so a rule that needs
// one admits no one (never fails open), and defaultSrcPosture applies
// to every rule without its own.
func TestPostures(t *testing.T) {
	nodes := meshNodes()
	base := owners + `, "postures": {"posture:mac": ["node:os == 'macos'"]}`
	p := mustParse(t, "{"+base+`, "acls": [
		{"action": "accept", "src": ["bob@example.com"], "dst": ["alice@example.com:22"], "srcPosture": ["posture:mac"]},
		{"action": "accept", "src": ["bob@example.com"], "dst": ["alice@example.com:80"]}]}`)
	checkFlows(t, mustCompile(t, p, nodes), []flow{
		{"100.64.0.2", "100.64.0.1", wire.ProtoTCP, 22, false},
		{"100.64.0.2", "100.64.0.1", wire.ProtoTCP, 80, true},
	})
	p = mustParse(t, "{"+base+`, "defaultSrcPosture": ["posture:mac"], "grants": [
		{"src": ["bob@example.com"], "dst": ["alice@example.com"], "ip": ["*"]}]}`)
	checkFlows(t, mustCompile(t, p, nodes), []flow{{"100.64.0.2", "100.64.0.1", wire.ProtoTCP, 80, false}})
	for in, want := range map[string]string{
		`"postures": {"posture:a": ["os is linux"]}`:                                                   `must be ATTRIBUTE OP VALUE`,
		`"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"], "srcPosture": ["posture:nope"]}]`: `unknown posture "posture:nope"`,
		`"postures": {"mac": ["node:os == 'macos'"]}`:                                                  `posture name "mac"`,
	} {
		if _, err := Parse("p.hujson", []byte(`{`+in+`}`)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", in, err, want)
		}
	}
}

// TestGrantViaSteers: a grant's sources get via routes naming the via
// routers for the routed part of the destination, so their agents send
// that traffic to the router that admits it; other nodes get none, and
// a router's own addresses and autogroup:internet are not steered.
func TestGrantViaSteers(t *testing.T) {
	nodes := meshNodes()
	// Node 3 (tag:router, 198.19.1.0/24 and an exit route) has the
	// lower ID; node 6 serves the same LAN and is the via router.
	nodes = append(nodes, Node{ID: 6, Owner: "alice@example.com", Tags: []string{"tag:router", "tag:via"}, Addresses: pfx("100.64.0.6/32"),
		ApprovedRoutes: pfx("198.19.1.0/24", "0.0.0.0/0"), AdvertisedRoutes: pfx("198.19.1.0/24", "0.0.0.0/0")})
	p := mustParse(t, `{"tagOwners": {"tag:router": [], "tag:via": []}, "hosts": {"lan1": "198.19.1.0/24", "printer": "198.19.1.20"},
		"grants": [
			{"src": ["bob@example.com"], "dst": ["lan1", "tag:router"], "ip": ["tcp:443"], "via": ["tag:via"]},
			{"src": ["alice@example.com"], "dst": ["printer"], "ip": ["*"], "via": ["tag:via"]},
			{"src": ["bob@example.com"], "dst": ["autogroup:internet"], "ip": ["*"], "via": ["tag:via"]},
		]}`)
	c := mustCompile(t, p, nodes)
	viaOf := func(id wire.NodeID) string {
		r, _ := c.Node(id)
		return fmt.Sprint(r.Filter.Via)
	}
	if got := viaOf(2); got != "[{198.19.1.0/24 [6]}]" {
		t.Errorf("bob's node: via %s", got)
	}
	if got := viaOf(1); got != "[{198.19.1.20/32 [6]}]" {
		t.Errorf("alice's node: via %s", got)
	}
	for _, id := range []wire.NodeID{3, 4, 6} {
		if got := viaOf(id); got != "[]" {
			t.Errorf("node %d: via %s, want none", id, got)
		}
	}
	// Via is part of the result: a policy without it has another sum.
	r2, _ := c.Node(2)
	p2 := mustParse(t, `{"tagOwners": {"tag:router": [], "tag:via": []}, "hosts": {"lan1": "198.19.1.0/24"},
		"grants": [{"src": ["bob@example.com"], "dst": ["lan1", "tag:router"], "ip": ["tcp:443"]}]}`)
	if r, _ := mustCompile(t, p2, nodes).Node(2); r.Sum == r2.Sum || len(r.Filter.Via) != 0 {
		t.Errorf("without via: sum unchanged or via %v", r.Filter.Via)
	}
}
