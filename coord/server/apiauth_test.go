package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/coord/store"
)

func (tc *testCoord) apiKey(scope, expiry string) adminapi.APIKey {
	tc.t.Helper()
	var k adminapi.APIKey
	if err := tc.admin.Do(context.Background(), "POST", adminapi.PathAPIKeys, adminapi.CreateAPIKeyRequest{Scope: scope, Expiry: expiry}, &k); err != nil {
		tc.t.Fatal(err)
	}
	return k
}

func (tc *testCoord) remote(key string) *adminapi.Client {
	tc.t.Helper()
	c, err := adminapi.NewRemoteClient(adminapi.RemoteOptions{ServerURL: tc.url, APIKey: key, Fingerprint: tc.fp})
	if err != nil {
		tc.t.Fatal(err)
	}
	return c
}

// The HTTPS admin API: an admin key changes state, a read key only
// reads, a revoked or expired key is refused at once (acceptance 5), a
// wrong secret or scope is refused, and every use of a known key is
// audited. S11: no key reaches a log line.
func TestAPIKeys(t *testing.T) {
	logs := &syncBuf{}
	tc, srv := startCoordWith(t, t.TempDir(), "", logs, nil)
	ctx := context.Background()
	admin := tc.apiKey("admin", "90d")
	read := tc.apiKey("read", "1h")
	if !strings.HasPrefix(admin.Key, "lmapi_"+admin.ID+"_") || admin.Scope != "admin" || time.Until(admin.Expiry) < 89*24*time.Hour {
		t.Fatalf("created key: %+v", admin)
	}
	ac, rc := tc.remote(admin.Key), tc.remote(read.Key)

	var u adminapi.User
	if err := ac.Do(ctx, "POST", adminapi.PathUsers, adminapi.CreateUserRequest{Name: "carol"}, &u); err != nil || u.Name != "carol" {
		t.Fatalf("admin key creating a user: %+v %v", u, err)
	}
	if e := lastEvent(t, srv, "user.create"); e.ActorKind != "apikey" || e.Actor != admin.ID || !strings.HasPrefix(e.Source, "127.0.0.1:") || e.Result != ResultOK {
		t.Errorf("user.create by API key: %+v", e)
	}
	var users []adminapi.User
	if err := rc.Do(ctx, "GET", adminapi.PathUsers, nil, &users); err != nil || len(users) < 2 {
		t.Fatalf("read key listing users: %+v %v", users, err)
	}
	if e := lastEvent(t, srv, "api.read"); e.Actor != read.ID || e.Target != "GET "+adminapi.PathUsers || e.Result != ResultOK {
		t.Errorf("read by API key: %+v", e)
	}
	if err := rc.Do(ctx, "POST", adminapi.PathPolicyCheck, adminapi.PolicyRequest{Body: `{}`}, nil); err != nil {
		t.Errorf("read key checking a policy: %v", err)
	}
	for _, req := range []struct{ method, path string }{
		{"DELETE", adminapi.UserPath("carol")},
		{"POST", adminapi.PathAPIKeys},
		{"POST", adminapi.APIKeyPath(admin.ID) + "/revoke"},
	} {
		err := rc.Do(ctx, req.method, req.path, adminapi.CreateAPIKeyRequest{Scope: "admin", Expiry: "1d"}, nil)
		if err == nil || !strings.Contains(err.Error(), "read-only") {
			t.Errorf("read key %s %s: %v, want refused as read-only", req.method, req.path, err)
		}
		if e := lastEvent(t, srv, "apikey.auth"); e.Actor != read.ID || e.Result != ResultRefused || e.Target != req.method+" "+req.path {
			t.Errorf("refused write not audited: %+v", e)
		}
	}
	var got []adminapi.User
	rc.Do(ctx, "GET", adminapi.PathUsers, nil, &got)
	if len(got) != len(users) {
		t.Fatal("a read key changed state")
	}

	// Wrong secret, unknown key, no key, malformed key.
	wrong := admin.Key[:len(admin.Key)-4] + "AAAA"
	if wrong == admin.Key {
		wrong = admin.Key[:len(admin.Key)-4] + "BBBB"
	}
	if err := tc.remote(wrong).Do(ctx, "GET", adminapi.PathNodes, nil, nil); err == nil {
		t.Error("a wrong secret was accepted")
	}
	if e := lastEvent(t, srv, "apikey.auth"); e.Actor != admin.ID || !strings.Contains(e.Detail, "wrong secret") {
		t.Errorf("wrong secret not audited: %+v", e)
	}
	unknown := "lmapi_000000000000_" + strings.Repeat("A", 43)
	if err := tc.remote(unknown).Do(ctx, "GET", adminapi.PathNodes, nil, nil); err == nil || !strings.Contains(err.Error(), "invalid API key") {
		t.Errorf("unknown key: %v", err)
	}
	for _, h := range []string{"", "Bearer", "Basic abc", "Bearer lmapi_x_y", "Bearer " + admin.Key + "x"} {
		req, _ := http.NewRequest("GET", tc.url+adminapi.RemotePath(adminapi.PathNodes), nil)
		if h != "" {
			req.Header.Set("Authorization", h)
		}
		resp, err := insecureClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("Authorization %q: HTTP %d, want 401", h, resp.StatusCode)
		}
	}

	// Revoked: refused on the very next request (no cache).
	if err := ac.Do(ctx, "GET", adminapi.PathNodes, nil, nil); err != nil {
		t.Fatal(err)
	}
	var rev adminapi.APIKey
	if err := ac.Do(ctx, "POST", adminapi.APIKeyPath(admin.ID)+"/revoke", nil, &rev); err != nil || rev.Revoked.IsZero() {
		t.Fatalf("revoke own key: %+v %v", rev, err)
	}
	if err := ac.Do(ctx, "GET", adminapi.PathNodes, nil, nil); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("revoked key: %v, want refused as revoked", err)
	}
	if e := lastEvent(t, srv, "apikey.auth"); e.Actor != admin.ID || e.Result != ResultRefused || !strings.Contains(e.Detail, "revoked") {
		t.Errorf("revoked use not audited: %+v", e)
	}

	// Expired: refused as soon as coord's clock passes the expiry.
	if err := rc.Do(ctx, "GET", adminapi.PathNodes, nil, nil); err != nil {
		t.Fatal(err)
	}
	tc.offset.Store(int64(time.Hour + time.Second))
	if err := rc.Do(ctx, "GET", adminapi.PathNodes, nil, nil); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired key: %v, want refused as expired", err)
	}
	tc.offset.Store(0)

	var list []adminapi.APIKey
	if err := tc.admin.Do(ctx, "GET", adminapi.PathAPIKeys, nil, &list); err != nil || len(list) != 2 {
		t.Fatalf("list: %+v %v", list, err)
	}
	for _, k := range list {
		if k.Key != "" || (k.ID == read.ID && k.LastUsed.IsZero()) {
			t.Errorf("listed key %+v: want no secret and a last use", k)
		}
	}

	// S11: neither key (nor its secret part) is in any log line.
	for _, k := range []string{admin.Key, read.Key, wrong} {
		// The secret is the 43 characters after "lmapi_<12 hex>_"; it is
		// base64url and may itself contain "_", so it is cut by position.
		_, secret, ok := parseBearer("Bearer " + k)
		if !ok {
			t.Fatal("an API key does not parse as lmapi_ID_SECRET")
		}
		if strings.Contains(logs.String(), secret) {
			t.Errorf("an API key secret reached coord's log")
		}
	}
	evs, _ := srv.AuditEvents(ctx, store.AuditQuery{})
	if s := fmt.Sprint(evs); strings.Contains(s, admin.Key[len(admin.Key)-43:]) || strings.Contains(s, read.Key[len(read.Key)-43:]) {
		t.Error("an API key secret reached the audit log")
	}
}

