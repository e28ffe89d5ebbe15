package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
	"github.com/lanmesh/lanmesh/plugins/sdk"
)

// fakeIdP is a test double of an IdP plugin: the browser "logs in" by
// coming back with code "ok-<nonce>". refresh, when set, answers Refresh
// (nil: the identity is still valid, unchanged).
type fakeIdP struct {
	refresh func(sdk.Identity) (sdk.Identity, error)
}

func (fakeIdP) Name() string        { return "fake" }
func (fakeIdP) DisplayName() string { return "Fake" }
func (fakeIdP) BeginLogin(ctx context.Context, req sdk.BeginRequest) (sdk.BeginResponse, error) {
	return sdk.BeginResponse{AuthURL: "https://idp.test/auth?state=" + url.QueryEscape(req.State), Session: []byte(req.Nonce)}, nil
}
func (fakeIdP) CompleteLogin(ctx context.Context, req sdk.CompleteRequest) (sdk.Identity, error) {
	if req.Query.Get("code") != "ok-"+string(req.Session) {
		return sdk.Identity{}, fmt.Errorf("%w: bad code", sdk.ErrBadCallback)
	}
	return sdk.Identity{Subject: "sub-ann", Email: "ann@example.net", Groups: []string{"eng"}, Secret: []byte("refresh-secret-xyz")}, nil
}
func (fakeIdP) HTTP(ctx context.Context, r *http.Request, pluginURL, path string) (sdk.HTTPResponse, error) {
	return sdk.HTTPResponse{}, errors.New("no pages")
}
func (f fakeIdP) Refresh(ctx context.Context, id sdk.Identity) (sdk.Identity, error) {
	if f.refresh == nil {
		return id, nil
	}
	return f.refresh(id)
}

func browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// startLogin asks for a login URL as node mk and opens it in br; it
// returns the login's ID and the state the IdP would send back.
func startLogin(t *testing.T, tc loginCoord, mk key.MachinePrivate, br *http.Client) (string, string) {
	t.Helper()
	lr, err := tc.client(mk).Login(context.Background(), wire.LoginRequest{NodeKey: key.NewNode().Public(), Hostname: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(lr.URL, tc.url+"/login/fake?id=") {
		t.Fatalf("login URL %s", lr.URL)
	}
	resp, _ := get(t, br, lr.URL)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc.Host != "idp.test" {
		t.Fatalf("login start: %d to %s", resp.StatusCode, loc)
	}
	return lr.ID, loc.Query().Get("state")
}

func TestLoginFlow(t *testing.T) {
	logs := &syncBuf{}
	tc := startLoginCoord(t, logs)
	mk := key.NewMachine()
	br := browser()
	id, state := startLogin(t, tc, mk, br)

	waited := make(chan wire.LoginWaitResponse, 1)
	go func() {
		r, err := tc.client(mk).LoginWait(context.Background(), id)
		if err != nil {
			t.Error(err)
		}
		waited <- r
	}()
	// The nonce is in the session the fake keeps; the real code would come
	// from the IdP. Find it through the pending login.
	nonce := pendingNonce(t, tc, state)
	resp, body := get(t, br, tc.url+"/callback?state="+url.QueryEscape(state)+"&code=ok-"+nonce)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "logged in as ann") {
		t.Fatalf("callback: %d %s", resp.StatusCode, body)
	}
	select {
	case r := <-waited:
		if !r.Done || r.Node == nil || r.User != "ann" || r.Error != "" || len(r.Node.Addresses) == 0 {
			t.Fatalf("login wait: %+v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("login wait did not return")
	}
	users, _ := tc.srv.st.Users(context.Background())
	found := false
	for _, u := range users {
		if u.Name == "ann" && len(u.Groups) == 1 && u.Groups[0] == "eng" {
			found = true
		}
	}
	if !found {
		t.Errorf("user ann with IdP group eng not stored: %+v", users)
	}
	// A replayed callback (same state) is refused: states are single use.
	resp, body = get(t, br, tc.url+"/callback?state="+url.QueryEscape(state)+"&code=ok-"+nonce)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "already used") {
		t.Errorf("replayed callback: %d %s", resp.StatusCode, body)
	}
	// The login is in the audit log, by the person, from the browser.
	if ev := lastEvent(t, tc.srv, "login"); ev.ActorKind != "user" || ev.Actor != "ann" || ev.Result != ResultOK || !strings.HasPrefix(ev.Source, "127.0.0.1:") || ev.Target == "" {
		t.Errorf("login audit event: %+v", ev)
	}
	// S11: the IdP's secret never reaches the log.
	if strings.Contains(logs.String(), "refresh-secret-xyz") {
		t.Error("coord logged the identity's secret")
	}
}

func TestLoginCallbackRefusals(t *testing.T) {
	tc := startLoginCoord(t, &syncBuf{})
	for _, tt := range []struct {
		name string
		run  func(br *http.Client, state, nonce string) (*http.Response, string)
		code int
		want string
	}{
		{"wrong state", func(br *http.Client, state, nonce string) (*http.Response, string) {
			return get(t, br, tc.url+"/callback?state=forged&code=ok-"+nonce)
		}, http.StatusBadRequest, "unknown"},
		{"other browser", func(_ *http.Client, state, nonce string) (*http.Response, string) {
			return get(t, browser(), tc.url+"/callback?state="+url.QueryEscape(state)+"&code=ok-"+nonce)
		}, http.StatusBadRequest, "another browser"},
		{"bad code", func(br *http.Client, state, nonce string) (*http.Response, string) {
			return get(t, br, tc.url+"/callback?state="+url.QueryEscape(state)+"&code=forged")
		}, http.StatusForbidden, "bad code"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mk := key.NewMachine()
			br := browser()
			id, state := startLogin(t, tc, mk, br)
			nonce := pendingNonce(t, tc, state)
			resp, body := tt.run(br, state, nonce)
			if resp.StatusCode != tt.code || !strings.Contains(body, tt.want) {
				t.Fatalf("got %d %s, want %d with %q", resp.StatusCode, body, tt.code, tt.want)
			}
			if tt.name == "wrong state" {
				return // the real login is still pending
			}
			// A failed login with a pending login behind it is audited.
			if ev := lastEvent(t, tc.srv, "login"); ev.Result != ResultRefused || ev.ActorKind != "user" || !strings.Contains(ev.Detail, tt.want) {
				t.Errorf("failed login audit event: %+v", ev)
			}
			r, err := tc.client(mk).LoginWait(context.Background(), id)
			if err == nil && (!r.Done || r.Error == "" || r.Node != nil) {
				t.Errorf("login wait after a refused callback: %+v", r)
			}
		})
	}
}

type loginCoord struct {
	*testCoord
	srv *Server
}

func startLoginCoord(t *testing.T, logs *syncBuf) loginCoord {
	return startLoginCoordWith(t, logs, fakeIdP{})
}

func startLoginCoordWith(t *testing.T, logs *syncBuf, idp fakeIdP) loginCoord {
	tc, srv := startCoordWith(t, t.TempDir(), "", logs, func(s *Server, ln net.Listener) {
		s.cfg.LoginProviders = []LoginProvider{idp}
		s.cfg.PublicURL = "https://" + ln.Addr().String()
	})
	return loginCoord{tc, srv}
}

func pendingNonce(t *testing.T, tc loginCoord, state string) string {
	t.Helper()
	tc.srv.logins.mu.Lock()
	defer tc.srv.logins.mu.Unlock()
	pl := tc.srv.logins.byState[state]
	if pl == nil {
		t.Fatal("no pending login for the state")
	}
	return pl.nonce
}

// S18: one address cannot fill the pending-login table with throwaway
// machine keys; other addresses still get logins.
func TestLoginPerSourceCap(t *testing.T) {
	tc := startLoginCoord(t, &syncBuf{})
	login := func() error {
		_, err := tc.client(key.NewMachine()).Login(context.Background(), wire.LoginRequest{NodeKey: key.NewNode().Public(), Hostname: "laptop"})
		return err
	}
	for i := 0; i < maxPendingPerSource; i++ {
		if err := login(); err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
	}
	err := login()
	if err == nil || !strings.Contains(err.Error(), "too many logins in progress from this address") {
		t.Fatalf("login past the per-source cap: %v", err)
	}
}
