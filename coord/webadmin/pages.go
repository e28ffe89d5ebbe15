package webadmin

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/coord/server"
	"github.com/lanmesh/lanmesh/coord/store"
)

func (a *App) routes() {
	m := http.NewServeMux()
	m.Handle("GET "+Prefix+"static/", staticHandler())
	m.HandleFunc("GET "+Prefix+"{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix+"nodes", http.StatusSeeOther)
	})
	m.HandleFunc("GET "+Prefix+"login", a.loginPage)
	m.HandleFunc("GET "+Prefix+"login/{provider}", a.startLogin)
	m.HandleFunc("POST "+Prefix+"logout", a.post(a.logout))

	m.HandleFunc("GET "+Prefix+"nodes", a.get("Nodes", "nodes.html", a.nodesData))
	m.HandleFunc("POST "+Prefix+"nodes/{ref}/{action}", a.post(a.nodeAction))
	m.HandleFunc("GET "+Prefix+"users", a.get("Users", "users.html", a.usersData))
	m.HandleFunc("POST "+Prefix+"users/{name}/{action}", a.post(a.userAction))
	m.HandleFunc("GET "+Prefix+"routes", a.get("Routes", "routes.html", a.routesData))
	m.HandleFunc("POST "+Prefix+"routes/approve", a.post(a.approveRoute))
	m.HandleFunc("GET "+Prefix+"keys", a.get("Keys", "keys.html", a.keysData))
	m.HandleFunc("POST "+Prefix+"keys", a.post(a.createKey))
	m.HandleFunc("POST "+Prefix+"keys/{id}/revoke", a.post(a.revokeKey))
	m.HandleFunc("GET "+Prefix+"policy", a.policyPage)
	m.HandleFunc("POST "+Prefix+"policy", a.post(a.policyPost))
	m.HandleFunc("GET "+Prefix+"audit", a.get("Audit log", "audit.html", a.auditData))
	a.mux = m
}

// authed returns the request's admin session, or answers (a login
// redirect, or a refusal) and returns nil.
func (a *App) authed(w http.ResponseWriter, r *http.Request) *session {
	var id string
	if c, err := r.Cookie(cookieName); err == nil {
		id = c.Value
	}
	s, why := a.sessions.get(id, a.cfg.Now())
	if s == nil {
		q := ""
		if why == sessionIdle || why == sessionExpired {
			q = "?expired=1"
		}
		if r.Method == http.MethodPost {
			a.refuse(w, http.StatusForbidden, "Not signed in", "Your admin session ended ("+why+"); nothing was changed. Sign in again at "+Prefix+"login.")
			return nil
		}
		http.Redirect(w, r, Prefix+"login"+q, http.StatusSeeOther)
		return nil
	}
	u, err := a.user(r, s.user)
	reason := ""
	if err == nil {
		reason, err = a.adminReason(r.Context(), u)
	}
	if err != nil && err != store.ErrNotFound {
		a.log.Error("web admin: role check", "user", s.user, "err", err)
		a.refuse(w, http.StatusInternalServerError, "Internal error", "See coord's log.")
		return nil
	}
	if reason == "" {
		a.sessions.end(s)
		a.log.Info("web admin: session ended, user is no longer an admin", "user", s.user)
		a.refuse(w, http.StatusForbidden, "Not an admin", fmt.Sprintf("%s is no longer an admin of this mesh (or was disabled or deleted); the session has ended.", s.user))
		return nil
	}
	return s
}

// user reads one user from the store.
func (a *App) user(r *http.Request, name string) (store.User, error) {
	users, err := a.cfg.Store.Users(r.Context())
	if err != nil {
		return store.User{}, err
	}
	for _, u := range users {
		if u.Name == name {
			return u, nil
		}
	}
	return store.User{}, store.ErrNotFound
}

