package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/bcrypt"
	"rsc.io/qr"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/internal/testbed"
)

// loginURLLine is how `lanmesh up` prints the login URL: on its own
// line, indented by a tab, after "To log in, open this URL in a browser:".
var loginURLLine = regexp.MustCompile(`open this URL in a browser:\n\n\t(https://\S+)\n`)

// multiListener accepts from several listeners: coord serves the browser
// on loopback and the agents inside the testbed's namespace.
type multiListener struct {
	lns  []net.Listener
	ch   chan net.Conn
	once sync.Once
	done chan struct{}
}

func newMultiListener(lns ...net.Listener) *multiListener {
	m := &multiListener{lns: lns, ch: make(chan net.Conn), done: make(chan struct{})}
	for _, l := range lns {
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				select {
				case m.ch <- c:
				case <-m.done:
					c.Close()
					return
				}
			}
		}()
	}
	return m
}

func (m *multiListener) Accept() (net.Conn, error) {
	select {
	case c := <-m.ch:
		return c, nil
	case <-m.done:
		return nil, net.ErrClosed
	}
}

func (m *multiListener) Close() error {
	m.once.Do(func() {
		close(m.done)
		for _, l := range m.lns {
			l.Close()
		}
	})
	return nil
}

func (m *multiListener) Addr() net.Addr { return m.lns[0].Addr() }

// upWorld is a namespace testbed for real agents: one segment
// (198.18.0.0/17) with coord's in-process listener at 198.18.0.2:443 and
// a host per agent.
type upWorld struct {
	w     *testbed.World
	seg   *testbed.Segment
	coord *testbed.Host
	n     int
}

func newUpWorld(t *testing.T) *upWorld {
	t.Helper()
	testbed.SkipUnlessRoot(t)
	if _, err := testbed.FindBinaries(); err != nil {
		t.Fatalf("binaries: %v", err)
	}
	w := testbed.New(t)
	inet, err := w.AddHost("inet")
	if err != nil {
		t.Fatal(err)
	}
	seg, err := w.AddSegment(inet, "br0", "198.18.0.1/17")
	if err != nil {
		t.Fatal(err)
	}
	ch, err := w.AddHost("coord")
	if err != nil {
		t.Fatal(err)
	}
	if err := seg.Attach(ch, "eth0", "198.18.0.2/17"); err != nil {
		t.Fatal(err)
	}
	return &upWorld{w: w, seg: seg, coord: ch}
}

// agent starts `lanmesh agent` on a new host of the segment.
func (u *upWorld) agent(t *testing.T, ctx context.Context, name string) *testbed.Agent {
	t.Helper()
	u.n++
	h, err := u.w.AddHost(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.seg.Attach(h, "eth0", fmt.Sprintf("198.18.3.%d/17", u.n)); err != nil {
		t.Fatal(err)
	}
	a, err := testbed.StartAgent(ctx, h, name, "--log-level", "debug")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// upLogin runs the real `lanmesh up` without an auth key on a, waits for
// the login URL it prints, and returns the URL and the running command.
func upLogin(t *testing.T, a *testbed.Agent, server, fp, host, provider string) (string, *testbed.Proc) {
	t.Helper()
	bins, _ := testbed.FindBinaries()
	p, err := a.Host.Start(a.Name+"-up", bins.Lanmesh, "--socket", a.Socket, "up", "--login-server", server,
		"--coord-fingerprint", fp, "--hostname", host, "--login-provider", provider, "--qr")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := loginURLLine.FindStringSubmatch(p.Log()); m != nil {
			u := m[1]
			checkQR(t, p.Log(), u)
			return u, p
		}
		select {
		case <-p.Done():
			t.Fatalf("lanmesh up exited before printing a login URL (%v):\n%s", p.Err(), p.Log())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("lanmesh up printed no login URL in 30 s:\n%s", p.Log())
		}
	}
}

// checkQR: with --qr, `lanmesh up` prints a QR code block after the URL,
// as wide as the URL's QR code plus the quiet zone, drawn in half blocks.
func checkQR(t *testing.T, out, u string) {
	t.Helper()
	c, err := qr.Encode(u, qr.L)
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(out, "or scan this QR code:\n\n")
	if !ok {
		t.Fatalf("lanmesh up --qr printed no QR code:\n%s", out)
	}
	lines := strings.Split(after, "\n")
	want := (c.Size + 4 + 1) / 2
	if len(lines) < want {
		t.Fatalf("QR code has %d lines, want %d", len(lines), want)
	}
	for i, l := range lines[:want] {
		if n := len([]rune(l)); n != c.Size+4 || strings.Trim(l, " █▀▄") != "" {
			t.Fatalf("QR line %d: %d cells (want %d) or other characters: %q", i, n, c.Size+4, l)
		}
	}
}

// waitUp waits for `lanmesh up` to finish after the browser login and
// checks what it printed.
func waitUp(t *testing.T, p *testbed.Proc, user string) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(60 * time.Second):
		t.Fatalf("lanmesh up still waiting 60 s after the browser login:\n%s", p.Log())
	}
	if err := p.Err(); err != nil {
		t.Fatalf("lanmesh up: %v\n%s", err, p.Log())
	}
	out := p.Log()
	if !strings.Contains(out, "Logged in as "+user+".") || !strings.Contains(out, " is up: 100.") {
		t.Fatalf("lanmesh up output lacks the login and up lines:\n%s", out)
	}
}