// S18: requests to the HTTPS admin API are rate-limited per source
// before any key is looked up.
func TestAPIKeyRateLimit(t *testing.T) {
	tc, _ := startCoordLimits(t, t.TempDir(), "", &syncBuf{}, Limits{AdminRate: 0.01, AdminBurst: 3}, nil)
	c := insecureClient()
	codes := []int{}
	for range 6 {
		req, _ := http.NewRequest("GET", tc.url+adminapi.RemotePath(adminapi.PathNodes), nil)
		req.Header.Set("Authorization", "Bearer lmapi_000000000000_"+strings.Repeat("A", 43))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
	want := []int{401, 401, 401, 429, 429, 429}
	if fmt.Sprint(codes) != fmt.Sprint(want) {
		t.Fatalf("codes %v, want %v", codes, want)
	}
}

// FuzzParseBearer: only "Bearer lmapi_<12 hex>_<43 chars>" is taken
// apart; anything else is refused without a panic.
func FuzzParseBearer(f *testing.F) {
	for _, s := range []string{"Bearer lmapi_0123456789ab_" + strings.Repeat("A", 43), "Bearer ", "Basic x", "Bearer lmapi__", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		id, secret, ok := parseBearer(h)
		if ok && (len(id) != 12 || len(secret) != 43 || !strings.Contains(h, id+"_"+secret)) {
			t.Fatalf("%q parsed as %q %q", h, id, secret)
		}
	})
}