// get serves a read-only page whose data comes from load.
func (a *App) get(title, tmpl string, load func(r *http.Request, s *session) (any, error)) http.HandlerFunc {
	nav := strings.TrimSuffix(tmpl, ".html")
	return func(w http.ResponseWriter, r *http.Request) {
		s := a.authed(w, r)
		if s == nil {
			return
		}
		data, err := load(r, s)
		if err != nil {
			a.log.Error("web admin: load page", "page", nav, "err", err)
			a.refuse(w, http.StatusInternalServerError, "Could not load "+title, err.Error())
			return
		}
		a.render(w, http.StatusOK, tmpl, page{Title: title, Nav: nav, User: s.user, CSRF: s.csrf, Flash: a.sessions.takeFlash(s), Data: data})
	}
}

// post wraps a state change: session, origin and CSRF checks first
// (refused with a page that says which failed), then fn.
func (a *App) post(fn func(w http.ResponseWriter, r *http.Request, s *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if err := r.ParseForm(); err != nil {
			a.refuse(w, http.StatusBadRequest, "Bad form", "The form could not be read: "+err.Error())
			return
		}
		s := a.authed(w, r)
		if s == nil {
			return
		}
		if err := a.checkPost(r, s); err != nil {
			a.log.Warn("web admin: state change refused", "user", s.user, "path", r.URL.Path, "reason", err)
			a.audit(r.Context(), server.ActorWeb, s.user, r.RemoteAddr, "web.post", r.URL.Path, "", err.Error())
			a.refuse(w, http.StatusForbidden, "Request refused", "Nothing was changed: "+err.Error()+".")
			return
		}
		fn(w, r, s)
	}
}

// done ends a state change: the message (or the error, as the admin API
// worded it) is shown on the page the admin goes back to.
func (a *App) done(w http.ResponseWriter, r *http.Request, s *session, back, msg string, err error) {
	if err != nil {
		a.sessions.setFlash(s, flash{Msg: err.Error(), Error: true})
	} else {
		a.sessions.setFlash(s, flash{Msg: msg})
	}
	http.Redirect(w, r, Prefix+back, http.StatusSeeOther)
}

// Login.

type loginData struct {
	Providers []server.ProviderInfo
	Expired   bool
}

func (a *App) loginPage(w http.ResponseWriter, r *http.Request) {
	a.render(w, http.StatusOK, "login.html", page{Title: "Sign in", Data: loginData{Providers: a.cfg.Server.Providers(), Expired: r.URL.Query().Get("expired") != ""}})
}

func (a *App) startLogin(w http.ResponseWriter, r *http.Request) {
	a.cfg.Server.StartWebLogin(w, r, r.PathValue("provider"), a.loginDone)
}

// loginDone is where coord's login flow hands over the person who just
// logged in at the IdP: admins get a session, others a refusal.
func (a *App) loginDone(w http.ResponseWriter, r *http.Request, u store.User, provider string) {
	reason, err := a.adminReason(r.Context(), u)
	if err != nil {
		a.log.Error("web admin: role check", "user", u.Name, "err", err)
		a.refuse(w, http.StatusInternalServerError, "Internal error", "See coord's log.")
		return
	}
	if reason == "" {
		a.log.Info("web admin: login refused, not an admin", "user", u.Name, "provider", provider)
		a.audit(r.Context(), server.ActorUser, u.Name, r.RemoteAddr, "weblogin", "web admin", "provider "+provider, "not an admin")
		a.refuse(w, http.StatusForbidden, "Not an admin",
			fmt.Sprintf("You are logged in as %s, but %s is not an admin of this mesh. An admin can grant the role: lanmesh-coord users role %s admin.", u.Name, u.Name, u.Name))
		return
	}
	id, _ := a.sessions.create(u.Name, provider, r.RemoteAddr, a.cfg.Now())
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: id, Path: "/", MaxAge: int(a.cfg.MaxAge.Seconds()),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	a.log.Info("web admin: signed in", "user", u.Name, "provider", provider, "as", reason)
	a.audit(r.Context(), server.ActorUser, u.Name, r.RemoteAddr, "weblogin", "web admin", "provider "+provider+", admin by "+reason, "")
	// A page, not a redirect: after the IdP's cross-site redirect the
	// browser would not send the SameSite=Strict cookie on a redirect
	// chain that started at another site; a navigation from this page does.
	a.render(w, http.StatusOK, "signedin.html", page{Title: "Signed in", User: u.Name})
}

