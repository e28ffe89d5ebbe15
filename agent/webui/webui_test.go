package webui

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/agent/localapi"
)

// fakeBackend records what the page asked for.
type fakeBackend struct {
	ups   []localapi.UpRequest
	downs int
}

func (f *fakeBackend) Status(context.Context) localapi.Status {
	return localapi.Status{BackendState: localapi.StateRunning, Peers: []localapi.Peer{{Name: "router-a"}}}
}
func (f *fakeBackend) Up(_ context.Context, r localapi.UpRequest) (localapi.UpResponse, error) {
	f.ups = append(f.ups, r)
	return localapi.UpResponse{}, nil
}
func (f *fakeBackend) Down(context.Context) error { f.downs++; return nil }
func (f *fakeBackend) Ping(context.Context, localapi.PingRequest) (localapi.PingResponse, error) {
	return localapi.PingResponse{}, nil
}

const testHost = "192.168.1.1:8081"
const testToken = "0123456789abcdef0123456789abcdef"

type client struct {
	t       *testing.T
	h       http.Handler
	cookies map[string]string
	csrf    string
}

func (c *client) do(method, path, body string, hdr map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "http://"+testHost+path, strings.NewReader(body))
	for k, v := range c.cookies {
		r.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	if method == http.MethodPost {
		r.Header.Set(CSRFHeader, c.csrf)
	}
	for k, v := range hdr {
		if v == "" {
			r.Header.Del(k)
		} else {
			r.Header.Set(k, v)
		}
	}
	w := httptest.NewRecorder()
	c.h.ServeHTTP(w, r)
	for _, ck := range w.Result().Cookies() {
		if ck.MaxAge < 0 {
			delete(c.cookies, ck.Name)
		} else {
			c.cookies[ck.Name] = ck.Value
		}
	}
	return w
}

