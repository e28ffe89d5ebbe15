package testbed

import (
	"encoding/base64"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestScanLogs(t *testing.T) {
	dir := t.TempDir()
	raw := []byte("0123456789abcdef0123456789abcdef")
	b64 := base64.StdEncoding.EncodeToString(raw)
	code := "c0de/with+chars=="
	os.WriteFile(filepath.Join(dir, "agent.log"), []byte("key "+strings.ToLower("3031323334353637383961626364656630313233343536373839616263646566")+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "clean.log"), []byte("nothing here\n"), 0o600)
	hits, err := ScanLogs([]Secret{{"node key", b64}, {"oidc code", code}, {"cookie", "session-value-1"}},
		[]string{dir}, map[string]string{"coord": "GET /callback?code=" + url.QueryEscape(code)})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "agent.log") + ": contains node key", "coord: contains oidc code"}
	if strings.Join(hits, "|") != strings.Join(want, "|") {
		t.Errorf("hits %q, want %q", hits, want)
	}
	for _, h := range hits {
		if strings.Contains(h, b64) || strings.Contains(h, code) {
			t.Errorf("a finding prints the secret: %q", h)
		}
	}
	if _, err := ScanLogs(nil, []string{dir}, nil); err == nil {
		t.Error("no secrets: want an error")
	}
	if _, err := ScanLogs([]Secret{{"short", "abc"}}, []string{dir}, nil); err == nil {
		t.Error("a 3-character secret: want an error")
	}
	if _, err := ScanLogs([]Secret{{"x", "long-enough"}}, []string{filepath.Join(dir, "missing")}, nil); err == nil {
		t.Error("unreadable dir: want an error")
	}
}