func (a *App) logout(w http.ResponseWriter, r *http.Request, s *session) {
	a.sessions.end(s)
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	a.log.Info("web admin: signed out", "user", s.user)
	a.audit(r.Context(), server.ActorWeb, s.user, r.RemoteAddr, "weblogout", "web admin", "", "")
	a.render(w, http.StatusOK, "message.html", page{Title: "Signed out", Message: "You are signed out; the session has ended on coord."})
}

// Nodes.

// nodeView is a node with the state of each advertised route.
type nodeView struct {
	adminapi.Node
	Routes []adminapi.Route
}

func (a *App) nodesData(r *http.Request, s *session) (any, error) {
	var nodes []adminapi.Node
	var routes []adminapi.Route
	ctx := apiCtx(s, r)
	if err := a.api.Do(ctx, "GET", adminapi.PathNodes, nil, &nodes); err != nil {
		return nil, err
	}
	if err := a.api.Do(ctx, "GET", adminapi.PathRoutes, nil, &routes); err != nil {
		return nil, err
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	out := make([]nodeView, len(nodes))
	for i, n := range nodes {
		out[i].Node = n
		for _, rt := range routes {
			if rt.NodeID == n.ID {
				out[i].Routes = append(out[i].Routes, rt)
			}
		}
	}
	return out, nil
}

// label names the node in messages: its name as the page showed it,
// else the ID from the path.
func label(r *http.Request, ref string) string {
	if l := r.PostFormValue("label"); l != "" {
		return l
	}
	return ref
}

func (a *App) nodeAction(w http.ResponseWriter, r *http.Request, s *session) {
	ref := r.PathValue("ref")
	lbl := label(r, ref)
	ctx := apiCtx(s, r)
	var err error
	var msg string
	switch r.PathValue("action") {
	case "rename":
		name := strings.TrimSpace(r.PostFormValue("name"))
		err = a.api.Do(ctx, "POST", adminapi.NodeRenamePath(ref), adminapi.RenameRequest{Name: name}, nil)
		msg = fmt.Sprintf("Node %s renamed to %s.", lbl, name)
	case "expire":
		err = a.api.Do(ctx, "POST", adminapi.NodeExpirePath(ref), nil, nil)
		msg = fmt.Sprintf("Node %s's key expired: it left every peer and must log in again.", lbl)
	case "expiry":
		// "off", or a duration from now ("720h").
		in := strings.TrimSpace(r.PostFormValue("in"))
		req := adminapi.ExpiryRequest{In: in}
		if in == "off" {
			req = adminapi.ExpiryRequest{Off: true}
		}
		err = a.api.Do(ctx, "POST", adminapi.NodeExpiryPath(ref), req, nil)
		msg = fmt.Sprintf("Node %s's key expiry set (%s).", lbl, in)
	case "tags":
		tags := strings.FieldsFunc(r.PostFormValue("tags"), func(c rune) bool { return c == ',' || c == ' ' })
		err = a.api.Do(ctx, "POST", adminapi.NodeTagsPath(ref), adminapi.TagsRequest{Tags: tags}, nil)
		msg = fmt.Sprintf("Node %s now has tags %s (its key no longer expires).", lbl, strings.Join(tags, ", "))
	case "delete":
		if r.PostFormValue("confirm") != "yes" {
			err = fmt.Errorf("tick the box to confirm deleting node %s", lbl)
			break
		}
		err = a.api.Do(ctx, "DELETE", adminapi.NodePath(ref), nil, nil)
		msg = fmt.Sprintf("Node %s deleted.", lbl)
	default:
		http.NotFound(w, r)
		return
	}
	a.done(w, r, s, "nodes", msg, err)
}

// Users.

func (a *App) usersData(r *http.Request, s *session) (any, error) {
	var users []adminapi.User
	err := a.api.Do(apiCtx(s, r), "GET", adminapi.PathUsers, nil, &users)
	return users, err
}

func (a *App) userAction(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	ctx := apiCtx(s, r)
	var err error
	var msg string
	switch action := r.PathValue("action"); action {
	case "disable", "enable":
		err = a.api.Do(ctx, "POST", adminapi.UserActionPath(name, action), nil, nil)
		msg = fmt.Sprintf("User %s %sd.", name, action)
	case "role":
		role := r.PostFormValue("role")
		err = a.api.Do(ctx, "POST", adminapi.UserActionPath(name, "role"), adminapi.RoleRequest{Role: role}, nil)
		msg = fmt.Sprintf("User %s now has the role %s.", name, role)
	case "delete":
		if r.PostFormValue("confirm") != "yes" {
			err = fmt.Errorf("tick the box to confirm deleting user %s with all their nodes and keys", name)
			break
		}
		var out adminapi.DeletedUser
		err = a.api.Do(ctx, "DELETE", adminapi.UserPath(name), nil, &out)
		msg = fmt.Sprintf("User %s deleted with %d node(s).", name, len(out.Nodes))
	default:
		http.NotFound(w, r)
		return
	}
	a.done(w, r, s, "users", msg, err)
}

// Routes.

func (a *App) routesData(r *http.Request, s *session) (any, error) {
	var routes []adminapi.Route
	err := a.api.Do(apiCtx(s, r), "GET", adminapi.PathRoutes, nil, &routes)
	return routes, err
}

func (a *App) approveRoute(w http.ResponseWriter, r *http.Request, s *session) {
	node, route := r.PostFormValue("node"), r.PostFormValue("route")
	err := a.api.Do(apiCtx(s, r), "POST", adminapi.PathRoutesApprove, adminapi.ApproveRequest{Node: node, Routes: []string{route}}, nil)
	a.done(w, r, s, "routes", fmt.Sprintf("Route %s of %s approved.", route, label(r, node)), err)
}

// Keys.

type keysData struct {
	Keys    []adminapi.Key
	Users   []adminapi.User
	Created *adminapi.Key // just made: its secret is shown once
}

func (a *App) keysData(r *http.Request, s *session) (any, error) {
	var d keysData
	ctx := apiCtx(s, r)
	if err := a.api.Do(ctx, "GET", adminapi.PathKeys, nil, &d.Keys); err != nil {
		return nil, err
	}
	sort.Slice(d.Keys, func(i, j int) bool { return d.Keys[i].Created.After(d.Keys[j].Created) })
	err := a.api.Do(ctx, "GET", adminapi.PathUsers, nil, &d.Users)
	return d, err
}

func (a *App) createKey(w http.ResponseWriter, r *http.Request, s *session) {
	req := adminapi.CreateKeyRequest{User: r.PostFormValue("user"), Reusable: r.PostFormValue("reusable") == "yes",
		Ephemeral: r.PostFormValue("ephemeral") == "yes", Expiry: strings.TrimSpace(r.PostFormValue("expiry"))}
	for _, t := range strings.FieldsFunc(r.PostFormValue("tags"), func(c rune) bool { return c == ',' || c == ' ' }) {
		req.Tags = append(req.Tags, t)
	}
	var k adminapi.Key
	if err := a.api.Do(apiCtx(s, r), "POST", adminapi.PathKeys, req, &k); err != nil {
		a.done(w, r, s, "keys", "", err)
		return
	}
	// The secret is rendered once, in this answer, and kept nowhere.
	d, err := a.keysData(r, s)
	if err != nil {
		a.refuse(w, http.StatusInternalServerError, "Could not load keys", err.Error())
		return
	}
	kd := d.(keysData)
	kd.Created = &k
	a.render(w, http.StatusOK, "keys.html", page{Title: "Keys", Nav: "keys", User: s.user, CSRF: s.csrf,
		Flash: flash{Msg: "Key " + k.ID + " created. Copy it now: it is not shown again."}, Data: kd})
}

func (a *App) revokeKey(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	err := a.api.Do(apiCtx(s, r), "POST", adminapi.KeyPath(id)+"/revoke", nil, nil)
	a.done(w, r, s, "keys", "Key "+id+" revoked.", err)
}

// Policy.

type policyData struct {
	Body     string
	Version  int64
	Default  bool
	Problems []problem // from check or a refused save
	Checked  string    // the verdict of a check or save that passed
}

// problem is one line of a refused policy; Test marks a failing test.
type problem struct {
	Text string
	Test bool
}

func problems(err error) []problem {
	var out []problem
	for _, l := range strings.Split(err.Error(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, problem{Text: l, Test: strings.Contains(l, "test failed")})
		}
	}
	return out
}

