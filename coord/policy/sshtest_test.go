package policy

import (
	"strings"
	"testing"
)

func TestSSHTests(t *testing.T) {
	base := `"groups": {"group:ops": ["thor@example.org"]}, "tagOwners": {"tag:server": []},
	"ssh": [
		{"action": "accept", "src": ["group:ops"], "dst": ["tag:server"], "users": ["root"]},
		{"action": "check", "src": ["autogroup:member"], "dst": ["autogroup:self"], "users": ["autogroup:nonroot"]},
		{"action": "accept", "src": ["autogroup:member"], "dst": ["tag:server"], "users": ["localpart:*@example.com"]},
	]`
	good := `{` + base + `, "sshTests": [
		{"src": "thor@example.org", "dst": ["tag:server"], "accept": ["root"], "deny": ["admin"]},
		{"src": "thor@example.org", "dst": ["thor@example.org"], "check": ["thor"], "deny": ["root"]},
		{"src": "odin@example.com", "dst": ["tag:server"], "accept": ["odin"], "deny": ["root", "thor"]},
	]}`
	if err := Check(mustParse(t, good), nil); err != nil {
		t.Fatalf("passing sshTests: %v", err)
	}
	for _, tt := range []struct{ tests, want string }{
		{`{"src": "odin@example.com", "dst": ["tag:server"], "accept": ["root"]}`, `sshTests[0].accept[0]: ssh test failed: odin@example.com -> tag:server as "root" was denied`},
		{`{"src": "thor@example.org", "dst": ["tag:server"], "deny": ["root"]}`, `sshTests[0].deny[0]: ssh test failed: thor@example.org -> tag:server as "root" was allowed`},
		{`{"src": "thor@example.org", "dst": ["thor@example.org"], "accept": ["thor"]}`, `needs a check`},
		{`{"src": "thor@example.org", "dst": ["tag:server:22"], "accept": ["root"]}`, `write the host without a port`},
		{`{"src": "thor@example.org", "dst": ["100.64.0.0/24"], "accept": ["root"]}`, `is a CIDR`},
		{`{"src": "thor@example.org", "dst": ["autogroup:internet"], "accept": ["root"]}`, `must be a user, tag, host alias or IP`},
		{`{"src": "thor@example.org", "dst": ["tag:server"], "accept": ["*"]}`, `sshTests user "*" is not valid`},
		{`{"src": "thor@example.org", "dst": ["tag:server"]}`, `none of "accept", "check" and "deny"`},
	} {
		p, err := Parse("t.hujson", []byte(`{`+base+`, "sshTests": [`+tt.tests+`]}`))
		if err == nil {
			err = Check(p, nil)
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want %q", tt.tests, err, tt.want)
		}
	}
}

func TestNodeAttrs(t *testing.T) {
	p := mustParse(t, `{"tagOwners": {"tag:exit": []}, "nodeAttrs": [
		{"target": ["tag:exit"], "attr": ["funnel", "mullvad"]},
		{"target": ["*"], "attr": ["nextdns:abc"], "ipPool": ["100.90.0.0/16"]},
		{"target": ["autogroup:member"], "app": {"example.com/cap/x": [{}]}},
		{"target": [], "attr": []},
	]}`)
	if got := strings.Join(p.NodeAttrsFor(Node{ID: 1, Tags: []string{"tag:exit"}}), ","); got != "funnel,mullvad,nextdns:abc" {
		t.Errorf("attrs for tag:exit = %s", got)
	}
	var warned string
	for _, w := range p.Warnings {
		warned += w.Error() + "\n"
	}
	for _, want := range []string{`nodeAttrs[0].attr[0]: warning: node attribute "funnel" accepted without effect`, `ipPool 100.90.0.0/16 accepted without effect`} {
		if !strings.Contains(strings.ReplaceAll(warned, "warning: nodeAttrs", "nodeAttrs"), strings.ReplaceAll(want, "warning: ", "")) {
			t.Errorf("warnings lack %q:\n%s", want, warned)
		}
	}
	for in, want := range map[string]string{
		`[{"target": ["tag:nope"], "attr": ["x"]}]`:             `unknown tag "tag:nope"`,
		`[{"target": ["%bogus%"], "attr": ["x"]}]`:              `"%bogus%"`,
		`[{"target": ["*"], "ipPool": ["100.100.100.0/24"]}]`:   `overlaps the reserved range`,
		`[{"target": ["*"], "attr": [""]}]`:                     `empty attribute`,
		`[{"target": ["*"], "attr": ["x"], "postures": ["y"]}]`: `unknown field "postures"`,
	} {
		if _, err := Parse("n.hujson", []byte(`{"nodeAttrs": `+in+`}`)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", in, err, want)
		}
	}
}
