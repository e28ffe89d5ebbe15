package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/internal/controlclient"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
	"github.com/lanmesh/lanmesh/plugins/sdk"
)

const allowAll = `{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}`

func removed(id wire.NodeID) func(*wire.MapMessage) bool {
	return func(m *wire.MapMessage) bool {
		for _, r := range m.PeersRemoved {
			if r == id {
				return true
			}
		}
		return false
	}
}

// S12: a node key set to expire in 1 s leaves its peer's netmap at that
// instant, pushed by coord's expiry timer with nothing else changing; the
// node's own stream closes and its next map request is refused with
// ReasonNodeExpired. An auth key brings it back with the same addresses.
func TestNodeExpiryOnTime(t *testing.T) {
	tc := startCoord(t, t.TempDir(), "", &syncBuf{})
	ak := tc.newKey(true)
	a := tc.join("a", ak)
	b := tc.join("b", ak)
	as := a.openMap(wire.MapRequest{})
	as.waitFor(t, "a's full map with b", func(m *wire.MapMessage) bool {
		return m.Full && peerIn(m.Peers, b.self.ID, func(wire.Node) bool { return true })
	})
	bs := b.openMap(wire.MapRequest{})
	bs.waitFor(t, "b's full map", func(m *wire.MapMessage) bool { return m.Full })

	ctx := context.Background()
	var n adminapi.Node
	if err := tc.admin.Do(ctx, "POST", adminapi.NodeExpiryPath("b"), adminapi.ExpiryRequest{In: "1s"}, &n); err != nil {
		t.Fatal(err)
	}
	if n.KeyExpiry.IsZero() || n.Expired {
		t.Fatalf("after --in 1s: %+v", n)
	}
	as.waitFor(t, "b removed at its expiry", removed(b.self.ID))
	late := time.Since(n.KeyExpiry)
	t.Logf("b left a's netmap %v after its key expired", late)
	if late < 0 {
		t.Fatalf("b left %v before its key expired", -late)
	}
	b.expiredOut(t, bs, "after expiry")

	// Re-auth with an auth key: same node, same addresses, fresh expiry.
	nk := key.NewNode().Public()
	rr, err := b.c.Register(ctx, wire.RegisterRequest{AuthKey: ak.WithoutFingerprint(), NodeKey: nk, Hostname: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if rr.Node.ID != b.self.ID || rr.Node.Addresses[0] != b.self.Addresses[0] || rr.Node.Name != b.self.Name || !rr.Node.KeyExpiry.After(time.Now()) {
		t.Fatalf("re-auth: %+v, was %+v", rr.Node, b.self)
	}
	as.waitFor(t, "b back with its new key", func(m *wire.MapMessage) bool {
		return peerIn(m.PeersChanged, b.self.ID, func(p wire.Node) bool { return p.Key == nk })
	})

	// --off: never expires.
	var off adminapi.Node
	if err := tc.admin.Do(ctx, "POST", adminapi.NodeExpiryPath("b"), adminapi.ExpiryRequest{Off: true}, &off); err != nil || !off.KeyExpiry.IsZero() {
		t.Fatalf("--off: %+v %v", off, err)
	}
	for _, bad := range []adminapi.ExpiryRequest{{}, {In: "1s", Off: true}, {In: "-1s"}, {In: "soon"}, {In: "100000h"}} {
		err := tc.admin.Do(ctx, "POST", adminapi.NodeExpiryPath("b"), bad, nil)
		if err == nil || !strings.Contains(err.Error(), "--") {
			t.Errorf("expiry %+v: %v, want a refusal naming the flag", bad, err)
		}
	}
	if err := tc.admin.Do(ctx, "POST", adminapi.NodeExpiryPath("nosuch"), adminapi.ExpiryRequest{Off: true}, nil); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("unknown node: %v", err)
	}
}

// Tagged nodes' keys do not expire; untagged ones get the lifetime.
func TestTaggedKeysDoNotExpire(t *testing.T) {
	tc := startCoord(t, t.TempDir(), "", &syncBuf{})
	tagged := tc.join("r", tc.newKey(false, "tag:router"))
	plain := tc.join("l", tc.newKey(false))
	if !tagged.self.KeyExpiry.IsZero() {
		t.Errorf("tagged node expires at %v", tagged.self.KeyExpiry)
	}
	if d := time.Until(plain.self.KeyExpiry); d < DefaultKeyLifetime-time.Minute || d > DefaultKeyLifetime {
		t.Errorf("untagged node expires in %v, want %v", d, DefaultKeyLifetime)
	}
}

// An ephemeral node is deleted once it has been disconnected for the
// timeout, never while its stream is open; a normal node stays.
func TestEphemeralNodeDeleted(t *testing.T) {
	tc, srv := startCoordWith(t, t.TempDir(), "", &syncBuf{}, func(s *Server, _ net.Listener) {
		s.cfg.EphemeralTimeout = 500 * time.Millisecond
	})
	ctx := context.Background()
	var k adminapi.Key
	if err := tc.admin.Do(ctx, "POST", adminapi.PathKeys, adminapi.CreateKeyRequest{Reusable: true, Ephemeral: true, Expiry: "1h"}, &k); err != nil || !k.Ephemeral {
		t.Fatalf("ephemeral key: %+v %v", k, err)
	}
	ak, _ := wire.ParseAuthKey(k.Key)
	keep := tc.join("keep", tc.newKey(false))
	e := tc.join("ci", ak)
	ks := keep.openMap(wire.MapRequest{})
	ks.waitFor(t, "full map with ci", func(m *wire.MapMessage) bool {
		return m.Full && peerIn(m.Peers, e.self.ID, func(wire.Node) bool { return true })
	})
	es := e.openMap(wire.MapRequest{})
	es.waitFor(t, "ci's full map", func(m *wire.MapMessage) bool { return m.Full })
	time.Sleep(1500 * time.Millisecond) // three timeouts online: still there
	if !nodeExists(t, tc, "ci") {
		t.Fatal("ephemeral node deleted while connected")
	}
	es.cancel()
	<-es.done
	start := time.Now()
	ks.waitFor(t, "ci deleted after disconnecting", removed(e.self.ID))
	t.Logf("ephemeral node deleted %v after it disconnected (timeout %v)", time.Since(start), srv.cfg.EphemeralTimeout)
	if time.Since(start) < 400*time.Millisecond {
		t.Errorf("deleted %v after disconnecting, before the %v timeout", time.Since(start), srv.cfg.EphemeralTimeout)
	}
	if nodeExists(t, tc, "ci") || !nodeExists(t, tc, "keep") {
		t.Error("want ci deleted and keep kept")
	}
	// coord's own deletion is in the audit log.
	if e := lastEvent(t, srv, "node.delete"); e.ActorKind != "system" || e.Actor != "ephemeral" || e.Target != "ci" || e.Result != ResultOK {
		t.Errorf("ephemeral deletion audit event: %+v", e)
	}
}

func nodeExists(t *testing.T, tc *testCoord, name string) bool {
	t.Helper()
	var nodes []adminapi.Node
	if err := tc.admin.Do(context.Background(), "GET", adminapi.PathNodes, nil, &nodes); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.Name == name {
			return true
		}
	}
	return false
}