func (a *App) policyPage(w http.ResponseWriter, r *http.Request) {
	s := a.authed(w, r)
	if s == nil {
		return
	}
	var p adminapi.Policy
	if err := a.api.Do(apiCtx(s, r), "GET", adminapi.PathPolicy, nil, &p); err != nil {
		a.refuse(w, http.StatusInternalServerError, "Could not load the policy", err.Error())
		return
	}
	a.render(w, http.StatusOK, "policy.html", page{Title: "Policy", Nav: "policy", User: s.user, CSRF: s.csrf, Flash: a.sessions.takeFlash(s),
		Data: policyData{Body: p.Body, Version: p.Version, Default: p.Default}})
}

// policyPost checks or saves the edited policy. A policy that does not
// parse, compile or pass its own tests is never saved (the admin API
// refuses it); the editor keeps the text and lists every problem.
func (a *App) policyPost(w http.ResponseWriter, r *http.Request, s *session) {
	body := r.PostFormValue("body")
	save := r.PostFormValue("action") == "save"
	ctx := apiCtx(s, r)
	path := adminapi.PathPolicyCheck
	if save {
		path = adminapi.PathPolicy
	}
	var cur adminapi.Policy
	a.api.Do(ctx, "GET", adminapi.PathPolicy, nil, &cur)
	d := policyData{Body: body, Version: cur.Version, Default: cur.Default}
	var res adminapi.PolicyResult
	code := http.StatusOK
	if err := a.api.Do(ctx, "POST", path, adminapi.PolicyRequest{Name: "policy.hujson", Body: body}, &res); err != nil {
		d.Problems = problems(err)
		code = http.StatusUnprocessableEntity
	} else if save {
		d.Version, d.Default = res.Version, false
		d.Checked = fmt.Sprintf("Saved as version %d: it compiled for %d node(s) and its %d test(s) passed.", res.Version, res.Nodes, res.Tests)
	} else {
		d.Checked = fmt.Sprintf("The policy is valid: it compiled for %d node(s) and its %d test(s) passed. Not saved yet.", res.Nodes, res.Tests)
	}
	a.render(w, code, "policy.html", page{Title: "Policy", Nav: "policy", User: s.user, CSRF: s.csrf, Data: d})
}

// Audit log.

type auditData struct {
	Events []adminapi.AuditEvent
	Actor  string
	Before int64 // the next page's ?before=, 0: none
}

const auditPage = 100

func (a *App) auditData(r *http.Request, s *session) (any, error) {
	q := url.Values{"limit": {strconv.Itoa(auditPage)}}
	d := auditData{Actor: r.URL.Query().Get("actor")}
	if d.Actor != "" {
		q.Set("actor", d.Actor)
	}
	if b := r.URL.Query().Get("before"); b != "" {
		if _, err := strconv.ParseInt(b, 10, 64); err != nil {
			return nil, fmt.Errorf("before %q: want an event ID", b)
		}
		q.Set("before", b)
	}
	evs, err := a.auditEvents(r, s, q)
	if err != nil {
		return nil, err
	}
	d.Events = evs
	if len(evs) == auditPage {
		d.Before = evs[len(evs)-1].ID
	}
	return d, nil
}
