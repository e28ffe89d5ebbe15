package policy

import (
	"strings"
	"testing"
)

func TestTagOwnedBy(t *testing.T) {
	p, err := Parse("p.hujson", []byte(`{
		"groups": {"group:ops": ["ann@example.net"], "group:eng": [], "group:all": ["group:ops"]},
		"tagOwners": {
			"tag:router": ["group:ops"],
			"tag:ci": ["group:eng", "bob@"],
			"tag:any": ["autogroup:member"],
			"tag:nested": ["group:all"],
			"tag:admin-only": ["autogroup:admin"],
			"tag:by-tag": ["tag:router"],
		},
	}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		tag, login string
		groups     []string
		want       bool
	}{
		{"tag:router", "ann@example.net", nil, true},
		{"tag:router", "bob@", nil, false},
		{"tag:ci", "bob@", nil, true},
		{"tag:ci", "cy@example.net", []string{"eng"}, true}, // IdP group
		{"tag:ci", "cy@example.net", []string{"ops"}, false},
		{"tag:any", "cy@example.net", nil, true},
		{"tag:nested", "ann@example.net", nil, true},
		{"tag:admin-only", "ann@example.net", nil, false},
		{"tag:by-tag", "ann@example.net", nil, false},
		{"tag:unknown", "ann@example.net", nil, false},
	} {
		if got := p.TagOwnedBy(tc.tag, tc.login, tc.groups); got != tc.want {
			t.Errorf("TagOwnedBy(%s, %s, %v) = %v, want %v", tc.tag, tc.login, tc.groups, got, tc.want)
		}
	}
	if err := p.CheckTagOwners([]string{"tag:router", "tag:any"}, "ann", "ann@example.net", nil); err != nil {
		t.Errorf("ann owns both: %v", err)
	}
	err = p.CheckTagOwners([]string{"tag:any", "tag:router"}, "bob", "bob@", nil)
	if err == nil || !strings.Contains(err.Error(), `does not own tag "tag:router"`) || !strings.Contains(err.Error(), "group:ops") {
		t.Errorf("bob and tag:router: %v", err)
	}
	err = p.CheckTagOwners([]string{"tag:nope"}, "bob", "bob@", nil)
	if err == nil || !strings.Contains(err.Error(), "not in the policy's tagOwners") {
		t.Errorf("unknown tag: %v", err)
	}
	var none *Policy
	if none.TagOwnedBy("tag:router", "ann@example.net", nil) {
		t.Error("nil policy owns a tag")
	}
}