// Tagged pre-auth keys: with a policy set, the key's user must own every
// tag (tagOwners); the refusal names the tag, its owners and the fix.
func TestKeyTagOwners(t *testing.T) {
	tc := startCoord(t, t.TempDir(), "", &syncBuf{})
	ctx := context.Background()
	for _, u := range []adminapi.CreateUserRequest{{Name: "ops", Email: "ops@example.net"}, {Name: "bob", Email: "bob@example.net"}} {
		if err := tc.admin.Do(ctx, "POST", adminapi.PathUsers, u, nil); err != nil {
			t.Fatal(err)
		}
	}
	// No policy yet: the default policy has no tagOwners to check.
	if err := tc.admin.Do(ctx, "POST", adminapi.PathKeys, adminapi.CreateKeyRequest{User: "bob", Tags: []string{"tag:router"}, Expiry: "1h"}, nil); err != nil {
		t.Fatalf("tagged key without a policy: %v", err)
	}
	pol := `{"groups": {"group:ops": ["ops@example.net"]}, "tagOwners": {"tag:router": ["group:ops"], "tag:any": ["autogroup:member"]}, ` + allowAll[1:]
	if err := tc.admin.Do(ctx, "POST", adminapi.PathPolicy, adminapi.PolicyRequest{Body: pol}, nil); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		user string
		tags []string
		want string // "" for success
	}{
		{"ops", []string{"tag:router"}, ""},
		{"bob", []string{"tag:any"}, ""},
		{"bob", []string{"tag:router"}, `user bob (bob@example.net) does not own tag "tag:router": the policy's tagOwners for it are group:ops`},
		{"ops", []string{"tag:router", "tag:db"}, `tag "tag:db" is not in the policy's tagOwners`},
	} {
		err := tc.admin.Do(ctx, "POST", adminapi.PathKeys, adminapi.CreateKeyRequest{User: tt.user, Tags: tt.tags, Expiry: "1h"}, nil)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s %v: %v", tt.user, tt.tags, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s %v: %v, want %q", tt.user, tt.tags, err, tt.want)
		}
	}
}

