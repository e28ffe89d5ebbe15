package webadmin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/coord/server"
	"github.com/lanmesh/lanmesh/coord/store"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/tlscert"
)

const testOrigin = "https://coord.test:8443"

// clock is a settable time for session expiry.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	t     *testing.T
	st    store.Store
	app   *App
	h     http.Handler // coord's whole HTTPS handler, the admin mounted
	clock *clock
}

// newFixture runs a real coord server (SQLite store, admin API) with the
// web admin mounted, without a listener: requests go to its handler.
func newFixture(t *testing.T, groups ...string) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "coord.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cert, err := tlscert.LoadOrCreate(dir, "lanmesh-coord", "coord.test")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(ctx, server.Config{Store: st, Cert: cert, PublicURL: testOrigin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	c := &clock{t: time.Now()}
	app, err := New(Config{Server: srv, Store: st, AdminGroups: groups, Now: c.now, IdleTimeout: 10 * time.Minute, MaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	srv.Mount(Prefix, app.Handler())
	for _, u := range []store.User{{Name: "alice", Email: "alice@example.com", Admin: true}, {Name: "bob", Email: "bob@example.com"}} {
		u.Created = time.Now()
		if _, err := st.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	return &fixture{t: t, st: st, app: app, h: srv.Handler(), clock: c}
}

// addNode registers a node of user with the given advertised route.
func (f *fixture) addNode(user, host string) store.Node {
	f.t.Helper()
	n, err := f.st.Register(context.Background(), store.Registration{MachineKey: key.NewMachine().Public(), NodeKey: key.NewNode().Public(),
		Hostname: host, LoginUser: user, KeyLifetime: time.Hour, Now: time.Now()})
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

// signIn starts a session for user as a login would, returning its cookie.
func (f *fixture) signIn(user string) (*http.Cookie, *session) {
	id, s := f.app.sessions.create(user, "test", "127.0.0.1:1", f.clock.now())
	return &http.Cookie{Name: cookieName, Value: id}, s
}

type req struct {
	method, path string
	form         url.Values
	cookie       *http.Cookie
	host         string
	hdr          map[string]string // nil: Origin testOrigin
}

func (f *fixture) do(r req) *httptest.ResponseRecorder {
	var body *strings.Reader
	if r.form != nil {
		body = strings.NewReader(r.form.Encode())
	} else {
		body = strings.NewReader("")
	}
	hr := httptest.NewRequest(r.method, testOrigin+r.path, body)
	hr.Host = "coord.test:8443"
	if r.host != "" {
		hr.Host = r.host
	}
	if r.form != nil {
		hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if r.hdr == nil && r.method == "POST" {
		hr.Header.Set("Origin", testOrigin)
	}
	for k, v := range r.hdr {
		hr.Header.Set(k, v)
	}
	if r.cookie != nil {
		hr.AddCookie(r.cookie)
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, hr)
	return w
}

func (f *fixture) nodeName(id int64) string {
	nodes, err := f.st.Nodes(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	for _, n := range nodes {
		if n.ID == id {
			return n.Name
		}
	}
	return ""
}

// TestStateChangeChecks: a rename goes through only with the session's
// CSRF token, from coord's own origin, to coord's own host; each refusal
// says which check failed and changes nothing (issue 15 acceptance 5).
func TestStateChangeChecks(t *testing.T) {
	f := newFixture(t)
	n := f.addNode("alice", "laptop")
	c, s := f.signIn("alice")
	path := "/admin/nodes/" + itoa(n.ID) + "/rename"
	good := url.Values{"csrf": {s.csrf}, "name": {"renamed"}}
	for _, tc := range []struct {
		name string
		r    req
		want string
	}{
		{"no token", req{method: "POST", path: path, cookie: c, form: url.Values{"name": {"renamed"}}}, "no CSRF token"},
		{"wrong token", req{method: "POST", path: path, cookie: c, form: url.Values{"csrf": {"x" + s.csrf[1:]}, "name": {"renamed"}}}, "not this session"},
		{"another session's token", req{method: "POST", path: path, cookie: c, form: url.Values{"csrf": {func() string { _, o := f.signIn("alice"); return o.csrf }()}, "name": {"renamed"}}}, "not this session"},
		{"foreign origin", req{method: "POST", path: path, cookie: c, form: good, hdr: map[string]string{"Origin": "https://evil.example"}}, "foreign origin"},
		{"null origin", req{method: "POST", path: path, cookie: c, form: good, hdr: map[string]string{"Origin": "null"}}, "foreign origin"},
		{"foreign referer", req{method: "POST", path: path, cookie: c, form: good, hdr: map[string]string{"Referer": "https://evil.example/admin/nodes"}}, "foreign page"},
		{"no origin or referer", req{method: "POST", path: path, cookie: c, form: good, hdr: map[string]string{}}, "neither an Origin nor a Referer"},
		{"cross-site fetch", req{method: "POST", path: path, cookie: c, form: good, hdr: map[string]string{"Origin": testOrigin, "Sec-Fetch-Site": "cross-site"}}, "another site"},
		{"foreign host", req{method: "POST", path: path, cookie: c, form: good, host: "evil.example"}, "Wrong host"},
		{"no session", req{method: "POST", path: path, form: good}, "Not signed in"},
	} {
		w := f.do(tc.r)
		if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), tc.want) {
			t.Errorf("%s: %d, want 403 saying %q: %.400s", tc.name, w.Code, tc.want, w.Body.String())
		}
		if got := f.nodeName(n.ID); got != n.Name {
			t.Fatalf("%s: the node was renamed to %s", tc.name, got)
		}
	}
	// A GET with a foreign Host (DNS rebinding) is refused too.
	if w := f.do(req{method: "GET", path: "/admin/nodes", cookie: c, host: "rebound.example"}); w.Code != http.StatusForbidden {
		t.Errorf("GET with a foreign host: %d", w.Code)
	}
	// Same-origin Referer without Origin, and the right token: it works.
	w := f.do(req{method: "POST", path: path, cookie: c, form: good, hdr: map[string]string{"Referer": testOrigin + "/admin/nodes"}})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("good rename: %d %s", w.Code, w.Body.String())
	}
	if got := f.nodeName(n.ID); got != "renamed" {
		t.Fatalf("after the good rename the node is %q", got)
	}
	page := f.do(req{method: "GET", path: "/admin/nodes", cookie: c})
	if !strings.Contains(page.Body.String(), "renamed to renamed") {
		t.Errorf("the nodes page does not confirm the rename: %.600s", page.Body.String())
	}
	// The audit log has the rename as web:alice from the browser's
	// address, and each refused form with a session (not the ones with
	// no session or a foreign host: anyone can send those).
	evs, err := f.st.AuditEvents(context.Background(), store.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var renames, refused int
	for _, e := range evs {
		switch {
		case e.Action == "node.rename" && e.ActorKind == "web" && e.Actor == "alice" && e.Result == "ok" && e.Source != "":
			renames++
		case e.Action == "web.post" && e.ActorKind == "web" && e.Result == "refused" && e.Target == path:
			refused++
		}
	}
	if renames != 1 || refused != 8 {
		t.Errorf("audit: %d renames by web:alice (want 1), %d refused posts (want 8): %+v", renames, refused, evs)
	}
	// The audit page lists them.
	page = f.do(req{method: "GET", path: "/admin/audit", cookie: c})
	if page.Code != 200 || !strings.Contains(page.Body.String(), "node.rename") || !strings.Contains(page.Body.String(), "web.post") {
		t.Errorf("audit page: %d %.800s", page.Code, page.Body.String())
	}
}

// TestSessionLimits (S12): sessions end server-side after the idle time
// and the absolute lifetime, and at logout; the cookie is Secure,
// HttpOnly, SameSite=Strict.
func TestSessionLimits(t *testing.T) {
	f := newFixture(t)
	get := func(c *http.Cookie) *httptest.ResponseRecorder {
		return f.do(req{method: "GET", path: "/admin/nodes", cookie: c})
	}
	c, _ := f.signIn("alice")
	if w := get(c); w.Code != 200 {
		t.Fatalf("fresh session: %d", w.Code)
	}
	f.clock.add(9 * time.Minute)
	if w := get(c); w.Code != 200 {
		t.Fatalf("after 9 idle minutes: %d", w.Code)
	}
	f.clock.add(10 * time.Minute)
	if w := get(c); w.Code != http.StatusSeeOther || !strings.Contains(w.Header().Get("Location"), "expired") {
		t.Fatalf("after 10 idle minutes: %d %s", w.Code, w.Header().Get("Location"))
	}
	if w := get(c); w.Code != http.StatusSeeOther {
		t.Fatal("an idle session came back")
	}

	// Absolute: active every 5 minutes, still ends after the hour.
	c, _ = f.signIn("alice")
	for i := 0; i < 11; i++ {
		f.clock.add(5 * time.Minute)
		if w := get(c); w.Code != 200 {
			t.Fatalf("active session at %d min: %d", 5*(i+1), w.Code)
		}
	}
	f.clock.add(5 * time.Minute)
	if w := get(c); w.Code != http.StatusSeeOther {
		t.Fatalf("after the absolute lifetime: %d", w.Code)
	}

	// Logout ends the session on coord, not only in the browser.
	c, s := f.signIn("alice")
	w := f.do(req{method: "POST", path: "/admin/logout", cookie: c, form: url.Values{"csrf": {s.csrf}}})
	if w.Code != 200 {
		t.Fatalf("logout: %d %s", w.Code, w.Body.String())
	}
	if ck := w.Result().Cookies(); len(ck) != 1 || ck[0].MaxAge >= 0 {
		t.Errorf("logout does not clear the cookie: %v", ck)
	}
	if w := get(c); w.Code != http.StatusSeeOther {
		t.Fatalf("the old cookie after logout: %d", w.Code)
	}
}

// TestLoginCookie: loginDone gives an admin a session cookie with the
// right attributes and refuses a non-admin with the fix.
func TestLoginCookie(t *testing.T) {
	f := newFixture(t)
	users, _ := f.st.Users(context.Background())
	var alice, bob store.User
	for _, u := range users {
		switch u.Name {
		case "alice":
			alice = u
		case "bob":
			bob = u
		}
	}
	r := httptest.NewRequest("GET", testOrigin+"/callback", nil)
	w := httptest.NewRecorder()
	f.app.loginDone(w, r, alice, "local")
	ck := w.Result().Cookies()
	if w.Code != 200 || len(ck) != 1 {
		t.Fatalf("admin login: %d, cookies %v", w.Code, ck)
	}
	c := ck[0]
	if c.Name != "__Host-lanmesh_admin" || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || len(c.Value) < 40 {
		t.Errorf("session cookie %+v", c)
	}
	if w := f.do(req{method: "GET", path: "/admin/users", cookie: c}); w.Code != 200 || !strings.Contains(w.Body.String(), "bob@example.com") {
		t.Errorf("users page with the new session: %d", w.Code)
	}
	w = httptest.NewRecorder()
	f.app.loginDone(w, r, bob, "local")
	if w.Code != http.StatusForbidden || len(w.Result().Cookies()) != 0 || !strings.Contains(w.Body.String(), "lanmesh-coord users role bob admin") {
		t.Errorf("non-admin login: %d %v %s", w.Code, w.Result().Cookies(), w.Body.String())
	}
	evs, _ := f.st.AuditEvents(context.Background(), store.AuditQuery{})
	got := map[string]string{}
	for _, e := range evs {
		if e.Action == "weblogin" {
			got[e.Actor] = e.Result
		}
	}
	if got["alice"] != "ok" || got["bob"] != "refused" {
		t.Errorf("audited web logins: %v", got)
	}
}

// TestAdminRoles: the role, the --admin-group (by the policy's members
// and by IdP group) make admins; losing it ends the session at the next
// request; a disabled admin is out.
func TestAdminRoles(t *testing.T) {
	f := newFixture(t, "group:netadmins")
	ctx := context.Background()
	if _, err := f.st.SetPolicy(ctx, `{"groups": {"group:netadmins": ["bob@example.com"]}, "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}`, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.LoginIdentity(ctx, store.Identity{Provider: "oidc", Subject: "c", Email: "carol@example.com", Groups: []string{"netadmins"}, Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.LoginIdentity(ctx, store.Identity{Provider: "oidc", Subject: "d", Email: "dave@example.com", Groups: []string{"sales"}, Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for user, want := range map[string]int{"alice": 200, "bob": 200, "carol": 200, "dave": 403} {
		c, _ := f.signIn(user)
		if w := f.do(req{method: "GET", path: "/admin/users", cookie: c}); w.Code != want {
			t.Errorf("%s: %d, want %d", user, w.Code, want)
		}
	}
	// bob leaves the group: his session ends at the next request.
	c, _ := f.signIn("bob")
	if _, err := f.st.SetPolicy(ctx, `{"groups": {"group:netadmins": []}, "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}`, time.Now()); err != nil {
		t.Fatal(err)
	}
	if w := f.do(req{method: "GET", path: "/admin/users", cookie: c}); w.Code != 403 || !strings.Contains(w.Body.String(), "no longer an admin") {
		t.Errorf("bob after leaving the group: %d", w.Code)
	}
	if f.app.sessions.count() == 0 {
		t.Fatal("sessions vanished")
	}
	// alice disabled: out, though she has the role.
	c, _ = f.signIn("alice")
	f.st.SetUserDisabled(ctx, "alice", true)
	if w := f.do(req{method: "GET", path: "/admin/users", cookie: c}); w.Code != 403 {
		t.Errorf("disabled alice: %d", w.Code)
	}
}

// TestPolicyEditor: a policy whose test fails is shown with the failing
// test and not saved; a passing one is saved.
func TestPolicyEditor(t *testing.T) {
	f := newFixture(t)
	f.addNode("alice", "laptop")
	f.addNode("bob", "server")
	c, s := f.signIn("alice")
	failing := `{"acls": [{"action": "accept", "src": ["alice@example.com"], "dst": ["bob@example.com:22"]}],
	 "tests": [{"src": "alice@example.com", "accept": ["bob@example.com:80"]}]}`
	for _, action := range []string{"check", "save"} {
		w := f.do(req{method: "POST", path: "/admin/policy", cookie: c, form: url.Values{"csrf": {s.csrf}, "body": {failing}, "action": {action}}})
		b := w.Body.String()
		if w.Code != http.StatusUnprocessableEntity || !strings.Contains(b, "Failing test:") || !strings.Contains(b, "bob@example.com:80/tcp was denied") {
			t.Errorf("%s of a failing policy: %d %.1500s", action, w.Code, b)
		}
	}
	if _, err := f.st.Policy(context.Background()); err == nil {
		t.Fatal("a policy whose test fails was saved")
	}
	passing := strings.Replace(failing, ":80", ":22", 1)
	w := f.do(req{method: "POST", path: "/admin/policy", cookie: c, form: url.Values{"csrf": {s.csrf}, "body": {passing}, "action": {"save"}}})
	if w.Code != 200 || !strings.Contains(w.Body.String(), "Saved as version 1") {
		t.Fatalf("save of a passing policy: %d %.800s", w.Code, w.Body.String())
	}
	if p, err := f.st.Policy(context.Background()); err != nil || p.Body != passing {
		t.Fatalf("stored policy: %v", err)
	}
}

// TestPagesRender: every page renders for an admin, with the data.
func TestPagesRender(t *testing.T) {
	f := newFixture(t)
	n := f.addNode("bob", "router")
	if _, err := f.st.UpdateNodeStatus(context.Background(), n.ID, store.NodeStatus{AdvertisedRoutes: []netip.Prefix{netip.MustParsePrefix("192.168.7.0/24")}, LastSeen: time.Now()}); err != nil {
		t.Fatal(err)
	}
	c, s := f.signIn("alice")
	for path, want := range map[string]string{
		"/admin/nodes": n.Name, "/admin/users": "bob@example.com", "/admin/routes": "192.168.7.0/24",
		"/admin/keys": "New pre-auth key", "/admin/policy": "No policy is set",
	} {
		w := f.do(req{method: "GET", path: path, cookie: c})
		if w.Code != 200 || !strings.Contains(w.Body.String(), want) {
			t.Errorf("%s: %d, want %q in %.300s", path, w.Code, want, w.Body.String())
		}
	}
	// Approve the route through the page.
	w := f.do(req{method: "POST", path: "/admin/routes/approve", cookie: c, form: url.Values{"csrf": {s.csrf}, "node": {itoa(n.ID)}, "route": {"192.168.7.0/24"}}})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("approve: %d %s", w.Code, w.Body.String())
	}
	nodes, _ := f.st.Nodes(context.Background())
	if len(nodes) != 1 || len(nodes[0].ApprovedRoutes) != 1 {
		t.Fatalf("route not approved: %+v", nodes)
	}
	// A key: the secret is shown once.
	w = f.do(req{method: "POST", path: "/admin/keys", cookie: c, form: url.Values{"csrf": {s.csrf}, "user": {"bob"}, "expiry": {"1h"}, "tags": {"tag:server"}, "reusable": {"yes"}}})
	if w.Code != 200 || !strings.Contains(w.Body.String(), "newkey-value") {
		t.Fatalf("create key: %d %.500s", w.Code, w.Body.String())
	}
	// The tag has no owner in the (default) policy, yet the admin API
	// accepts tags by form only; a bad expiry is refused with the reason.
	w = f.do(req{method: "POST", path: "/admin/keys", cookie: c, form: url.Values{"csrf": {s.csrf}, "user": {"bob"}, "expiry": {"forever"}}})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("bad key: %d", w.Code)
	}
	if p := f.do(req{method: "GET", path: "/admin/keys", cookie: c}); !strings.Contains(p.Body.String(), "want a positive duration") {
		t.Errorf("the keys page does not say why the key was refused")
	}
}

func itoa(i int64) string { return strconvItoa(i) }

func strconvItoa(i int64) string { return strconv.FormatInt(i, 10) }

// TestNodeTags: an admin tags a node on the Nodes page (audited); tags
// the policy does not declare and an empty list are refused with the
// reason; tagging turns the key expiry off.
func TestNodeTags(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	n := f.addNode("bob", "nas")
	if n.KeyExpiry.IsZero() {
		t.Fatal("test node has no key expiry")
	}
	if _, err := f.st.SetPolicy(ctx, `{"tagOwners": {"tag:server": ["alice@example.com"]}, "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}`, time.Now()); err != nil {
		t.Fatal(err)
	}
	c, s := f.signIn("alice")
	post := func(tags string) string {
		w := f.do(req{method: "POST", path: "/admin/nodes/" + itoa(n.ID) + "/tags", cookie: c, form: url.Values{"csrf": {s.csrf}, "tags": {tags}, "label": {"nas"}}})
		if w.Code != http.StatusSeeOther {
			t.Fatalf("tags %q: %d", tags, w.Code)
		}
		return f.do(req{method: "GET", path: "/admin/nodes", cookie: c}).Body.String()
	}
	if page := post("tag:other"); !strings.Contains(page, `tag \&#34;tag:other\&#34; is not in the policy&#39;s tagOwners`) && !strings.Contains(page, "is not in the policy") {
		t.Errorf("undeclared tag: %.1500s", page)
	}
	if page := post(" , "); !strings.Contains(page, "no tags given") {
		t.Errorf("empty tags: %.1500s", page)
	}
	if page := post("tag:server"); !strings.Contains(page, "now has tags tag:server") {
		t.Errorf("good tags: %.1500s", page)
	}
	nodes, _ := f.st.Nodes(ctx)
	if len(nodes) != 1 || strings.Join(nodes[0].Tags, ",") != "tag:server" || !nodes[0].KeyExpiry.IsZero() {
		t.Fatalf("node after tagging: tags %v, key expiry %v", nodes[0].Tags, nodes[0].KeyExpiry)
	}
	evs, _ := f.st.AuditEvents(ctx, store.AuditQuery{Actor: "alice"})
	results := map[string]int{}
	for _, e := range evs {
		if e.Action == "node.tags" {
			results[e.Result]++
		}
	}
	if results["ok"] != 1 || results["refused"] != 2 {
		t.Errorf("audited node.tags: %v", results)
	}
}
