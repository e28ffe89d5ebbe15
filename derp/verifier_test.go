package derp

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
)

func TestHTTPVerifier(t *testing.T) {
	good := key.NewNode().Public()
	bad := key.NewNode().Public()
	var calls atomic.Int64
	status := atomic.Int64{}
	status.Store(200)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Method != http.MethodPost || r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		var req VerifyRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		if s := int(status.Load()); s != 200 {
			if s == 299 { // a 200 with a body that is not the expected JSON
				w.Write([]byte("<html>"))
				return
			}
			http.Error(w, "down", s)
			return
		}
		json.NewEncoder(w).Encode(VerifyResponse{Allowed: req.NodeKey == good})
	}))
	defer srv.Close()
	ctx := context.Background()

	v := &HTTPVerifier{URL: srv.URL, Token: "s3cret", TTL: time.Hour}
	for _, tc := range []struct {
		k    key.NodePublic
		want bool
	}{{good, true}, {bad, false}, {good, true}, {bad, false}} {
		got, err := v.Allowed(ctx, tc.k)
		if err != nil || got != tc.want {
			t.Fatalf("Allowed(%s) = %v, %v; want %v", tc.k.ShortString(), got, err, tc.want)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d calls, want 2 (answers are cached)", n)
	}

	// Forget makes the next answer come from the source, and a failing
	// source is an error (the server turns it into "no").
	status.Store(503)
	v.Forget(good)
	if ok, err := v.Allowed(ctx, good); err == nil || ok {
		t.Fatalf("503: got %v, %v; want an error", ok, err)
	}
	status.Store(299)
	if ok, err := v.Allowed(ctx, good); err == nil || ok {
		t.Fatalf("bad body: got %v, %v; want an error", ok, err)
	}
	// Wrong token: 401 is an error, not an "allowed".
	v2 := &HTTPVerifier{URL: srv.URL, Token: "wrong", TTL: -1}
	status.Store(200)
	if ok, err := v2.Allowed(ctx, good); err == nil || ok {
		t.Fatalf("wrong token: got %v, %v", ok, err)
	}
	// Unreachable: error.
	v3 := &HTTPVerifier{URL: "http://127.0.0.1:1/verify"}
	if ok, err := v3.Allowed(ctx, good); err == nil || ok {
		t.Fatalf("unreachable: got %v, %v", ok, err)
	}
}

// The server consults the HTTP verifier end to end and Revoke clears its cache.
func TestServerWithHTTPVerifier(t *testing.T) {
	allowed := key.NewNode()
	var allow atomic.Bool
	allow.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req VerifyRequest
		json.NewDecoder(r.Body).Decode(&req)
		json.NewEncoder(w).Encode(VerifyResponse{Allowed: allow.Load() && req.NodeKey == allowed.Public()})
	}))
	defer srv.Close()
	r := newRelay(t, Options{Verifier: &HTTPVerifier{URL: srv.URL, TTL: time.Hour}})
	c, err := r.connect(allowed)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c2, err := r.connect(key.NewNode()); err == nil {
		c2.Close()
		t.Fatal("unknown key accepted")
	}
	allow.Store(false)
	r.s.Revoke(allowed.Public())
	expectClosed(t, c, time.Second)
	if c3, err := r.connect(allowed); err == nil {
		c3.Close()
		t.Fatal("revoked key reconnected from the verifier's cache")
	}
}
