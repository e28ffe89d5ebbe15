package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunPolicyCompat: files are judged as policy check judges them,
// refusals are grouped by reason, and recorded verdicts are compared.
func TestRunPolicyCompat(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("ok.hujson", `{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}], "randomizeClientPort": true}`)
	write("ok.expect.json", `{"code": 200}`)
	write("bad1.hujson", `{"acls": [{"action": "accept", "src": ["tag:a"], "dst": ["*:*"]}]}`)
	write("bad1.expect.json", `{"code": 400, "message": "tag not found"}`)
	write("bad2.json", `{"acls": [{"action": "accept", "src": ["tag:b"], "dst": ["*:*"]}]}`)
	write("wrong.hujson", `{"groups": {"group:a": ["group:b"], "group:b": ["x@y.z"]}}`)
	write("wrong.expect.json", `{"code": 400, "message": "group members cannot be recursive"}`)
	res, err := RunPolicyCompat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 4 || res.Accepted != 2 || res.Refused[`unknown tag "…" (tags must be listed in tagOwners)`] != 2 || len(res.Crashed) != 0 {
		t.Fatalf("result %+v", res)
	}
	if res.Expected != 3 || res.BothAccepted != 1 || res.BothRefused != 1 || res.StrictRefused != 2 || len(res.WronglyAccepted) != 1 || res.Warned != 1 {
		t.Fatalf("agreement %+v", res)
	}
	var md bytes.Buffer
	if err := WritePolicyCompatReport(&md, res, CurrentEnv(), "lanmesh-bench -only policycompat -policy-dir x"); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "out.md")
	write("out.md", "# head\n\n"+corpusBegin+"\nold\n"+corpusEnd+"\ntail\n")
	if err := UpdatePolicyCompatFile(file, md.Bytes()); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(file)
	if s := string(b); !strings.HasPrefix(s, "# head") || strings.Contains(s, "old") || !strings.HasSuffix(s, "tail\n") || !strings.Contains(s, "| 4 | 2 (50.0%)") {
		t.Errorf("updated file:\n%s", s)
	}
}
