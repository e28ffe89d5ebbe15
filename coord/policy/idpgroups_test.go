package policy

import "testing"

// TestIdPGroups: group:x in a rule selects users whose IdP groups include
// x, besides the members the policy lists; tagged devices never match
// through their owner's groups.
func TestIdPGroups(t *testing.T) {
	p := mustParse(t, `{
		"groups": {"group:eng": [], "group:ops": ["bob@example.com"]},
		"acls": [{"action": "accept", "src": ["group:eng"], "dst": ["group:ops:22"]}]
	}`)
	nodes := []Node{
		{ID: 1, User: "alice@example.com", Groups: []string{"eng"}, Addresses: pfx("100.64.0.1/32")},
		{ID: 2, User: "bob@example.com", Addresses: pfx("100.64.0.2/32")},
		{ID: 3, User: "carol@example.com", Groups: []string{"sales"}, Addresses: pfx("100.64.0.3/32")},
		{ID: 4, Owner: "alice@example.com", Groups: []string{"eng"}, Tags: []string{"tag:x"}, Addresses: pfx("100.64.0.4/32")},
		{ID: 5, User: "dave@example.com", Groups: []string{"ops"}, Addresses: pfx("100.64.0.5/32")},
	}
	p.TagOwners = map[string][]string{"tag:x": {"alice@example.com"}}
	c := mustCompile(t, p, nodes)
	checkFlows(t, c, []flow{
		{"100.64.0.1", "100.64.0.2", 6, 22, true},  // IdP group eng -> listed member of ops
		{"100.64.0.1", "100.64.0.5", 6, 22, true},  // -> IdP member of ops
		{"100.64.0.3", "100.64.0.2", 6, 22, false}, // sales is not eng
		{"100.64.0.4", "100.64.0.2", 6, 22, false}, // tagged: not its owner's groups
	})
}
