package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/wire"
)

// scalePolicy is a 50-rule policy over 100 users in 10 groups, 20 tags
// and 50 routed LANs.
func scalePolicy(t testing.TB) *Policy {
	var b strings.Builder
	b.WriteString(`{"groups": {`)
	for g := range 10 {
		if g > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"group:g%d": [`, g)
		for u := range 10 {
			if u > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `"u%d@example.com"`, g*10+u)
		}
		b.WriteString("]")
	}
	b.WriteString(`}, "tagOwners": {`)
	for tag := range 20 {
		if tag > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"tag:t%d": ["group:g0"]`, tag)
	}
	b.WriteString(`}, "acls": [`)
	for r := range 50 {
		if r > 0 {
			b.WriteString(",\n")
		}
		switch r % 5 {
		case 0:
			fmt.Fprintf(&b, `{"action": "accept", "src": ["group:g%d"], "dst": ["tag:t%d:22,80,443"]}`, r%10, r%20)
		case 1:
			fmt.Fprintf(&b, `{"action": "accept", "src": ["tag:t%d"], "dst": ["tag:t%d:5432"], "proto": "tcp"}`, r%20, (r+1)%20)
		case 2:
			fmt.Fprintf(&b, `{"action": "accept", "src": ["u%d@example.com", "group:g%d"], "dst": ["198.19.%d.0/24:*"]}`, r, (r+3)%10, r%50)
		case 3:
			fmt.Fprintf(&b, `{"action": "accept", "src": ["198.19.%d.0/24"], "dst": ["group:g%d:445"]}`, r%50, r%10)
		case 4:
			fmt.Fprintf(&b, `{"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*"]}`)
		}
	}
	b.WriteString(`]}`)
	return mustParse(t, b.String())
}

func scaleNodes(n int) []Node {
	nodes := make([]Node, n)
	for i := range nodes {
		nd := Node{ID: wire.NodeID(i + 1), Addresses: []netip.Prefix{
			netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64 + byte(i>>16), byte(i >> 8), byte(i)}), 32)}}
		switch {
		case i%10 == 0: // a router per ten devices
			nd.Owner, nd.Tags = "u0@example.com", []string{fmt.Sprintf("tag:t%d", i%20)}
			nd.ApprovedRoutes = []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i / 10 % 50), 0}), 24)}
		default:
			nd.User = fmt.Sprintf("u%d@example.com", i%100)
		}
		nodes[i] = nd
	}
	return nodes
}

func BenchmarkCompile10k(b *testing.B) {
	p, nodes := scalePolicy(b), scaleNodes(10000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(p, nodes); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCompileScale: 10,000 nodes and 50 rules compile in under a second.
func TestCompileScale(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("timing test; see BenchmarkCompile10k")
	}
	p, nodes := scalePolicy(t), scaleNodes(10000)
	// Best of three: the machine is shared, and one slow run is noise.
	var c *Compiled
	d := time.Hour
	for range 3 {
		start := time.Now()
		c = mustCompile(t, p, nodes)
		d = min(d, time.Since(start))
	}
	if d > time.Second {
		t.Errorf("compiling 10,000 nodes took %v", d)
	} else {
		t.Logf("compiled 10,000 nodes in %v", d)
	}
	r, _ := c.Node(2)
	if len(r.Peers()) == 0 || len(r.Filter.Inbound) == 0 {
		t.Errorf("node 2 got nothing: %d peers, %d rules", len(r.Peers()), len(r.Filter.Inbound))
	}
}
