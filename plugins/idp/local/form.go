package local

import (
	"html/template"
	"net/http"
	"net/url"

	"github.com/lanmesh/lanmesh/plugins/sdk"
)

var formTmpl = template.Must(template.New("form").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>{{.Title}}</title>
<meta name="viewport" content="width=device-width">
<style>body{font-family:sans-serif;max-width:22em;margin:4em auto}label,input,button{display:block;width:100%;margin:.4em 0}p.err{color:#b00}</style>
</head><body>
<h1>{{.Title}}</h1>
{{if .Err}}<p class="err" id="error">{{.Err}}</p>{{end}}
<form method="post" action="login">
<input type="hidden" name="state" value="{{.State}}">
<label>Username <input name="username" id="username" autocomplete="username" required autofocus></label>
<label>Password <input name="password" id="password" type="password" autocomplete="current-password" required></label>
<label>One-time code <input name="code" id="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}"></label>
<button type="submit" id="submit">Log in</button>
</form></body></html>
`))

// ServeHTTP serves the login form at "login" (GET shows it, POST checks
// it and sends the browser back to coord with a one-time code).
func (p *IdP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/login" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	now := p.now()
	switch r.Method {
	case http.MethodGet:
		state := r.URL.Query().Get("state")
		if !p.pendingOK(state) {
			http.Error(w, "this login expired or is unknown: start again from lanmesh", http.StatusBadRequest)
			return
		}
		p.render(w, http.StatusOK, state, "")
	case http.MethodPost:
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		state := r.PostForm.Get("state")
		if !p.pendingOK(state) {
			http.Error(w, "this login expired or is unknown: start again from lanmesh", http.StatusBadRequest)
			return
		}
		u, err := p.check(r.PostForm.Get("username"), r.PostForm.Get("password"), r.PostForm.Get("code"), now)
		if err != nil {
			sdk.Logger().Info("local login failed", "user", r.PostForm.Get("username"), "reason", err.Error())
			p.render(w, http.StatusUnauthorized, state, err.Error())
			return
		}
		code := randomHex(32)
		p.mu.Lock()
		pl := p.pending[state]
		delete(p.pending, state)
		p.codes[code] = issuedCode{user: u.Username, state: state, expires: now.Add(codeTTL)}
		p.mu.Unlock()
		sdk.Logger().Info("local login", "user", u.Username)
		target, err := url.Parse(pl.redirect)
		if err != nil {
			http.Error(w, "bad redirect", http.StatusInternalServerError)
			return
		}
		q := target.Query()
		q.Set("state", state)
		q.Set("code", code)
		target.RawQuery = q.Encode()
		http.Redirect(w, r, target.String(), http.StatusSeeOther)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "use GET or POST", http.StatusMethodNotAllowed)
	}
}

func (p *IdP) pendingOK(state string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	pl, ok := p.pending[state]
	return ok && state != "" && !p.now().After(pl.expires)
}

func (p *IdP) render(w http.ResponseWriter, code int, state, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	p.mu.Lock()
	title := p.s.DisplayName
	p.mu.Unlock()
	formTmpl.Execute(w, struct{ Title, State, Err string }{title, state, msg})
}
