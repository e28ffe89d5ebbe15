package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/testenv"
)

// providerDir returns a directory with oidc-provider@9 installed and the
// test's provider script next to it.
func providerDir(t *testing.T) string {
	t.Helper()
	node := testenv.RequireTool(t, "node", "nodejs")
	_ = node
	npm := testenv.RequireTool(t, "npm", "npm")
	base := os.Getenv("LANMESH_CACHE_DIR")
	if base == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			t.Fatal(err)
		}
		base = filepath.Join(c, "lanmesh")
	}
	dir := filepath.Join(base, "oidc-provider9")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "oidc-provider", "package.json")); err != nil {
		os.MkdirAll(dir, 0o755)
		cmd := exec.Command(npm, "install", "--no-audit", "--no-fund", "--prefix", dir, "oidc-provider@9")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm install oidc-provider@9: %v\n%s", err, out)
		}
	}
	script, err := os.ReadFile("testdata/provider.mjs")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "provider.mjs"), script, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// syncBuf collects logs the test greps (S11).
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startProvider runs oidc-provider on loopback and returns its issuer.
func startProvider(t *testing.T, clients, groups string, logs io.Writer) string {
	t.Helper()
	dir := providerDir(t)
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "node", filepath.Join(dir, "provider.mjs"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), fmt.Sprintf("PORT=%d", port), "CLIENTS="+clients, "GROUPS="+groups)
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			fmt.Fprintln(logs, sc.Text())
			if strings.Contains(sc.Text(), "oidc-provider ready") {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("oidc-provider did not start")
	}
	return fmt.Sprintf("http://127.0.0.1:%d", port)
}

var (
	formAction  = regexp.MustCompile(`<form[^>]*action="([^"]+)"`)
	hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)"`)
)

// devLogin plays the browser at oidc-provider's development login and
// consent pages without Chromium (for the many token tests) and returns
// the query of the redirect to redirectURI.
func devLogin(t *testing.T, authURL, redirectURI, user string) url.Values {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	var final *url.URL
	c := &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), redirectURI) {
			final = req.URL
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err := c.Get(authURL)
	for step := 0; step < 8; step++ {
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if final != nil {
			return final.Query()
		}
		m := formAction.FindSubmatch(b)
		if m == nil {
			t.Fatalf("no form at %s (%d): %.300s", resp.Request.URL, resp.StatusCode, b)
		}
		action, _ := resp.Request.URL.Parse(string(m[1]))
		form := url.Values{}
		for _, h := range hiddenInput.FindAllSubmatch(b, -1) {
			form.Set(string(h[1]), string(h[2]))
		}
		if strings.Contains(string(b), `name="login"`) {
			form.Set("login", user)
			form.Set("password", "any")
		}
		resp, err = c.PostForm(action.String(), form)
	}
	t.Fatal("login did not come back to the redirect URI")
	return nil
}
