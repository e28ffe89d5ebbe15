package server

import (
	"encoding/json"
	"html/template"
	"net/http"
)

var loginTmpl = template.Must(template.New("login").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>lanmesh: {{.Title}}</title>
<meta name="viewport" content="width=device-width">
<style>body{font-family:sans-serif;max-width:32em;margin:4em auto}</style></head>
<body><h1 id="title">{{.Title}}</h1><p id="message">{{.Message}}</p></body></html>
`))

// loginPage answers a browser with a short page.
func loginPage(w http.ResponseWriter, code int, title, msg string) {
	secureHeaders(w)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	loginTmpl.Execute(w, struct{ Title, Message string }{title, msg})
}

func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only wire types go in
	}
	return b
}