// browserSecrets collects what the browser saw that no log may hold: the
// OIDC code and state of the callback and coord's cookies.
type browserSecrets struct {
	mu  sync.Mutex
	all []testbed.Secret
}

func (s *browserSecrets) add(name, v string) {
	if len(v) < 8 {
		return
	}
	s.mu.Lock()
	s.all = append(s.all, testbed.Secret{Name: name, Value: v})
	s.mu.Unlock()
}

func (s *browserSecrets) list() []testbed.Secret {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]testbed.Secret(nil), s.all...)
}

// watchCallbacks records the code of every request the browser makes to
// coord's OIDC callback.
func watchCallbacks(ctx context.Context, coordURL string, sec *browserSecrets) {
	chromedp.ListenTarget(ctx, func(ev any) {
		e, ok := ev.(*network.EventRequestWillBeSent)
		if !ok || !strings.HasPrefix(e.Request.URL, coordURL) {
			return
		}
		u, err := url.Parse(e.Request.URL)
		if err != nil {
			return
		}
		if c := u.Query().Get("code"); c != "" {
			sec.add("OIDC authorization code", c)
		}
	})
}

// coordCookies records coord's cookies (login session) as secrets.
func coordCookies(t *testing.T, b context.Context, coordURL string, sec *browserSecrets) {
	t.Helper()
	if err := chromedp.Run(b, chromedp.ActionFunc(func(ctx context.Context) error {
		cs, err := network.GetCookies().WithURLs([]string{coordURL}).Do(ctx)
		for _, c := range cs {
			sec.add("coord cookie "+c.Name, c.Value)
		}
		return err
	})); err != nil {
		t.Fatalf("read coord's cookies: %v", err)
	}
}

