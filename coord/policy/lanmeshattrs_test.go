package policy

import (
	"strings"
	"testing"
)

// TestDisablesKeyExpiry: the attribute applies to exactly the nodes its
// entries target, whichever selector does it.
func TestDisablesKeyExpiry(t *testing.T) {
	p := mustParse(t, `{"tagOwners": {"tag:nas": []}, "groups": {"group:ops": ["ops@example.net"]}, "nodeAttrs": [
		{"target": ["ann@example.net", "tag:nas", "group:ops", "autogroup:admin", "100.64.0.9"], "attr": [" lanmesh:disable-key-expiry "]},
		{"target": ["*"], "attr": ["funnel"]},
	]}`)
	for _, tt := range []struct {
		name string
		n    Node
		want bool
	}{
		{"user", Node{ID: 1, User: "ann@example.net"}, true},
		{"tag", Node{ID: 2, Owner: "bob@example.net", Tags: []string{"tag:nas"}}, true},
		{"policy group", Node{ID: 3, User: "ops@example.net"}, true},
		{"IdP group", Node{ID: 4, User: "cy@example.net", Groups: []string{"ops"}}, true},
		{"admin role", Node{ID: 5, User: "dee@example.net", Roles: []string{"admin"}}, true},
		{"address", Node{ID: 6, User: "eve@example.net", Addresses: pfx("100.64.0.9/32")}, true},
		{"other user", Node{ID: 7, User: "bob@example.net", Addresses: pfx("100.64.0.7/32")}, false},
		{"ann's tagged node", Node{ID: 8, Owner: "ann@example.net", Tags: []string{"tag:other"}}, false},
	} {
		if got := p.DisablesKeyExpiry(tt.n); got != tt.want {
			t.Errorf("%s: DisablesKeyExpiry = %v, want %v", tt.name, got, tt.want)
		}
	}
	if mustParse(t, `{"nodeAttrs": [{"target": ["*"], "attr": ["funnel"]}]}`).DisablesKeyExpiry(Node{ID: 1, User: "ann@example.net"}) {
		t.Error("funnel disables key expiry")
	}
	var none *Policy
	if none.DisablesKeyExpiry(Node{ID: 1, User: "ann@example.net"}) {
		t.Error("the default policy disables key expiry")
	}
}

// TestLanmeshAttrs: lanmesh: attributes are checked, and near misses
// outside the namespace get a hint.
func TestLanmeshAttrs(t *testing.T) {
	for _, tt := range []struct{ attr, err, warn string }{
		{"lanmesh:disable-key-expiry", "", ""},
		{"lanmesh:disable-keyexpiry", `did you mean "lanmesh:disable-key-expiry"?`, ""},
		{"LANMESH:Disable-Key-Expiry", `did you mean "lanmesh:disable-key-expiry"?`, ""},
		{"lanmesh:disable-key-expiry=1", `lanmesh:disable-key-expiry takes no value`, ""},
		{"lanmesh:x", `unknown lanmesh node attribute "lanmesh:x" (known: lanmesh:disable-key-expiry)`, ""},
		{"lanmesh:", `unknown lanmesh node attribute "lanmesh:"`, ""},
		{"disable_key_expiry", "", `did you mean "lanmesh:disable-key-expiry"`},
		{"funnel", "", `"funnel" accepted without effect`},
	} {
		p, err := Parse("a.hujson", []byte(`{"nodeAttrs": [{"target": ["*"], "attr": ["`+tt.attr+`"]}]}`))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "a.hujson:1:") {
				t.Errorf("%s: got %v, want an error with its position and %q", tt.attr, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.attr, err)
			continue
		}
		var warns []string
		for _, w := range p.Warnings {
			warns = append(warns, w.Error())
		}
		if got := strings.Join(warns, "\n"); tt.warn == "" && got != "" || !strings.Contains(got, tt.warn) {
			t.Errorf("%s: warnings %q, want %q", tt.attr, got, tt.warn)
		}
	}
}
