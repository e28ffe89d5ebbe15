package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/internal/key"
)

const testDerpToken = "relay-token-0123456789"

// S9: a relay learns that only live nodes' keys may use it, and only when
// it presents coord's relay token.
func TestDerpVerify(t *testing.T) {
	tc := startCoord(t, t.TempDir(), "", &syncBuf{})
	a := tc.join("a", tc.newKey(false))
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 5 * time.Second}
	ask := func(token string, k key.NodePublic) (int, bool) {
		body, _ := json.Marshal(derpVerifyRequest{NodeKey: k})
		req, _ := http.NewRequest("POST", tc.url+PathDerpVerify, strings.NewReader(string(body)))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var vr derpVerifyResponse
		json.NewDecoder(resp.Body).Decode(&vr)
		return resp.StatusCode, vr.Allowed
	}
	for _, tt := range []struct {
		name    string
		token   string
		k       key.NodePublic
		code    int
		allowed bool
	}{
		{"no token", "", a.nk, 401, false},
		{"wrong token", "relay-token-0123456780", a.nk, 401, false},
		{"live node", testDerpToken, a.nk, 200, true},
		{"unknown key", testDerpToken, key.NewNode().Public(), 200, false},
	} {
		code, ok := ask(tt.token, tt.k)
		if code != tt.code || ok != tt.allowed {
			t.Errorf("%s: got %d allowed=%v, want %d allowed=%v", tt.name, code, ok, tt.code, tt.allowed)
		}
	}
	if err := tc.admin.Do(context.Background(), "DELETE", adminapi.NodePath("a"), nil, nil); err != nil {
		t.Fatal(err)
	}
	if code, ok := ask(testDerpToken, a.nk); code != 200 || ok {
		t.Fatalf("deleted node still allowed: %d %v", code, ok)
	}
}
