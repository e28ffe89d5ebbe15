package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/coord/server"
	"github.com/lanmesh/lanmesh/internal/controlclient"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// browserLogin plays a browser through a whole login without Chromium:
// coord's login URL, oidc-provider's development login and consent
// forms, and back to coord's callback, which must say "Logged in".
func browserLogin(t *testing.T, loginURL, user string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // coord's self-signed test certificate
	resp, err := c.Get(loginURL)
	for step := 0; step < 8; step++ {
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), "Logged in") {
			return
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
	t.Fatal("the login did not come back to coord")
}

// TestRefreshRefusedDisablesUser (issue 15, "Instant revocation": the
// IdP refuses the user's refresh, checked periodically). ann logs in
// through the real OIDC plugin at a real oidc-provider (offline_access:
// coord keeps her refresh token). While the provider knows her, coord's
// refresh check (every second here) keeps her. Then her account is
// deleted at the provider: the next check's refresh is refused
// (invalid_grant), coord disables ann, and her node leaves bob's netmap
// at once. The refresh token never reaches a log (S11).
func TestRefreshRefusedDisablesUser(t *testing.T) {
	logs := &syncBuf{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	callback := "https://" + ln.Addr().String() + "/callback"
	clients := `[{"client_id":"lanmesh","client_secret":"` + clientSecret + `","redirect_uris":["` + callback + `"]}]`
	issuer := startProvider(t, clients, `{"ann": ["eng"]}`, logs)
	pluginsDir := buildPlugins(t)
	work := t.TempDir()
	os.WriteFile(filepath.Join(work, "client-secret"), []byte(clientSecret+"\n"), 0o600)
	cfg := fmt.Sprintf(`{"plugins": [{"kind": "idp", "name": "oidc", "executable": "lanmesh-idp-oidc", "settings": {"issuer": %q, "client_id": "lanmesh",
		"client_secret_file": %q, "scopes": ["openid", "email", "profile", "groups", "offline_access"]}}]}`, issuer, filepath.Join(work, "client-secret"))
	c := startCoordWith(t, ln, pluginsDir, cfg, logs, func(sc *server.Config) { sc.IdPRefreshInterval = time.Second })
	defer func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs)
		}
	}()
	ctx := context.Background()
	if err := c.admin.Do(ctx, "POST", adminapi.PathPolicy, adminapi.PolicyRequest{Body: `{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}`}, nil); err != nil {
		t.Fatal(err)
	}

	// bob's server watches the netmap.
	var k adminapi.Key
	if err := c.admin.Do(ctx, "POST", adminapi.PathKeys, adminapi.CreateKeyRequest{Expiry: "1h"}, &k); err != nil {
		t.Fatal(err)
	}
	ak, _ := wire.ParseAuthKey(k.Key)
	bob, err := controlclient.New(controlclient.Options{ServerURL: c.url, Fingerprint: c.fp, MachineKey: key.NewMachine()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bob.Close)
	bobKey := key.NewNode().Public()
	if _, err := bob.Register(ctx, wire.RegisterRequest{AuthKey: ak.WithoutFingerprint(), NodeKey: bobKey, Hostname: "bobserver"}); err != nil {
		t.Fatal(err)
	}

	// ann logs in through coord, the OIDC plugin and the provider.
	cc, _, lr := loginNode(t, c, "annlaptop", "oidc")
	browserLogin(t, lr.URL, "ann")
	r := waitLogin(t, cc, lr.ID)
	if r.Error != "" || r.Node == nil || r.User != "ann" {
		t.Fatalf("ann's login: %+v", r)
	}
	annID := r.Node.ID
	ids, err := c.st.Identities(ctx)
	if err != nil || len(ids) != 1 || len(ids[0].Secret) == 0 {
		t.Fatalf("no refresh token stored for ann (offline_access): %+v %v", len(ids), err)
	}
	refreshToken := string(ids[0].Secret)

	msgs := make(chan *wire.MapMessage, 100)
	sctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		bob.Map(sctx, wire.MapRequest{NodeKey: bobKey}, func(m *wire.MapMessage) error { msgs <- m; return nil })
	}()
	t.Cleanup(func() { stop(); <-done })
	waitMsg := func(what string, ok func(*wire.MapMessage) bool) {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case m := <-msgs:
				if ok(m) {
					return
				}
			case <-timeout:
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitMsg("ann's node in bob's full map", func(m *wire.MapMessage) bool {
		for _, p := range m.Peers {
			if p.ID == annID {
				return true
			}
		}
		return false
	})

	// Several refresh checks pass while the provider knows ann.
	time.Sleep(3500 * time.Millisecond)
	if annDisabled(t, c) {
		t.Fatal("ann disabled while her IdP still knows her")
	}
	ids, _ = c.st.Identities(ctx)
	if len(ids) != 1 || time.Since(ids[0].Updated) > 3*time.Second {
		t.Fatalf("the refresh check did not run (identity updated %v ago)", time.Since(ids[0].Updated))
	}

	// The provider deletes ann's account.
	resp, err := http.Post(issuer+"/test/delete-account?id=ann", "text/plain", nil)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete ann at the provider: %v %v", err, resp)
	}
	resp.Body.Close()
	start := time.Now()
	waitMsg("ann's node removed from bob's netmap", func(m *wire.MapMessage) bool {
		for _, id := range m.PeersRemoved {
			if id == annID {
				return true
			}
		}
		return false
	})
	t.Logf("account deleted at the provider -> ann's node gone from bob's netmap in %v (refresh check every 1 s)", time.Since(start).Round(time.Millisecond))
	if !annDisabled(t, c) {
		t.Fatal("ann's node left, but ann is not disabled")
	}
	if !strings.Contains(logs.String(), "IdP refused the refresh") {
		t.Error("coord did not log why ann was disabled")
	}
	for _, s := range []string{refreshToken, clientSecret} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("S11: a secret (%d chars) is in the logs", len(s))
		}
	}
}

func annDisabled(t *testing.T, c coordUnderTest) bool {
	t.Helper()
	var users []adminapi.User
	if err := c.admin.Do(context.Background(), "GET", adminapi.PathUsers, nil, &users); err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		if u.Name == "ann" {
			return u.Disabled
		}
	}
	t.Fatal("no user ann")
	return false
}