func newClient(t *testing.T, h http.Handler) *client {
	c := &client{t: t, h: h, cookies: map[string]string{}}
	w := c.do("GET", PathSession, "", nil)
	var s struct {
		CSRF     string `json:"csrf"`
		LoggedIn bool   `json:"logged_in"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &s); err != nil || w.Code != 200 || len(s.CSRF) != 64 || s.LoggedIn {
		t.Fatalf("session: %d %s", w.Code, w.Body)
	}
	c.csrf = s.CSRF
	return c
}

// The guards of S5: DNS rebinding (Host), CSRF, cross-origin posts, and
// no access without a session.
func TestGuards(t *testing.T) {
	fb := &fakeBackend{}
	var saved []Settings
	now := time.Unix(1e9, 0)
	h := New(Options{Backend: fb, Hosts: HostsFor(testHost, []string{"router.lan"}), Token: testToken,
		Persist: func(s Settings) error { saved = append(saved, s); return nil },
		Now:     func() time.Time { return now }})
	c := newClient(t, h)

	// Not logged in: the API refuses, the page itself loads.
	if w := c.do("GET", PathStatus, "", nil); w.Code != http.StatusUnauthorized {
		t.Errorf("status without session = %d", w.Code)
	}
	if w := c.do("POST", PathUp, `{"accept_routes":true}`, nil); w.Code != http.StatusUnauthorized || len(fb.ups) != 0 {
		t.Errorf("up without session = %d", w.Code)
	}
	if w := c.do("GET", "/", "", nil); w.Code != 200 || !strings.Contains(w.Body.String(), "app.js") || w.Header().Get("X-Frame-Options") != "DENY" {
		t.Errorf("index = %d %q", w.Code, w.Body)
	}
	if w := c.do("POST", PathLogin, `{"token":"wrong-wrong-wrong-wrong"}`, nil); w.Code != http.StatusUnauthorized {
		t.Errorf("wrong token = %d", w.Code)
	}
	if w := c.do("POST", PathLogin, `{"token":"`+testToken+`"}`, nil); w.Code != 200 {
		t.Fatalf("login = %d %s", w.Code, w.Body)
	}
	if w := c.do("GET", PathStatus, "", nil); w.Code != 200 || !strings.Contains(w.Body.String(), "router-a") {
		t.Errorf("status = %d %s", w.Code, w.Body)
	}

	refused := []struct {
		name string
		hdr  map[string]string
		host string
	}{
		{"foreign host (DNS rebinding)", nil, "evil.example:8081"},
		{"host without port", nil, "router.lan"},
		{"no CSRF token", map[string]string{CSRFHeader: ""}, ""},
		{"wrong CSRF token", map[string]string{CSRFHeader: strings.Repeat("a", 64)}, ""},
		{"cross-origin Origin", map[string]string{"Origin": "http://evil.example"}, ""},
		{"cross-site fetch", map[string]string{"Sec-Fetch-Site": "cross-site"}, ""},
		{"same-site fetch", map[string]string{"Sec-Fetch-Site": "same-site"}, ""},
	}
	for _, tc := range refused {
		r := httptest.NewRequest("POST", "http://"+testHost+PathUp, strings.NewReader(`{"accept_routes":true}`))
		if tc.host != "" {
			r.Host = tc.host
		}
		for k, v := range c.cookies {
			r.AddCookie(&http.Cookie{Name: k, Value: v})
		}
		r.Header.Set(CSRFHeader, c.csrf)
		for k, v := range tc.hdr {
			if v == "" {
				r.Header.Del(k)
			} else {
				r.Header.Set(k, v)
			}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusForbidden {
			t.Errorf("%s: %d %s, want 403", tc.name, w.Code, w.Body)
		}
	}
	if len(fb.ups) != 0 {
		t.Fatalf("a refused request reached the backend: %+v", fb.ups)
	}
	// A GET with a foreign Host is refused too (no status leaks).
	r := httptest.NewRequest("GET", "http://evil.example"+PathStatus, nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusForbidden {
		t.Errorf("GET foreign host = %d", w.Code)
	}

	// The good flow: same-origin, token, session.
	w = c.do("POST", PathUp, `{"advertise_routes":["198.18.9.0/24"],"accept_routes":true}`,
		map[string]string{"Origin": "http://" + testHost, "Sec-Fetch-Site": "same-origin"})
	if w.Code != 200 || len(fb.ups) != 1 || len(saved) != 1 {
		t.Fatalf("up = %d %s, ups %v", w.Code, w.Body, fb.ups)
	}
	if u := fb.ups[0]; u.AcceptRoutes == nil || !*u.AcceptRoutes || u.AdvertiseRoutes == nil || (*u.AdvertiseRoutes)[0] != netip.MustParsePrefix("198.18.9.0/24") || u.AdvertiseExitNode != nil {
		t.Errorf("up request = %+v", u)
	}
	if w := c.do("POST", PathUp, `{"bogus":1}`, nil); w.Code != http.StatusBadRequest {
		t.Errorf("unknown field = %d", w.Code)
	}
	if w := c.do("POST", PathDown, `{}`, nil); w.Code != 200 || fb.downs != 1 {
		t.Errorf("down = %d", w.Code)
	}

	// The session expires on the server.
	now = now.Add(SessionTTL)
	if w := c.do("GET", PathStatus, "", nil); w.Code != http.StatusUnauthorized {
		t.Errorf("expired session = %d", w.Code)
	}
	now = now.Add(-SessionTTL)
	c.do("POST", PathLogin, `{"token":"`+testToken+`"}`, nil)
	if w := c.do("POST", PathLogout, `{}`, nil); w.Code != 200 {
		t.Errorf("logout = %d", w.Code)
	}
	if w := c.do("GET", PathStatus, "", nil); w.Code != http.StatusUnauthorized {
		t.Errorf("after logout = %d", w.Code)
	}
}

func TestLoadToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "web.token")
	tok, err := LoadToken(path)
	if err != nil || len(tok) != 64 {
		t.Fatalf("create: %q %v", tok, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v", fi.Mode().Perm())
	}
	if again, err := LoadToken(path); err != nil || again != tok {
		t.Errorf("reload = %q %v", again, err)
	}
	os.Chmod(path, 0o644)
	if _, err := LoadToken(path); err == nil {
		t.Error("world-readable token file accepted")
	}
	os.WriteFile(path, []byte("short\n"), 0o600)
	os.Chmod(path, 0o600)
	if _, err := LoadToken(path); err == nil {
		t.Error("short token accepted")
	}
}

func TestPersistUCI(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lanmesh")
	os.WriteFile(path, []byte("config join 'join'\n\tlist advertise_routes 'lan'\n\toption accept_routes '0'\n"), 0o600)
	routes := []netip.Prefix{netip.MustParsePrefix("198.18.9.0/24")}
	yes := true
	if err := PersistUCI(path)(Settings{AdvertiseRoutes: &routes, AcceptRoutes: &yes}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if s := string(b); !strings.Contains(s, "list advertise_routes '198.18.9.0/24'") || !strings.Contains(s, "option accept_routes '1'") || strings.Contains(s, "'lan'") ||
		strings.Contains(s, "advertise_exit_node") {
		t.Errorf("file:\n%s", b)
	}
	// The exit node offer lands in join.advertise_exit_node; the other
	// settings stay as they are.
	if err := PersistUCI(path)(Settings{AdvertiseExitNode: &yes}); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	if s := string(b); !strings.Contains(s, "option advertise_exit_node '1'") || !strings.Contains(s, "option accept_routes '1'") || !strings.Contains(s, "'198.18.9.0/24'") {
		t.Errorf("after the exit node offer, file:\n%s", b)
	}
}

func TestHostsFor(t *testing.T) {
	got := strings.Join(HostsFor("[fd00::1]:80", []string{"router.lan"}), " ")
	if got != "[fd00::1]:80 router.lan:80 router.lan [fd00::1]" {
		t.Errorf("hosts = %s", got)
	}
}
