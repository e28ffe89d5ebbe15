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
		roles      []string
		want       bool
	}{
		{"tag:router", "ann@example.net", nil, nil, true},
		{"tag:router", "bob@", nil, nil, false},
		{"tag:ci", "bob@", nil, nil, true},
		{"tag:ci", "cy@example.net", []string{"eng"}, nil, true}, // IdP group
		{"tag:ci", "cy@example.net", []string{"ops"}, nil, false},
		{"tag:any", "cy@example.net", nil, nil, true},
		{"tag:nested", "ann@example.net", nil, nil, true},
		{"tag:admin-only", "ann@example.net", nil, nil, false},
		{"tag:admin-only", "ann@example.net", nil, []string{"admin"}, true},  // the admin role
		{"tag:admin-only", "admin@", nil, nil, true},                         // the built-in admin user
		{"tag:admin-only", "ann@example.net", []string{"admin"}, nil, false}, // an IdP group named admin is no role
		{"tag:by-tag", "ann@example.net", nil, nil, false},
		{"tag:unknown", "ann@example.net", nil, nil, false},
	} {
		if got := p.TagOwnedBy(tc.tag, tc.login, tc.groups, tc.roles); got != tc.want {
			t.Errorf("TagOwnedBy(%s, %s, %v) = %v, want %v", tc.tag, tc.login, tc.groups, got, tc.want)
		}
	}
	if err := p.CheckTagOwners([]string{"tag:router", "tag:any"}, "ann", "ann@example.net", nil, nil); err != nil {
		t.Errorf("ann owns both: %v", err)
	}
	err = p.CheckTagOwners([]string{"tag:any", "tag:router"}, "bob", "bob@", nil, nil)
	if err == nil || !strings.Contains(err.Error(), `does not own tag "tag:router"`) || !strings.Contains(err.Error(), "group:ops") {
		t.Errorf("bob and tag:router: %v", err)
	}
	err = p.CheckTagOwners([]string{"tag:nope"}, "bob", "bob@", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "not in the policy's tagOwners") {
		t.Errorf("unknown tag: %v", err)
	}
	var none *Policy
	if none.TagOwnedBy("tag:router", "ann@example.net", nil, nil) {
		t.Error("nil policy owns a tag")
	}
}
