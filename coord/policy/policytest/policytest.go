// Package policytest generates a large synthetic mesh and policy, shared by
// coord/policy's benchmarks and the firewall benchmark (agent/firewall/fwbench),
// so both measure the same thing.
package policytest

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/lanmesh/lanmesh/coord/policy"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// ScaleRules is the number of ACL entries in ScalePolicy.
const ScaleRules = 50

// ScalePolicy is the HuJSON of a 50-rule policy over 100 users in 10
// groups, 20 tags and 50 routed LANs.
func ScalePolicy() string {
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
	for r := range ScaleRules {
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
			b.WriteString(`{"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*"]}`)
		}
	}
	b.WriteString(`]}`)
	return b.String()
}

// ScaleNodes is a mesh of n nodes for ScalePolicy: a router (tagged, with
// an approved /24) per ten devices, the rest spread over the 100 users.
func ScaleNodes(n int) []policy.Node {
	nodes := make([]policy.Node, n)
	for i := range nodes {
		nd := policy.Node{ID: wire.NodeID(i + 1), Addresses: []netip.Prefix{
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
