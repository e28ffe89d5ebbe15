package host

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/plugins/sdk"
)

// TestDocExample: the example plugin in docs/plugins.md, extracted as is,
// builds and works as a plugin: a plugin written from the docs alone runs.
func TestDocExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/plugins.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(doc), "<!-- example: lanmesh-idp-hello -->\n```go\n")
	if !ok {
		t.Fatal("docs/plugins.md lost its example marker")
	}
	src, _, ok := strings.Cut(after, "```\n")
	if !ok {
		t.Fatal("example not closed")
	}
	// Inside the module, so that the example's import of
	// github.com/lanmesh/lanmesh resolves to this tree.
	srcDir, err := os.MkdirTemp(".", "docexample")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(srcDir)
	os.WriteFile(filepath.Join(srcDir, "main.go"), []byte(src), 0o644)
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "lanmesh-idp-hello"), "./"+srcDir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the docs example: %v\n%s", err, out)
	}
	c, err := ParseConfig([]byte(`{"plugins": [{"kind": "idp", "name": "hello", "settings": {"user": "ann", "groups": ["eng"]}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	h, err := Start(context.Background(), Options{Dir: dir, Config: c, Kinds: []sdk.Kind{sdk.IdPKind}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	p, _ := h.IdP("hello")
	waitState(t, p.Instance(), StateRunning, 20*time.Second)
	resp, err := p.BeginLogin(context.Background(), sdk.BeginRequest{RedirectURL: "https://coord.test/callback", State: "s1", Nonce: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	u := strings.TrimPrefix(resp.AuthURL, "https://coord.test/callback?")
	q, _ := parseQuery(u)
	id, err := p.CompleteLogin(context.Background(), sdk.CompleteRequest{State: "s1", Nonce: "n1", Query: q})
	if err != nil || id.Subject != "ann" || len(id.Groups) != 1 || id.Groups[0] != "eng" {
		t.Fatalf("CompleteLogin = %+v, %v", id, err)
	}
	if p.DisplayName() != "Hello (lab login)" {
		t.Errorf("display name %q", p.DisplayName())
	}
}

func parseQuery(s string) (map[string][]string, error) {
	v, err := url.ParseQuery(s)
	return v, err
}
