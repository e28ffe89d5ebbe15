package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/lanmesh/lanmesh/plugins/idp/oidc"
	"github.com/lanmesh/lanmesh/plugins/sdk"
)

const (
	redirect     = "https://coord.test:4443/callback"
	clientSecret = "secret-secret-secret-secret-1234"
	clientsJSON  = `[{"client_id":"lanmesh","client_secret":"` + clientSecret + `","redirect_uris":["` + redirect + `"]},
		{"client_id":"other","client_secret":"` + clientSecret + `","redirect_uris":["` + redirect + `"]}]`
)

func configured(t *testing.T, issuer, clientID string) *oidc.IdP {
	t.Helper()
	p := &oidc.IdP{}
	settings := `{"issuer": "` + issuer + `", "client_id": "` + clientID + `", "client_secret": "` + clientSecret + `",
		"scopes": ["openid", "email", "profile", "groups", "offline_access"]}`
	if _, err := p.Configure(context.Background(), []byte(settings)); err != nil {
		t.Fatal(err)
	}
	return p
}

// begin starts a login at p and logs user in at the provider; it returns
// the request CompleteLogin would get.
func begin(t *testing.T, p *oidc.IdP, state, nonce, user string) sdk.CompleteRequest {
	t.Helper()
	resp, err := p.BeginLogin(context.Background(), sdk.BeginRequest{RedirectURL: redirect, State: state, Nonce: nonce})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(resp.AuthURL, "code_challenge_method=S256") {
		t.Errorf("auth URL without PKCE: %s", resp.AuthURL)
	}
	q := devLogin(t, resp.AuthURL, redirect, user)
	return sdk.CompleteRequest{RedirectURL: redirect, State: state, Nonce: nonce, Session: resp.Session, Query: q}
}

// rawIDToken logs user in for clientID and returns a fresh ID token.
func rawIDToken(t *testing.T, issuer, clientID, user string) string {
	t.Helper()
	conf := oauth2.Config{ClientID: clientID, ClientSecret: clientSecret, RedirectURL: redirect,
		Endpoint: oauth2.Endpoint{AuthURL: issuer + "/auth", TokenURL: issuer + "/token"}, Scopes: []string{"openid", "email"}}
	v := oauth2.GenerateVerifier()
	q := devLogin(t, conf.AuthCodeURL("st", oauth2.SetAuthURLParam("nonce", "n"), oauth2.S256ChallengeOption(v)), redirect, user)
	tok, err := conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		t.Fatal("no id_token")
	}
	return raw
}

// TestOIDCAgainstProvider: the OIDC plugin's code against a real
// oidc-provider. A good login yields the identity with its groups and a
// refresh token that Refresh accepts; every forged or replayed callback is
// refused (acceptance: bad input).
func TestOIDCAgainstProvider(t *testing.T) {
	logs := &syncBuf{}
	issuer := startProvider(t, clientsJSON, `{"ann": ["eng", "ops"]}`, logs)
	other := startProvider(t, clientsJSON, `{}`, logs)
	p := configured(t, issuer, "lanmesh")
	ctx := context.Background()
	defer func() {
		if t.Failed() {
			t.Logf("provider log:\n%s", logs)
		}
	}()

	t.Run("good", func(t *testing.T) {
		req := begin(t, p, "state-good", "nonce-good", "ann")
		id, err := p.CompleteLogin(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if id.Subject != "ann" || id.Email != "ann@example.net" || strings.Join(id.Groups, ",") != "eng,ops" || len(id.Secret) == 0 {
			t.Fatalf("identity %+v (secret %d bytes)", id, len(id.Secret))
		}
		nid, err := p.Refresh(ctx, id)
		if err != nil || nid.Subject != "ann" {
			t.Fatalf("refresh: %+v %v", nid, err)
		}
		id.Secret = []byte("not-a-refresh-token")
		if _, err := p.Refresh(ctx, id); !errors.Is(err, sdk.ErrRefused) {
			t.Errorf("refresh with a bogus token: %v, want ErrRefused", err)
		}
	})
	// Each forged callback: a test of its own.
	t.Run("wrong state", func(t *testing.T) {
		req := begin(t, p, "state-1", "nonce-1", "ann")
		req.State = "state-other" // the callback's state is not this login's
		if _, err := p.CompleteLogin(ctx, req); !errors.Is(err, sdk.ErrBadCallback) || !strings.Contains(err.Error(), "state") {
			t.Errorf("err %v", err)
		}
	})
	t.Run("reused code", func(t *testing.T) {
		req := begin(t, p, "state-2", "nonce-2", "ann")
		if _, err := p.CompleteLogin(ctx, req); err != nil {
			t.Fatal(err)
		}
		if _, err := p.CompleteLogin(ctx, req); !errors.Is(err, sdk.ErrBadCallback) || !strings.Contains(err.Error(), "invalid_grant") {
			t.Errorf("replayed code: %v", err)
		}
	})
	t.Run("wrong nonce", func(t *testing.T) {
		req := begin(t, p, "state-3", "nonce-3", "ann")
		req.Nonce = "nonce-of-another-login"
		if _, err := p.CompleteLogin(ctx, req); !errors.Is(err, sdk.ErrBadCallback) || !strings.Contains(err.Error(), "nonce") {
			t.Errorf("err %v", err)
		}
	})
	t.Run("wrong PKCE verifier", func(t *testing.T) {
		req := begin(t, p, "state-4", "nonce-4", "ann")
		other := begin(t, p, "state-5", "nonce-5", "ann")
		req.Session = other.Session // a code injected into another login
		if _, err := p.CompleteLogin(ctx, req); !errors.Is(err, sdk.ErrBadCallback) {
			t.Errorf("err %v", err)
		}
	})
	t.Run("wrong audience", func(t *testing.T) {
		raw := rawIDToken(t, issuer, "other", "ann") // issued to client "other"
		if _, err := p.VerifyIDToken(ctx, raw); err == nil || !strings.Contains(err.Error(), "audience") {
			t.Errorf("token for another client accepted: %v", err)
		}
	})
	t.Run("expired token", func(t *testing.T) {
		raw := rawIDToken(t, issuer, "lanmesh", "ann")
		late := configured(t, issuer, "lanmesh")
		late.Now = func() time.Time { return time.Now().Add(2 * time.Hour) } // ID token TTL is 1 h
		if _, err := late.VerifyIDToken(ctx, raw); err == nil || !strings.Contains(err.Error(), "expired") {
			t.Errorf("expired token accepted: %v", err)
		}
		if _, err := p.VerifyIDToken(ctx, raw); err != nil {
			t.Errorf("the same token in time: %v", err)
		}
	})
	t.Run("other issuer", func(t *testing.T) {
		raw := rawIDToken(t, other, "lanmesh", "ann")
		if _, err := p.VerifyIDToken(ctx, raw); err == nil || !strings.Contains(err.Error(), "issue") {
			t.Errorf("token of another issuer accepted: %v", err)
		}
		// The callback of another issuer's login (RFC 9207 iss) is refused too.
		req := begin(t, p, "state-6", "nonce-6", "ann")
		req.Query.Set("iss", other)
		if _, err := p.CompleteLogin(ctx, req); !errors.Is(err, sdk.ErrBadCallback) {
			t.Errorf("err %v", err)
		}
	})
}