// The periodic IdP check: a user whose provider refuses the refresh is
// disabled, and their node leaves every netmap at once; an IdP outage
// keeps the user; a successful refresh stores the rotated secret.
func TestIdPRefreshDisablesRefusedUser(t *testing.T) {
	var mode atomic.Value
	mode.Store("ok")
	idp := fakeIdP{refresh: func(id sdk.Identity) (sdk.Identity, error) {
		switch mode.Load() {
		case "down":
			return sdk.Identity{}, errors.New("connection refused")
		case "refuse":
			return sdk.Identity{}, fmt.Errorf("%w: the identity provider refused the refresh token (invalid_grant)", sdk.ErrRefused)
		}
		id.Secret = []byte("rotated-secret")
		return id, nil
	}}
	logs := &syncBuf{}
	tc := startLoginCoordWith(t, logs, idp)
	ctx := context.Background()
	if err := tc.admin.Do(ctx, "POST", adminapi.PathPolicy, adminapi.PolicyRequest{Body: allowAll}, nil); err != nil {
		t.Fatal(err)
	}
	// ann logs in through the (fake) IdP.
	mk := key.NewMachine()
	br := browser()
	_, state := startLogin(t, tc, mk, br)
	nonce := pendingNonce(t, tc, state)
	if resp, body := get(t, br, tc.url+"/callback?state="+url.QueryEscape(state)+"&code=ok-"+nonce); resp.StatusCode != 200 {
		t.Fatalf("callback: %d %s", resp.StatusCode, body)
	}
	var annID wire.NodeID
	var nodes []adminapi.Node
	tc.admin.Do(ctx, "GET", adminapi.PathNodes, nil, &nodes)
	for _, n := range nodes {
		if n.User == "ann" {
			annID = wire.NodeID(n.ID)
		}
	}
	if annID == 0 {
		t.Fatalf("no node of ann: %+v", nodes)
	}
	other := tc.join("other", tc.newKey(false))
	os := other.openMap(wire.MapRequest{})
	os.waitFor(t, "full map with ann's node", func(m *wire.MapMessage) bool {
		return m.Full && peerIn(m.Peers, annID, func(wire.Node) bool { return true })
	})

	if r := tc.srv.RefreshIdentities(ctx); r.Checked != 1 || r.Disabled != 0 {
		t.Fatalf("refresh ok: %+v", r)
	}
	ids, _ := tc.srv.st.Identities(ctx)
	if len(ids) != 1 || string(ids[0].Secret) != "rotated-secret" {
		t.Fatalf("rotated secret not stored: %+v", ids)
	}
	mode.Store("down")
	if r := tc.srv.RefreshIdentities(ctx); r.Failed != 1 || r.Disabled != 0 {
		t.Fatalf("refresh with the IdP down: %+v", r)
	}
	mode.Store("refuse")
	start := time.Now()
	if r := tc.srv.RefreshIdentities(ctx); r.Disabled != 1 {
		t.Fatalf("refresh refused: %+v", r)
	}
	os.waitFor(t, "ann's node removed", removed(annID))
	t.Logf("refused refresh -> node gone from the peer's netmap in %v", time.Since(start))
	users, _ := tc.srv.st.Users(ctx)
	for _, u := range users {
		if u.Name == "ann" && !u.Disabled {
			t.Error("ann not disabled")
		}
	}
	if e := lastEvent(t, tc.srv, "user.disable"); e.ActorKind != "system" || e.Actor != "idp-refresh" || e.Target != "ann" {
		t.Errorf("refresh disable audit event: %+v", e)
	}
	// Disabled users are not asked again.
	if r := tc.srv.RefreshIdentities(ctx); r.Checked+r.Disabled+r.Failed != 0 {
		t.Errorf("disabled user refreshed again: %+v", r)
	}
	if strings.Contains(logs.String(), "rotated-secret") || strings.Contains(logs.String(), "refresh-secret-xyz") {
		t.Error("S11: an identity's secret reached coord's log")
	}
}

