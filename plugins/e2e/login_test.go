package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/bcrypt"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/coord/server"
	"github.com/lanmesh/lanmesh/coord/store"
	"github.com/lanmesh/lanmesh/internal/controlclient"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/testbed"
	"github.com/lanmesh/lanmesh/internal/testenv"
	"github.com/lanmesh/lanmesh/internal/tlscert"
	"github.com/lanmesh/lanmesh/internal/wire"
	"github.com/lanmesh/lanmesh/plugins/host"
	"github.com/lanmesh/lanmesh/plugins/sdk"
)

const (
	totpSecret = "JBSWY3DPEHPK3PXP"
	carlPass   = "carl-password-e2e-7731"
)

// buildPlugins builds the two IdP plugin executables into a directory.
func buildPlugins(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"lanmesh-idp-oidc", "lanmesh-idp-local"} {
		if bin := os.Getenv("LANMESH_BIN_DIR"); bin != "" {
			if _, err := os.Stat(filepath.Join(bin, name)); err == nil {
				b, _ := os.ReadFile(filepath.Join(bin, name))
				os.WriteFile(filepath.Join(dir, name), b, 0o755)
				continue
			}
		}
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), "github.com/lanmesh/lanmesh/cmd/"+name)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", name, err, out)
		}
	}
	return dir
}

type coordUnderTest struct {
	url   string
	fp    string
	admin *adminapi.Client
	st    store.Store
}

// startCoord runs coord in-process with the IdP plugins (real executables
// under plugins/host) and returns it; logs collects coord's and the
// plugins' log lines.
func startCoord(t *testing.T, ln net.Listener, pluginsDir, pluginsConfig string, logs *syncBuf) coordUnderTest {
	t.Helper()
	return startCoordWith(t, ln, pluginsDir, pluginsConfig, logs, nil)
}

