package oidc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/plugins/sdk"
)

// Settings are the plugin's settings in coord's plugins config.
type Settings struct {
	DisplayName string `json:"display_name"`
	Issuer      string `json:"issuer"`
	ClientID    string `json:"client_id"`
	// ClientSecret or ClientSecretFile (preferred: keeps the secret out of
	// the config). Empty both: a public client, PKCE only.
	ClientSecret     string   `json:"client_secret"`
	ClientSecretFile string   `json:"client_secret_file"`
	Scopes           []string `json:"scopes"`       // default openid, email, profile
	GroupsClaim      string   `json:"groups_claim"` // default "groups"
	// AllowedGroups, if set, refuses anyone in none of them.
	AllowedGroups []string `json:"allowed_groups"`
	// CAFile is a PEM bundle to trust for the issuer (a private CA).
	CAFile string `json:"ca_file"`
}

// IdP implements sdk.IdP for one OpenID provider.
type IdP struct {
	// Now, if set, replaces time.Now in token checks (tests).
	Now func() time.Time

	s        Settings
	client   *http.Client
	provider *gooidc.Provider
	conf     oauth2.Config
}

// Configure implements sdk.IdP: it checks the settings and fetches the
// issuer's discovery document.
func (p *IdP) Configure(ctx context.Context, raw []byte) (sdk.Info, error) {
	var s Settings
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return sdk.Info{}, fmt.Errorf("oidc settings: %w", err)
	}
	u, err := url.Parse(s.Issuer)
	if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
		return sdk.Info{}, fmt.Errorf("oidc settings: issuer %q: want an https URL (http only on loopback)", s.Issuer)
	}
	if s.ClientID == "" {
		return sdk.Info{}, errors.New("oidc settings: client_id is required")
	}
	if s.ClientSecretFile != "" {
		if s.ClientSecret != "" {
			return sdk.Info{}, errors.New("oidc settings: set client_secret or client_secret_file, not both")
		}
		b, err := os.ReadFile(s.ClientSecretFile)
		if err != nil {
			return sdk.Info{}, fmt.Errorf("oidc settings: client_secret_file: %w", err)
		}
		s.ClientSecret = strings.TrimSpace(string(b))
	}
	if len(s.Scopes) == 0 {
		s.Scopes = []string{gooidc.ScopeOpenID, "email", "profile"}
	}
	if !contains(s.Scopes, gooidc.ScopeOpenID) {
		return sdk.Info{}, errors.New(`oidc settings: scopes must include "openid"`)
	}
	if s.GroupsClaim == "" {
		s.GroupsClaim = "groups"
	}
	if s.DisplayName == "" {
		s.DisplayName = u.Host
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return sdk.Info{}, fmt.Errorf("oidc settings: ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return sdk.Info{}, fmt.Errorf("oidc settings: ca_file %s holds no PEM certificate", s.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	p.client = &http.Client{Transport: tr, Timeout: 8 * time.Second}
	dctx, cancel := context.WithTimeout(gooidc.ClientContext(ctx, p.client), 8*time.Second)
	defer cancel()
	provider, err := gooidc.NewProvider(dctx, s.Issuer)
	if err != nil {
		return sdk.Info{}, fmt.Errorf("oidc: discovery at %s: %w", s.Issuer, err)
	}
	p.s, p.provider = s, provider
	p.conf = oauth2.Config{ClientID: s.ClientID, ClientSecret: s.ClientSecret, Endpoint: provider.Endpoint(), Scopes: s.Scopes}
	return sdk.Info{DisplayName: s.DisplayName}, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

type session struct {
	Verifier string `json:"v"`
}

// BeginLogin implements sdk.IdP.
func (p *IdP) BeginLogin(ctx context.Context, req sdk.BeginRequest) (sdk.BeginResponse, error) {
	if req.State == "" || req.Nonce == "" {
		return sdk.BeginResponse{}, errors.New("oidc: state and nonce are required")
	}
	conf := p.conf
	conf.RedirectURL = req.RedirectURL
	v := oauth2.GenerateVerifier()
	sess, _ := json.Marshal(session{Verifier: v})
	return sdk.BeginResponse{
		AuthURL: conf.AuthCodeURL(req.State, gooidc.Nonce(req.Nonce), oauth2.S256ChallengeOption(v)),
		Session: sess,
	}, nil
}

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{sdk.ErrBadCallback}, args...)...)
}