// A rotated node key (lanmesh up --force-reauth: a new node key for the
// same machine) replaces the old one everywhere at once: peers get the
// new key, a netmap request with the old key is refused
// (node_key_mismatch) and relays are told the old key is not allowed.
func TestKeyRotationRefusesOldKey(t *testing.T) {
	tc := startCoord(t, t.TempDir(), "", &syncBuf{})
	ak := tc.newKey(true)
	a := tc.join("a", ak)
	b := tc.join("b", ak)
	as := a.openMap(wire.MapRequest{})
	as.waitFor(t, "a's full map", func(m *wire.MapMessage) bool { return m.Full })
	ctx := context.Background()
	old := b.nk
	nk := key.NewNode().Public()
	rr, err := b.c.Register(ctx, wire.RegisterRequest{AuthKey: ak.WithoutFingerprint(), NodeKey: nk, Hostname: "b"})
	if err != nil || rr.Node.ID != b.self.ID || rr.Node.Addresses[0] != b.self.Addresses[0] {
		t.Fatalf("rotation: %+v %v", rr.Node, err)
	}
	as.waitFor(t, "a gets b's new key", func(m *wire.MapMessage) bool {
		return peerIn(m.PeersChanged, b.self.ID, func(p wire.Node) bool { return p.Key == nk })
	})
	err = b.c.Map(ctx, wire.MapRequest{NodeKey: old}, func(*wire.MapMessage) error { return nil })
	var se *controlclient.StatusError
	if !errors.As(err, &se) || se.Reason != wire.ReasonNodeKeyMismatch {
		t.Fatalf("map with the old key: %v, want reason %s", err, wire.ReasonNodeKeyMismatch)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 5 * time.Second}
	allowed := func(k key.NodePublic) bool {
		body, _ := json.Marshal(derpVerifyRequest{NodeKey: k})
		req, _ := http.NewRequest("POST", tc.url+PathDerpVerify, strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+testDerpToken)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var vr derpVerifyResponse
		json.NewDecoder(resp.Body).Decode(&vr)
		return vr.Allowed
	}
	if allowed(old) || !allowed(nk) {
		t.Errorf("relay verify: old key allowed %v, new key allowed %v; want false, true", allowed(old), allowed(nk))
	}
}