// startCoordWith is startCoord with tune run on the server's config.
func startCoordWith(t *testing.T, ln net.Listener, pluginsDir, pluginsConfig string, logs *syncBuf, tune func(*server.Config)) coordUnderTest {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg, err := host.ParseConfig([]byte(pluginsConfig))
	if err != nil {
		t.Fatal(err)
	}
	h, err := host.Start(ctx, host.Options{Dir: pluginsDir, Config: cfg, Logger: log, Kinds: []sdk.Kind{sdk.IdPKind}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := h.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	var providers []server.LoginProvider
	for _, p := range h.IdPs() {
		if st := p.Instance().Status(); st.State != host.StateRunning {
			t.Fatalf("plugin %s: %s %v", p.Name(), st.State, st.Err)
		}
		t.Logf("plugin %s start-up: %s", p.Name(), p.Instance().Status().StartDuration)
		providers = append(providers, p)
	}
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "coord.db"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tlscert.LoadOrCreate(dir, "lanmesh-coord", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + ln.Addr().String()
	scfg := server.Config{Store: st, Cert: cert, Logger: log, LoginProviders: providers, PublicURL: url, KeepAlive: 500 * time.Millisecond}
	if tune != nil {
		tune(&scfg)
	}
	srv, err := server.New(ctx, scfg)
	if err != nil {
		t.Fatal(err)
	}
	aln, err := server.ListenAdmin(filepath.Join(dir, "admin.sock"))
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln, aln) }()
	t.Cleanup(func() { stop(); <-done; st.Close() })
	return coordUnderTest{url: url, fp: srv.Fingerprint(), admin: adminapi.NewClient(filepath.Join(dir, "admin.sock")), st: st}
}

// browse runs headless Chromium that can reach loopback only.
func browse(t *testing.T) context.Context {
	t.Helper()
	chromium := testenv.RequireTool(t, "chromium", "chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox,
		chromedp.Flag("ignore-certificate-errors", true), // coord's self-signed certificate
		// Nothing but loopback: the provider's page imports a web font.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancel3)
	return ctx
}

// peersOf opens n's netmap stream and returns the names of its peers in
// the first full map.
func peersOf(t *testing.T, c *controlclient.Client, nk key.NodePublic) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var names []string
	errDone := fmt.Errorf("done")
	err := c.Map(ctx, wire.MapRequest{NodeKey: nk}, func(m *wire.MapMessage) error {
		if !m.Full {
			return nil
		}
		for _, p := range m.Peers {
			names = append(names, p.Name)
		}
		return errDone
	})
	if err != errDone && !strings.Contains(fmt.Sprint(err), "done") {
		t.Fatalf("map: %v", err)
	}
	return names
}

// loginNode asks coord for a login URL for a new node and returns it with
// the node's client and key.
func loginNode(t *testing.T, c coordUnderTest, host, provider string) (*controlclient.Client, key.NodePublic, wire.LoginResponse) {
	t.Helper()
	cc, err := controlclient.New(controlclient.Options{ServerURL: c.url, Fingerprint: c.fp, MachineKey: key.NewMachine()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Close)
	nk := key.NewNode().Public()
	lr, err := cc.Login(context.Background(), wire.LoginRequest{NodeKey: nk, Hostname: host, Provider: provider})
	if err != nil {
		t.Fatal(err)
	}
	return cc, nk, lr
}

func waitLogin(t *testing.T, cc *controlclient.Client, id string) wire.LoginWaitResponse {
	t.Helper()
	for range 4 {
		r, err := cc.LoginWait(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if r.Done {
			return r
		}
	}
	t.Fatal("login did not finish")
	return wire.LoginWaitResponse{}
}

// TestLoginWithChromium: a node asks for a login URL; headless Chromium
// logs in at a real oidc-provider through coord and the real OIDC plugin;
// the node then belongs to that user with the IdP's groups, and the policy
// applies by IdP group. The same through the local-users plugin and its
// own form (with a TOTP code). No secret reaches a log (S11).
func TestLoginWithChromium(t *testing.T) {
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
	hash, _ := bcrypt.GenerateFromPassword([]byte(carlPass), bcrypt.MinCost)
	users, _ := json.Marshal([]map[string]any{{"username": "carl", "password_hash": string(hash), "totp_secret": totpSecret, "email": "carl@example.net", "groups": []string{"sales"}}})
	os.WriteFile(filepath.Join(work, "users.json"), users, 0o600)
	cfg := fmt.Sprintf(`{"plugins": [
		{"kind": "idp", "name": "oidc", "executable": "lanmesh-idp-oidc", "settings": {"issuer": %q, "client_id": "lanmesh",
		 "client_secret_file": %q, "scopes": ["openid", "email", "profile", "groups", "offline_access"], "display_name": "Test OP"}},
		{"kind": "idp", "name": "local", "executable": "lanmesh-idp-local", "settings": {"users_file": %q}}
	]}`, issuer, filepath.Join(work, "client-secret"), filepath.Join(work, "users.json"))
	c := startCoord(t, ln, pluginsDir, cfg, logs)
	defer func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs)
		}
	}()

	// bob's server, joined with an auth key; the policy lets the IdP
	// group eng (declared, with no listed members) reach it.
	ctx := context.Background()
	if err := c.admin.Do(ctx, "POST", adminapi.PathUsers, adminapi.CreateUserRequest{Name: "bob", Email: "bob@example.net"}, nil); err != nil {
		t.Fatal(err)
	}
	var k adminapi.Key
	if err := c.admin.Do(ctx, "POST", adminapi.PathKeys, adminapi.CreateKeyRequest{User: "bob", Expiry: "1h"}, &k); err != nil {
		t.Fatal(err)
	}
	ak, _ := wire.ParseAuthKey(k.Key)
	bob, err := controlclient.New(controlclient.Options{ServerURL: c.url, Fingerprint: c.fp, MachineKey: key.NewMachine()})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	if _, err := bob.Register(ctx, wire.RegisterRequest{AuthKey: ak.WithoutFingerprint(), NodeKey: key.NewNode().Public(), Hostname: "bobserver"}); err != nil {
		t.Fatal(err)
	}
	policy := `{"groups": {"group:eng": []}, "acls": [{"action": "accept", "src": ["group:eng"], "dst": ["bob@example.net:*"]}]}`
	if err := c.admin.Do(ctx, "POST", adminapi.PathPolicy, adminapi.PolicyRequest{Name: "test", Body: policy}, nil); err != nil {
		t.Fatal(err)
	}

	b := browse(t)

	// OIDC: ann logs in at the provider's own pages.
	annC, annNK, lr := loginNode(t, c, "annlaptop", "oidc")
	var title string
	if err := chromedp.Run(b,
		chromedp.Navigate(lr.URL),
		chromedp.WaitVisible(`input[name="login"]`),
		chromedp.SendKeys(`input[name="login"]`, "ann"),
		chromedp.SendKeys(`input[name="password"]`, "any-password"),
		chromedp.Click(`button[type="submit"]`),
		chromedp.WaitVisible(`input[name="prompt"][value="consent"] ~ button`),
		chromedp.Click(`input[name="prompt"][value="consent"] ~ button`),
		chromedp.WaitVisible(`#title`),
		chromedp.Text(`#title`, &title),
	); err != nil {
		t.Fatalf("browser login at oidc-provider: %v", err)
	}
	if title != "Logged in" {
		var msg string
		chromedp.Run(b, chromedp.Text(`#message`, &msg))
		t.Fatalf("coord says %q: %s", title, msg)
	}
	r := waitLogin(t, annC, lr.ID)
	if r.Error != "" || r.User != "ann" || r.Node == nil || r.Node.User != "ann" {
		t.Fatalf("ann's login: %+v", r)
	}
	all, _ := c.st.Users(ctx)
	for _, u := range all {
		if u.Name == "ann" && strings.Join(u.Groups, ",") != "eng" {
			t.Errorf("ann's IdP groups %v, want [eng]", u.Groups)
		}
	}
	if peers := peersOf(t, annC, annNK); strings.Join(peers, ",") != "bobserver" {
		t.Errorf("ann (IdP group eng) sees peers %v, want bobserver", peers)
	}

	// Local users: carl logs in on the plugin's own form with a TOTP code.
	carlC, carlNK, lr2 := loginNode(t, c, "carllaptop", "local")
	code, _ := totp.GenerateCode(totpSecret, time.Now())
	if err := chromedp.Run(b,
		chromedp.Navigate(lr2.URL),
		chromedp.WaitVisible(`#username`),
		chromedp.SendKeys(`#username`, "carl"),
		chromedp.SendKeys(`#password`, carlPass),
		chromedp.SendKeys(`#code`, code),
		chromedp.Click(`#submit`),
		chromedp.WaitVisible(`#title`),
		chromedp.Text(`#title`, &title),
	); err != nil {
		t.Fatalf("browser login at the local form: %v", err)
	}
	if title != "Logged in" {
		var msg string
		chromedp.Run(b, chromedp.Text(`#message`, &msg))
		t.Fatalf("coord says %q: %s", title, msg)
	}
	r = waitLogin(t, carlC, lr2.ID)
	if r.Error != "" || r.User != "carl" {
		t.Fatalf("carl's login: %+v", r)
	}
	// carl's IdP group is sales, not eng: the policy gives him no peer.
	if peers := peersOf(t, carlC, carlNK); len(peers) != 0 {
		t.Errorf("carl (IdP group sales) sees peers %v, want none", peers)
	}

	// S11: neither the client secret nor carl's password or TOTP code is
	// in coord's or the plugins' log.
	hits, err := testbed.ScanLogs([]testbed.Secret{{Name: "OIDC client secret", Value: clientSecret}, {Name: "carl's password", Value: carlPass},
		{Name: "carl's TOTP code", Value: "code=" + code}}, nil, map[string]string{"coord and plugins": logs.String()})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hits {
		t.Errorf("S11: %s", h)
	}
}