// TestUpLoginWithChromium (issue 15, acceptance 1, the `lanmesh up`
// part): real agents in namespaces run the real `lanmesh up` without an
// auth key; it prints a login URL and a QR code and waits; headless
// Chromium opens the printed URL and logs in at a real oidc-provider
// (ann, IdP group eng) and at the local-users plugin's form with a TOTP
// code (carl, group sales); each `lanmesh up` then finishes, the node
// belongs to that user and the user has the IdP's groups. The policy
// applies by group and by user with real packets to bob's server (joined
// with an auth key): ann (group:eng, all ports) pings it and reaches TCP
// 8080; carl (a user rule for TCP port 8080 only) reaches TCP 8080, but
// his ping and TCP 9090 are dropped (ann's TCP 9090 is let through and
// refused by bob's host: nothing listens there). S11: no secret the test knows (client secret, carl's
// password and TOTP code, bob's auth key, the nodes' private keys, the
// OIDC codes, coord's cookies) is in coord's, the plugins' or the agents'
// logs.
func TestUpLoginWithChromium(t *testing.T) {
	u := newUpWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	logs, provLogs := &syncBuf{}, &syncBuf{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nsln, err := u.coord.Listen("tcp", "198.18.0.2:443")
	if err != nil {
		t.Fatal(err)
	}
	callback := "https://" + ln.Addr().String() + "/callback"
	clients := `[{"client_id":"lanmesh","client_secret":"` + clientSecret + `","redirect_uris":["` + callback + `"]}]`
	issuer := startProvider(t, clients, `{"ann": ["eng"]}`, provLogs)
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
	c := startCoord(t, newMultiListener(ln, nsln), pluginsDir, cfg, logs)
	agentURL := "https://198.18.0.2:443"
	defer func() {
		if t.Failed() {
			u.w.KeepLogs()
			t.Logf("coord and plugin logs:\n%s\nagent logs in %s", logs, u.w.LogDir)
		}
	}()

	// bob's server joins with an auth key and serves TCP 8080.
	if err := c.admin.Do(ctx, "POST", adminapi.PathUsers, adminapi.CreateUserRequest{Name: "bob", Email: "bob@example.net"}, nil); err != nil {
		t.Fatal(err)
	}
	var k adminapi.Key
	if err := c.admin.Do(ctx, "POST", adminapi.PathKeys, adminapi.CreateKeyRequest{User: "bob", Expiry: "1h"}, &k); err != nil {
		t.Fatal(err)
	}
	policy := `{"groups": {"group:eng": []}, "acls": [
		{"action": "accept", "src": ["group:eng"], "dst": ["bob@example.net:*"]},
		{"action": "accept", "src": ["carl@example.net"], "proto": "tcp", "dst": ["bob@example.net:8080"]}]}`
	if err := c.admin.Do(ctx, "POST", adminapi.PathPolicy, adminapi.PolicyRequest{Name: "test", Body: policy}, nil); err != nil {
		t.Fatal(err)
	}
	bob := u.agent(t, ctx, "bob")
	if _, err := bob.CLI(ctx, "up", "--login-server", agentURL, "--auth-key", k.Key, "--hostname", "bobserver", "--timeout", "20s"); err != nil {
		t.Fatalf("bob: lanmesh up --auth-key: %v", err)
	}
	bobIP, err := bob.MeshIP(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Host.ServeTCP(8080, "bob-8080"); err != nil {
		t.Fatal(err)
	}

	b := browse(t)
	sec := &browserSecrets{}
	watchCallbacks(b, c.url, sec)

	// ann: `lanmesh up` through the OIDC plugin at oidc-provider.
	ann := u.agent(t, ctx, "ann")
	loginURL, up := upLogin(t, ann, agentURL, c.fp, "annlaptop", "oidc")
	if !strings.HasPrefix(loginURL, c.url+"/") {
		t.Fatalf("login URL %q is not coord's (%s)", loginURL, c.url)
	}
	var title string
	if err := chromedp.Run(b,
		network.Enable(),
		chromedp.Navigate(loginURL),
		chromedp.WaitVisible(`input[name="login"]`),
		chromedp.SendKeys(`input[name="login"]`, "ann"),
		chromedp.SendKeys(`input[name="password"]`, "any-password"),
		chromedp.Click(`button[type="submit"]`),
		chromedp.WaitVisible(`input[name="prompt"][value="consent"] ~ button`),
		chromedp.Click(`input[name="prompt"][value="consent"] ~ button`),
		chromedp.WaitVisible(`#title`),
		chromedp.Text(`#title`, &title),
	); err != nil {
		t.Fatalf("browser login at oidc-provider: %v\nlanmesh up so far:\n%s", err, up.Log())
	}
	if title != "Logged in" {
		var msg string
		chromedp.Run(b, chromedp.Text(`#message`, &msg))
		t.Fatalf("coord says %q: %s", title, msg)
	}
	coordCookies(t, b, c.url, sec)
	waitUp(t, up, "ann")

	// carl: `lanmesh up` through the local-users plugin's form.
	carl := u.agent(t, ctx, "carl")
	loginURL, up = upLogin(t, carl, agentURL, c.fp, "carllaptop", "local")
	code, _ := totp.GenerateCode(totpSecret, time.Now())
	if err := chromedp.Run(b,
		chromedp.Navigate(loginURL),
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
	coordCookies(t, b, c.url, sec)
	waitUp(t, up, "carl")

	// The nodes belong to the users who logged in, with the IdP's groups.
	var nodes []adminapi.Node
	if err := c.admin.Do(ctx, "GET", adminapi.PathNodes, nil, &nodes); err != nil {
		t.Fatal(err)
	}
	owner := map[string]string{}
	for _, n := range nodes {
		owner[n.Name] = n.User
	}
	if owner["annlaptop"] != "ann" || owner["carllaptop"] != "carl" || owner["bobserver"] != "bob" {
		t.Errorf("node owners %v, want annlaptop: ann, carllaptop: carl, bobserver: bob", owner)
	}
	all, err := c.st.Users(ctx)
	if err != nil {
		t.Fatal(err)
	}
	groups := map[string]string{}
	for _, us := range all {
		groups[us.Name] = strings.Join(us.Groups, ",")
	}
	if groups["ann"] != "eng" || groups["carl"] != "sales" {
		t.Errorf("IdP groups %v, want ann: eng, carl: sales", groups)
	}

	// The policy, by group and by user, with real packets to bob's server.
	for _, a := range []*testbed.Agent{ann, carl} {
		if _, err := a.WaitStatus(ctx, "peer bobserver", peerNamed("bobserver")); err != nil {
			t.Fatal(err)
		}
	}
	pingOK := false
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && !pingOK; {
		n, _ := ann.Host.Ping(ctx, bobIP, 1, time.Second)
		pingOK = n == 1
	}
	if !pingOK {
		t.Errorf("ann (group:eng: all ports of bob's nodes) cannot ping bobserver %s", bobIP)
	}
	if r := probeUntil(ann.Host, bobIP+":8080", "bob-8080"); r.Outcome != testbed.Connected {
		t.Errorf("ann -> bobserver:8080 (group rule): %s", r)
	}
	if r := probeUntil(carl.Host, bobIP+":8080", "bob-8080"); r.Outcome != testbed.Connected {
		t.Errorf("carl -> bobserver:8080 (user rule): %s", r)
	}
	if n, _ := carl.Host.Ping(ctx, bobIP, 3, time.Second); n != 0 {
		t.Errorf("carl (a rule for TCP 8080 only, group sales) pinged bobserver: %d replies", n)
	}
	if r := ann.Host.ProbeTCP(bobIP+":9090", 3*time.Second); r.Outcome != testbed.Refused {
		t.Errorf("ann -> bobserver:9090 (group rule, nothing listening): %s, want refused by bob's host", r)
	}
	if r := carl.Host.ProbeTCP(bobIP+":9090", 3*time.Second); r.Outcome != testbed.TimedOut {
		t.Errorf("carl -> bobserver:9090 (no rule): %s, want dropped (timeout)", r)
	}

	// S11: no secret the test knows is in any log of coord, the plugins
	// or the agents (the provider's own output is not ours and is left
	// out).
	secrets := append(sec.list(),
		testbed.Secret{Name: "OIDC client secret", Value: clientSecret},
		testbed.Secret{Name: "carl's password", Value: carlPass},
		testbed.Secret{Name: "bob's auth key", Value: k.Key},
	)
	if code != "" {
		secrets = append(secrets, testbed.Secret{Name: "carl's TOTP code", Value: "code=" + code})
	}
	for _, a := range []*testbed.Agent{bob, ann, carl} {
		st, err := a.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b64, _, err := a.PrivateKey(st.Self.Key)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, testbed.Secret{Name: a.Name + "'s node private key", Value: b64})
	}
	if n := len(sec.list()); n < 2 {
		t.Errorf("the browser gave only %d secrets (OIDC code, coord cookies) to look for", n)
	}
	hits, err := testbed.ScanLogs(secrets, []string{u.w.LogDir}, map[string]string{"coord and plugins": logs.String()})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hits {
		t.Errorf("S11: %s", h)
	}
	t.Logf("S11: %d secrets looked for in coord's and the plugins' log and %s", len(secrets), u.w.LogDir)
}

func peerNamed(name string) func(*testbed.Status) bool {
	return func(s *testbed.Status) bool { return s.Peer(name) != nil }
}

// probeUntil retries a TCP probe for a while: the first packets may wait
// for the WireGuard handshake.
func probeUntil(h *testbed.Host, addr, banner string) testbed.ProbeResult {
	var r testbed.ProbeResult
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		if r = h.ProbeTCP(addr, 2*time.Second); r.Outcome == testbed.Connected && r.Banner == banner {
			return r
		}
		time.Sleep(200 * time.Millisecond)
	}
	return r
}
