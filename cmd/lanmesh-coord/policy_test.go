package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPolicyCheckOffline: policy check needs no coord (the state dir has
// no socket), reports every error with its place, warns about Tailscale
// settings it accepts without effect, and --strict refuses lanmesh
// extensions.
func TestPolicyCheckOffline(t *testing.T) {
	dir := t.TempDir() // no coord, no admin socket
	write := func(name, body string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	good := write("good.hujson", `{
  "groups": {"group:a": ["a@example.com", "group:b"], "group:b": ["b@example.com"]},
  "hosts": {"web": "100.64.0.5"},
  "randomizeClientPort": true,
  "acls": [{"action": "accept", "src": ["group:a"], "dst": ["web:80"]}],
  "tests": [{"src": "b@example.com", "accept": ["web:80"], "deny": ["web:22"]}],
}`)
	out, code := cli(t, dir, "policy", "check", good)
	if code != 0 || !strings.Contains(out, "good.hujson: ok (1 tests passed, 1 warnings)") ||
		!strings.Contains(out, "good.hujson:4:3: warning: randomizeClientPort: accepted without effect") {
		t.Fatalf("check good: %d\n%s", code, out)
	}
	out, code = cli(t, dir, "policy", "check", "--strict", good)
	if code != 1 || !strings.Contains(out, `good.hujson:2:43: groups["group:a"][1]: group "group:b" inside a group`) {
		t.Fatalf("check --strict: %d\n%s", code, out)
	}

	bad := write("bad.hujson", `{
  "acls": [
    {"action": "accept", "dst": ["web:80"]},
    {"action": "accept", "src": ["tag:nope"], "dst": ["nass:80"]},
  ],
  "sshTests": [{"src": "a@example.com", "dst": ["a@example.com"], "accept": ["root"], "srcPostureAttrs": {}}],
  "tests": [{"src": "a@example.com", "deny": ["100.64.0.5:80"]}],
}`)
	out, code = cli(t, dir, "policy", "check", bad)
	for _, want := range []string{
		`bad.hujson:3:5: acls[0]: missing "src"`,
		`bad.hujson:3:34: acls[0].dst[0]: unknown host alias "web"`,
		`bad.hujson:4:34: acls[1].src[0]: unknown tag "tag:nope"`,
		`bad.hujson:4:55: acls[1].dst[0]: unknown host alias "nass"`,
		`bad.hujson:6:87: sshTests[0].srcPostureAttrs: not supported yet`,
		`policy refused (5 errors)`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check bad: output lacks %q:\n%s", want, out)
		}
	}
	if code != 1 || strings.Contains(out, "admin socket") {
		t.Errorf("check bad: exit %d\n%s", code, out)
	}

	// Tests are judged on the policy: no node has 100.64.0.5, yet a rule
	// admits the test's source to it, so its deny fails.
	tested := write("tested.hujson", `{"acls": [{"action": "accept", "src": ["*"], "dst": ["100.64.0.5:80"]}],
  "tests": [{"src": "a@example.com", "deny": ["100.64.0.5:80"]}]}`)
	out, code = cli(t, dir, "policy", "check", "--json", tested)
	var res checkResult
	if err := json.Unmarshal([]byte(out[:strings.LastIndex(out, "}")+1]), &res); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if code != 1 || res.OK || len(res.Errors) != 1 || !strings.Contains(res.Errors[0], "tests[0].deny[0]: test failed") {
		t.Errorf("deny on a policy that allows: %d %+v", code, res)
	}

	if out, code := cli(t, dir, "policy", "--help"); code != 0 || !strings.Contains(out, "policy check FILE") {
		t.Errorf("policy --help: %d\n%s", code, out)
	}
	if out, code := cli(t, dir, "policy", "check", "--help"); code != 0 || !strings.Contains(out, "--strict") && !strings.Contains(out, "-strict") {
		t.Errorf("policy check --help: %d\n%s", code, out)
	}
}
