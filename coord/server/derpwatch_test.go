package server

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/derp"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// standaloneRelay is a derp.Server as lanmesh-derp runs it: fed by a
// CoordWatcher on coord's watch stream, with no fallback (so it can only
// admit what coord pushed).
type standaloneRelay struct {
	srv *derp.Server
	url string
	w   *derp.CoordWatcher
}

func startStandaloneRelay(t *testing.T, tc *testCoord, token string) *standaloneRelay {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	w := &derp.CoordWatcher{URL: tc.url + derp.WatchPath, Token: token, Client: hc}
	srv, err := derp.NewServer(derp.Options{Verifier: w})
	if err != nil {
		t.Fatal(err)
	}
	w.Revoke, w.Recheck = srv.Revoke, srv.Recheck
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { cancel(); <-done; srv.Close(); hs.Close() })
	return &standaloneRelay{srv: srv, url: hs.URL + derp.Path, w: w}
}

func (r *standaloneRelay) connect(priv key.NodePrivate) (*derp.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return derp.Connect(ctx, r.url, priv, "")
}

// waitGone reads c until the relay closes it and returns how long that
// took from start, or fails after limit.
func waitGone(t *testing.T, c *derp.Client, start time.Time, limit time.Duration) time.Duration {
	t.Helper()
	gone := make(chan struct{})
	go func() {
		for {
			if _, err := c.RecvMessage(); err != nil {
				close(gone)
				return
			}
		}
	}()
	select {
	case <-gone:
		return time.Since(start)
	case <-time.After(limit):
		c.Close()
		t.Fatalf("relay connection still open %v after the revocation", limit)
		return 0
	}
}

// S15, S20: a standalone relay learns from coord's watch stream who may
// relay, and cuts a node off within a second of nodes delete, nodes
// expire, users disable or a node key rotation; users enable lets it back. S9: a relay with
// the wrong token gets nothing and so admits nobody.
func TestDerpWatchRevokes(t *testing.T) {
	// Short per-request deadlines: the watch stream must outlive them.
	logs := &syncBuf{}
	tc, _ := startCoordLimits(t, t.TempDir(), "", logs, Limits{BodyTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond}, nil)
	if err := tc.admin.Do(context.Background(), "POST", adminapi.PathUsers, adminapi.CreateUserRequest{Name: "bob"}, nil); err != nil {
		t.Fatal(err)
	}
	ak := tc.newKey(true)
	var bobKey adminapi.Key
	if err := tc.admin.Do(context.Background(), "POST", adminapi.PathKeys, adminapi.CreateKeyRequest{Reusable: true, Expiry: "1h", User: "bob"}, &bobKey); err != nil {
		t.Fatal(err)
	}
	aNode, aPriv := tc.joinKeyed("a", ak)
	_, bPriv := tc.joinKeyed("b", ak)
	_, cPriv := tc.joinKeyed("c", ak)

	bad := startStandaloneRelay(t, tc, "wrong-token-0123456789")
	r := startStandaloneRelay(t, tc, testDerpToken)
	deadline := time.Now().Add(5 * time.Second)
	for !r.w.Fresh() {
		if time.Now().After(deadline) {
			t.Fatal("relay never got the key set from coord")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if c, err := bad.connect(aPriv); err == nil {
		c.Close()
		t.Fatal("relay with a wrong token admitted a node (S9)")
	}
	if c, err := r.connect(key.NewNode()); err == nil {
		c.Close()
		t.Fatal("unknown key admitted (S9)")
	}
	ca, err := r.connect(aPriv)
	if err != nil {
		t.Fatalf("live node refused: %v", err)
	}
	defer ca.Close()
	cb, err := r.connect(bPriv)
	if err != nil {
		t.Fatalf("live node refused: %v", err)
	}
	if err := ca.Send(bPriv.Public(), []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if from, pkt, err := recv(cb, 5*time.Second); err != nil || from != aPriv.Public() || string(pkt) != "hi" {
		t.Fatalf("b got %q from %s: %v", pkt, from.ShortString(), err)
	}

	time.Sleep(500 * time.Millisecond) // past the request deadlines

	// nodes delete.
	start := time.Now()
	if err := tc.admin.Do(context.Background(), "DELETE", adminapi.NodePath("b"), nil, nil); err != nil {
		t.Fatal(err)
	}
	d := waitGone(t, cb, start, time.Second)
	t.Logf("S15: standalone relay dropped a deleted node %v after the admin call", d)
	if c, err := r.connect(bPriv); err == nil {
		c.Close()
		t.Fatal("deleted node reconnected to the standalone relay")
	}

	// nodes expire.
	cc, err := r.connect(cPriv)
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := tc.admin.Do(context.Background(), "POST", adminapi.NodeExpirePath("c"), nil, nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("standalone relay dropped an expired node after %v", waitGone(t, cc, start, time.Second))

	// users disable / enable.
	bak, err := wire.ParseAuthKey(bobKey.Key)
	if err != nil {
		t.Fatal(err)
	}
	_, dPriv := tc.joinKeyed("d", bak)
	time.Sleep(50 * time.Millisecond) // the registration's delta
	cd, err := r.connect(dPriv)
	if err != nil {
		t.Fatalf("bob's node refused: %v", err)
	}
	start = time.Now()
	if err := tc.admin.Do(context.Background(), "POST", adminapi.UserActionPath("bob", "disable"), nil, nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("standalone relay dropped a disabled user's node after %v", waitGone(t, cd, start, time.Second))
	if c, err := r.connect(dPriv); err == nil {
		c.Close()
		t.Fatal("disabled user's node reconnected")
	}
	if err := tc.admin.Do(context.Background(), "POST", adminapi.UserActionPath("bob", "enable"), nil, nil); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(time.Second)
	for {
		c, err := r.connect(dPriv)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("enabled user's node still refused: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := strings.Count(logs.String(), "relay watching the key set"); n != 1 {
		t.Fatalf("the relay's watch stream was opened %d times, want once (cut by a request deadline?)", n)
	}
	// a was never touched.
	if err := ca.Send(dPriv.Public(), []byte("still here")); err != nil {
		t.Fatalf("a lost the relay: %v", err)
	}

	// Key rotation: a re-registers with a new node key; the old one is
	// cut off and the new one admitted (S20).
	newPriv := key.NewNode()
	start = time.Now()
	if _, err := aNode.c.Register(context.Background(), wire.RegisterRequest{NodeKey: newPriv.Public(), Hostname: "a"}); err != nil {
		t.Fatal(err)
	}
	t.Logf("standalone relay dropped a rotated-away key after %v", waitGone(t, ca, start, time.Second))
	if c, err := r.connect(aPriv); err == nil {
		c.Close()
		t.Fatal("old node key reconnected after rotation")
	}
	c, err := r.connect(newPriv)
	if err != nil {
		t.Fatalf("rotated node key refused: %v", err)
	}
	c.Close()
}
