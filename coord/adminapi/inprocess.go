package adminapi

import (
	"net/http"
	"net/http/httptest"
	"time"
)

// NewHandlerClient returns a client that calls h in this process (coord's
// own AdminHandler) instead of a socket: the web admin uses it, so its
// requests take the same path, checks and audit as the CLI's. Values in
// the context given to Do reach the handler (the actor, for the audit).
func NewHandlerClient(h http.Handler) *Client {
	return &Client{hc: &http.Client{Transport: handlerTransport{h}, Timeout: 30 * time.Second}, base: "http://coord", where: "in-process admin API"}
}

type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, req)
	return rec.Result(), nil
}
