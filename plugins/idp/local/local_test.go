package local

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/bcrypt"

	"github.com/lanmesh/lanmesh/plugins/sdk"
)

const secret = "JBSWY3DPEHPK3PXP"

func newIdP(t *testing.T, now *time.Time) *IdP {
	t.Helper()
	h, _ := bcrypt.GenerateFromPassword([]byte("pw-ann"), bcrypt.MinCost)
	users := []User{{Username: "ann", PasswordHash: string(h), TOTPSecret: secret, Email: "ann@example.net", Groups: []string{"eng"}}}
	b, _ := json.Marshal(users)
	f := filepath.Join(t.TempDir(), "users.json")
	os.WriteFile(f, b, 0o600)
	p := &IdP{Now: func() time.Time { return *now }}
	if _, err := p.Configure(context.Background(), []byte(`{"users_file": "`+f+`"}`)); err != nil {
		t.Fatal(err)
	}
	return p
}

func post(p *IdP, state, user, pw, code string) *httptest.ResponseRecorder {
	form := url.Values{"state": {state}, "username": {user}, "password": {pw}, "code": {code}}
	r := httptest.NewRequest("POST", "/login", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	p.ServeHTTP(w, r)
	return w
}

func TestLocalLogin(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	p := newIdP(t, &now)
	resp, err := p.BeginLogin(context.Background(), sdk.BeginRequest{RedirectURL: "https://coord.test/callback", State: "st1", Nonce: "n", PluginURL: "https://coord.test/login/local/p/"})
	if err != nil || resp.AuthURL != "https://coord.test/login/local/p/login?state=st1" {
		t.Fatalf("begin %+v %v", resp, err)
	}
	code, _ := totp.GenerateCode(secret, now)
	if w := post(p, "st1", "ann", "wrong", code); w.Code != http.StatusUnauthorized {
		t.Errorf("wrong password: %d", w.Code)
	}
	if w := post(p, "st1", "ann", "pw-ann", "000000"); w.Code != http.StatusUnauthorized {
		t.Errorf("wrong TOTP: %d", w.Code)
	}
	w := post(p, "st1", "ann", "pw-ann", code)
	if w.Code != http.StatusSeeOther {
		t.Fatalf("good login: %d %s", w.Code, w.Body)
	}
	loc, _ := url.Parse(w.Header().Get("Location"))
	if loc.Host != "coord.test" || loc.Query().Get("state") != "st1" {
		t.Fatalf("redirect %s", loc)
	}
	// The same TOTP code again is a replay, even for a new login.
	p.BeginLogin(context.Background(), sdk.BeginRequest{RedirectURL: "https://coord.test/callback", State: "st2", PluginURL: "https://x/"})
	if w := post(p, "st2", "ann", "pw-ann", code); w.Code != http.StatusUnauthorized {
		t.Errorf("replayed TOTP code accepted: %d", w.Code)
	}
	// The code is bound to its state and single use.
	if _, err := p.CompleteLogin(context.Background(), sdk.CompleteRequest{State: "st2", Query: loc.Query()}); !errors.Is(err, sdk.ErrBadCallback) {
		t.Errorf("code with another state: %v", err)
	}
	if _, err := p.CompleteLogin(context.Background(), sdk.CompleteRequest{State: "st1", Query: loc.Query()}); !errors.Is(err, sdk.ErrBadCallback) {
		t.Errorf("code reused after a failed try: %v", err)
	}
}

func TestLocalLoginComplete(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	p := newIdP(t, &now)
	p.BeginLogin(context.Background(), sdk.BeginRequest{RedirectURL: "https://coord.test/callback", State: "st1", PluginURL: "https://x/"})
	code, _ := totp.GenerateCode(secret, now)
	loc, _ := url.Parse(post(p, "st1", "ann", "pw-ann", code).Header().Get("Location"))
	id, err := p.CompleteLogin(context.Background(), sdk.CompleteRequest{State: "st1", Query: loc.Query()})
	if err != nil || id.Subject != "ann" || id.Groups[0] != "eng" {
		t.Fatalf("complete: %+v %v", id, err)
	}
	if _, err := p.CompleteLogin(context.Background(), sdk.CompleteRequest{State: "st1", Query: loc.Query()}); !errors.Is(err, sdk.ErrBadCallback) {
		t.Errorf("reused code: %v", err)
	}
	if _, err := p.Refresh(context.Background(), sdk.Identity{Subject: "bob"}); !errors.Is(err, sdk.ErrRefused) {
		t.Errorf("refresh of unknown user: %v", err)
	}
}

func TestLocalLockout(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	p := newIdP(t, &now)
	p.BeginLogin(context.Background(), sdk.BeginRequest{RedirectURL: "https://coord.test/callback", State: "st1", PluginURL: "https://x/"})
	for range maxFailures {
		post(p, "st1", "ann", "guess", "")
	}
	code, _ := totp.GenerateCode(secret, now)
	if w := post(p, "st1", "ann", "pw-ann", code); w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "too many failed attempts") {
		t.Errorf("locked user logged in: %d", w.Code)
	}
}

func TestParseUsers(t *testing.T) {
	for _, in := range []string{`{}`, `[{"username": "", "password_hash": "x"}]`, `[{"username": "a", "password_hash": "plain"}]`, `[{"username":"a","password_hash":"$2a$04$abcdefghijklmnopqrstuu2f6bgJ8/R6cJ0TJSgJrAfdGg8TDtwm2","totp_secret":"!!"}]`} {
		if _, err := ParseUsers([]byte(in)); err == nil {
			t.Errorf("accepted %s", in)
		}
	}
}

func FuzzParseUsers(f *testing.F) {
	f.Add([]byte(`[{"username": "a", "password_hash": "$2a$04$abcdefghijklmnopqrstuu2f6bgJ8/R6cJ0TJSgJrAfdGg8TDtwm2"}]`))
	f.Fuzz(func(t *testing.T, b []byte) { ParseUsers(b) })
}
