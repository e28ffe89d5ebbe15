package policy

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/lanmesh/lanmesh/internal/wire"
)

func fuzzSeeds(f *testing.F) {
	if b, err := os.ReadFile("testdata/homelab.hujson"); err == nil {
		f.Add(b)
	}
	// The compatibility suite covers grants, nodeAttrs, ssh, sshTests,
	// ipsets and postures.
	compat, _ := filepath.Glob("testdata/compat/*/*.hujson")
	for _, c := range compat {
		if b, err := os.ReadFile(c); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		`{}`, `{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}`,
		`{"groups": {"group:a": ["group:a"]}}`, `{"acls": [/*x*/]}`, `[[[[`, `{"hosts": {"a": "::1"}}`,
		`{"acls": [{"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:22", "autogroup:internet:*"], "proto": "udp"}]}`,
		`{"tagOwners": {"tag:r": []}, "grants": [{"src": ["*"], "dst": ["tag:r", "10.0.0.0/8"], "ip": ["tcp:22", "*", "udp:53-54"], "via": ["tag:r"], "app": {"a.b/c": [{"x": 1}]}}]}`,
		`{"nodeAttrs": [{"target": ["*"], "attr": ["funnel"], "ipPool": ["100.90.0.0/16"], "app": {"a.b/c": [{}]}}]}`,
		`{"ssh": [{"action": "check", "src": ["autogroup:member"], "dst": ["autogroup:self"], "users": ["localpart:*@a.b", "autogroup:nonroot"], "checkPeriod": "always", "acceptEnv": ["X_*"]}], "sshTests": [{"src": "a@a.b", "dst": ["a@a.b"], "check": ["a"]}]}`,
		`{"ipsets": {"ipset:a": ["10.0.0.0/8", "remove 10.1.0.0/16"]}, "postures": {"posture:p": ["node:os == 'linux'"]}, "acls": [{"action": "accept", "src": ["ipset:a"], "dst": ["*:*"], "srcPosture": ["posture:p"]}]}`,
	} {
		f.Add([]byte(s))
	}
}

// FuzzParse: the policy parser never panics, and a policy it accepts
// compiles.
func FuzzParse(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse("fuzz.hujson", b)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if _, err := Compile(p, nil); err != nil {
			t.Fatalf("accepted policy does not compile: %v", err)
		}
	})
}

// FuzzCompile compiles fuzzed policies for a mesh shaped by the fuzzer
// and checks invariants: peers are symmetric, no filter reaches a
// host-scoped range unless the policy names one, and Check never panics.
func FuzzCompile(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse("fuzz.hujson", b)
		if err != nil {
			return
		}
		var nodes []Node
		users := []string{"alice@example.com", "bob@example.com", "dad@home.example", "kid@home.example"}
		var tags []string
		for tag := range p.TagOwners {
			tags = append(tags, tag)
		}
		for i := range min(len(b), 24) {
			c := b[len(b)-1-i]
			n := Node{ID: wire.NodeID(i + 1), User: users[int(c)%len(users)],
				Addresses: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64, 0, byte(i + 1)}), 32)}}
			if c&8 != 0 && len(tags) > 0 {
				n.Owner, n.User, n.Tags = n.User, "", []string{tags[int(c)%len(tags)]}
			}
			if c&16 != 0 {
				n.AdvertisedRoutes = []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("198.19.%d.0/24", c%8))}
				n.ApprovedRoutes = n.AdvertisedRoutes
			}
			if c&32 != 0 {
				n.ApprovedRoutes = append(n.ApprovedRoutes, netip.MustParsePrefix("0.0.0.0/0"))
			}
			nodes = append(nodes, n)
		}
		c, err := Compile(p, nodes)
		if err != nil {
			t.Fatal(err)
		}
		namesHostScoped := false
		for _, h := range p.Hosts {
			namesHostScoped = namesHostScoped || overlapsAny(h, hostScoped)
		}
		for _, a := range p.ACLs {
			for _, d := range a.dst {
				namesHostScoped = namesHostScoped || d.sel.prefix.IsValid() && overlapsAny(d.sel.prefix, hostScoped)
			}
		}
		for _, id := range c.Nodes() {
			r, _ := c.Node(id)
			for _, peer := range r.Peers() {
				if o, _ := c.Node(peer); !o.HasPeer(id) {
					t.Fatalf("node %d sees %d but not the other way round", id, peer)
				}
			}
			if namesHostScoped {
				continue
			}
			for _, fr := range append(r.Filter.Inbound, r.Filter.Forward...) {
				for _, d := range fr.Dst {
					if overlapsAny(d, hostScoped) {
						t.Fatalf("node %d reaches host-scoped %v", id, d)
					}
				}
			}
		}
		_ = Check(p, nodes)
	})
}