// CompleteLogin implements sdk.IdP: code exchange with the PKCE verifier,
// then the ID token's signature, issuer, audience, expiry and nonce.
func (p *IdP) CompleteLogin(ctx context.Context, req sdk.CompleteRequest) (sdk.Identity, error) {
	q := req.Query
	if e := q.Get("error"); e != "" {
		return sdk.Identity{}, fmt.Errorf("%w: the identity provider said %q: %s", sdk.ErrRefused, short(e), short(q.Get("error_description")))
	}
	if q.Get("state") != req.State || req.State == "" {
		return sdk.Identity{}, bad("state does not match the login")
	}
	if iss := q.Get("iss"); iss != "" && iss != p.s.Issuer {
		// RFC 9207: a response from another issuer (mix-up attack).
		return sdk.Identity{}, bad("response from issuer %q, want %q", short(iss), p.s.Issuer)
	}
	code := q.Get("code")
	if code == "" {
		return sdk.Identity{}, bad("no code in the callback")
	}
	var sess session
	if err := json.Unmarshal(req.Session, &sess); err != nil || sess.Verifier == "" {
		return sdk.Identity{}, bad("login session is broken")
	}
	conf := p.conf
	conf.RedirectURL = req.RedirectURL
	cctx := gooidc.ClientContext(ctx, p.client)
	tok, err := conf.Exchange(cctx, code, oauth2.VerifierOption(sess.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			// invalid_grant: a used, expired or foreign code, or a PKCE mismatch.
			return sdk.Identity{}, bad("the identity provider refused the code: %s %s", re.ErrorCode, short(re.ErrorDescription))
		}
		return sdk.Identity{}, fmt.Errorf("oidc: code exchange: %w", err)
	}
	return p.identity(cctx, tok, req.Nonce, nil)
}

// identity verifies tok's ID token and reads the identity from it. nonce
// "" skips the nonce check (refresh: no nonce is bound then).
func (p *IdP) identity(ctx context.Context, tok *oauth2.Token, nonce string, prev *sdk.Identity) (sdk.Identity, error) {
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		if prev != nil {
			return *prev, nil // refresh answers need not carry an ID token
		}
		return sdk.Identity{}, bad("the token response carries no ID token")
	}
	it, err := p.VerifyIDToken(ctx, raw)
	if err != nil {
		return sdk.Identity{}, err
	}
	if nonce != "" && !key.Equal([]byte(it.Nonce), []byte(nonce)) {
		return sdk.Identity{}, bad("ID token nonce does not match the login")
	}
	var claims map[string]any
	if err := it.Claims(&claims); err != nil {
		return sdk.Identity{}, bad("ID token claims: %v", err)
	}
	id := sdk.Identity{Subject: it.Subject}
	id.Email, _ = claims["email"].(string)
	id.Name, _ = claims["name"].(string)
	if v, ok := claims["email_verified"].(bool); ok && !v {
		id.Email = ""
	}
	groups, found := groupsOf(claims[p.s.GroupsClaim])
	if !found {
		// Many providers put groups only in the userinfo answer.
		if ui, err := p.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok)); err == nil && ui.Subject == it.Subject {
			var uc map[string]any
			if ui.Claims(&uc) == nil {
				groups, _ = groupsOf(uc[p.s.GroupsClaim])
			}
		}
	}
	id.Groups = groups
	if len(p.s.AllowedGroups) > 0 && !anyIn(id.Groups, p.s.AllowedGroups) {
		return sdk.Identity{}, fmt.Errorf("%w: %s is in none of the allowed groups", sdk.ErrRefused, it.Subject)
	}
	if tok.RefreshToken != "" {
		id.Secret = []byte(tok.RefreshToken)
	} else if prev != nil {
		id.Secret = prev.Secret
	}
	return id, nil
}

// VerifyIDToken checks an ID token's signature, issuer, audience (this
// client) and expiry.
func (p *IdP) VerifyIDToken(ctx context.Context, raw string) (*gooidc.IDToken, error) {
	cfg := &gooidc.Config{ClientID: p.s.ClientID, Now: p.Now}
	it, err := p.provider.Verifier(cfg).Verify(gooidc.ClientContext(ctx, p.client), raw)
	if err != nil {
		return nil, bad("ID token: %v", err)
	}
	return it, nil
}

// Refresh implements sdk.IdP: with a refresh token it asks the provider
// for new tokens; a refusal (invalid_grant: revoked, user disabled) is
// ErrRefused. Without one the identity stands.
func (p *IdP) Refresh(ctx context.Context, id sdk.Identity) (sdk.Identity, error) {
	if len(id.Secret) == 0 {
		return id, nil
	}
	cctx := gooidc.ClientContext(ctx, p.client)
	ts := p.conf.TokenSource(cctx, &oauth2.Token{RefreshToken: string(id.Secret), Expiry: time.Unix(1, 0)})
	tok, err := ts.Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode >= 400 && re.Response.StatusCode < 500 {
			return sdk.Identity{}, fmt.Errorf("%w: the identity provider refused the refresh token (%s)", sdk.ErrRefused, re.ErrorCode)
		}
		return sdk.Identity{}, fmt.Errorf("oidc: refresh: %w", err)
	}
	nid, err := p.identity(cctx, tok, "", &id)
	if err != nil {
		return sdk.Identity{}, err
	}
	if nid.Subject != id.Subject {
		return sdk.Identity{}, fmt.Errorf("%w: refreshed token is for another subject", sdk.ErrRefused)
	}
	return nid, nil
}

// groupsOf reads a groups claim: a list of strings or one string.
func groupsOf(v any) ([]string, bool) {
	switch g := v.(type) {
	case string:
		return []string{g}, true
	case []any:
		out := make([]string, 0, len(g))
		for _, e := range g {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out, true
	}
	return nil, false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func anyIn(have, want []string) bool {
	for _, h := range have {
		if contains(want, h) {
			return true
		}
	}
	return false
}

// short keeps IdP-supplied text in errors short.
func short(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
