package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
)

// SetNodeExpiry sets, clears and (in the past) ends a node key's life;
// re-registering with an auth key keeps the node, its addresses and name.
func TestSetNodeExpiry(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	h := newKey(t, s, "k", true, time.Hour)
	mk := key.NewMachine().Public()
	now := time.Now()
	n, err := s.Register(ctx, Registration{MachineKey: mk, NodeKey: key.NewNode().Public(), Hostname: "laptop",
		AuthKeyID: "k", AuthKeyHash: h, KeyLifetime: time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	at := now.Add(10 * time.Second)
	if n, err = s.SetNodeExpiry(ctx, n.ID, at); err != nil || !n.KeyExpiry.Equal(at) {
		t.Fatalf("set expiry: %v %v", n.KeyExpiry, err)
	}
	if n.Expired(now) || !n.Expired(at) {
		t.Errorf("expired before %v or not at it", at)
	}
	if n, err = s.SetNodeExpiry(ctx, n.ID, time.Time{}); err != nil || !n.KeyExpiry.IsZero() || n.Expired(now.Add(1000*time.Hour)) {
		t.Fatalf("expiry off: %v %v", n.KeyExpiry, err)
	}
	if n, err = s.SetNodeExpiry(ctx, n.ID, now.Add(-time.Second)); err != nil || !n.Expired(now) {
		t.Fatalf("expiry in the past: %v %v", n.KeyExpiry, err)
	}
	// Without an auth key an expired node cannot come back...
	_, err = s.Register(ctx, Registration{MachineKey: mk, NodeKey: n.NodeKey, Now: now})
	var ne *NodeExpiredError
	if !errors.As(err, &ne) {
		t.Fatalf("expired node re-registered without a key: %v", err)
	}
	// ...with one (or a login) it does, with the same addresses and name
	// and a fresh key expiry.
	again, err := s.Register(ctx, Registration{MachineKey: mk, NodeKey: key.NewNode().Public(), Hostname: "laptop",
		AuthKeyID: "k", AuthKeyHash: h, KeyLifetime: time.Hour, Now: now})
	if err != nil || again.ID != n.ID || again.IPv4 != n.IPv4 || again.IPv6 != n.IPv6 || again.Name != n.Name || again.Expired(now) {
		t.Fatalf("re-auth: %+v %v, was %+v", again, err, n)
	}
	if _, err := s.SetNodeExpiry(ctx, 999, at); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown node: %v", err)
	}
}

// An ephemeral key makes ephemeral nodes; a later registration with a
// normal key (or a login) makes the node permanent again.
func TestEphemeralKey(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	sum := sha256.Sum256([]byte("secret-e"))
	now := time.Now()
	if err := s.CreatePreAuthKey(ctx, PreAuthKey{ID: "e", Hash: sum[:], Reusable: true, Ephemeral: true, Expiry: now.Add(time.Hour), Created: now}); err != nil {
		t.Fatal(err)
	}
	keys, err := s.PreAuthKeys(ctx)
	if err != nil || len(keys) != 1 || !keys[0].Ephemeral {
		t.Fatalf("keys %+v %v", keys, err)
	}
	mk := key.NewMachine().Public()
	n, err := s.Register(ctx, Registration{MachineKey: mk, NodeKey: key.NewNode().Public(), Hostname: "ci", AuthKeyID: "e", AuthKeyHash: sum[:], Now: now})
	if err != nil || !n.Ephemeral {
		t.Fatalf("ephemeral node: %+v %v", n, err)
	}
	h := newKey(t, s, "k", false, time.Hour)
	n, err = s.Register(ctx, Registration{MachineKey: mk, NodeKey: key.NewNode().Public(), Hostname: "ci", AuthKeyID: "k", AuthKeyHash: h, Now: now})
	if err != nil || n.Ephemeral {
		t.Fatalf("after a normal key: %+v %v", n, err)
	}
}

func TestIdentitiesRefresh(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	now := time.Unix(1_800_000_000, 0)
	u, err := s.LoginIdentity(ctx, Identity{Provider: "oidc", Subject: "s1", Email: "ann@example.net", Groups: []string{"eng"}, Secret: []byte("rt1"), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := s.Identities(ctx)
	if err != nil || len(ids) != 1 || ids[0].User != u.Name || string(ids[0].Secret) != "rt1" || ids[0].Groups[0] != "eng" || !ids[0].Updated.Equal(now) {
		t.Fatalf("identities %+v %v", ids, err)
	}
	later := now.Add(time.Hour)
	if err := s.RefreshIdentity(ctx, Identity{Provider: "oidc", Subject: "s1", Secret: []byte("rt2"), Groups: []string{"ops"}, Now: later}); err != nil {
		t.Fatal(err)
	}
	ids, _ = s.Identities(ctx)
	if string(ids[0].Secret) != "rt2" || ids[0].Groups[0] != "ops" || !ids[0].Updated.Equal(later) {
		t.Fatalf("after refresh %+v", ids[0])
	}
	if err := s.RefreshIdentity(ctx, Identity{Provider: "oidc", Subject: "nobody", Now: later}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown identity: %v", err)
	}
}
