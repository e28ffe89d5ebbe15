package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
)

// TestRevokeDisableRenameExpire covers the store side of taking access
// away: a revoked key fails (S7: in the consuming transaction) but only
// for the right secret, a disabled user's keys and nodes cannot
// register, a rename moves nodes and keys, and expiring a node never
// extends its key (S12, S20).
func TestRevokeDisableRenameExpire(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	if _, err := s.CreateUser(ctx, User{Name: "bob", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	h := sha256Key("bobkey")
	if err := s.CreatePreAuthKey(ctx, PreAuthKey{ID: "bobkey", Hash: h, Reusable: true, User: "bob", Expiry: time.Now().Add(time.Hour), Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	mk := key.NewMachine().Public()
	reg := func(m key.MachinePublic, id string, hash []byte) (Node, error) {
		return s.Register(ctx, Registration{MachineKey: m, NodeKey: key.NewNode().Public(), Hostname: "bob1",
			AuthKeyID: id, AuthKeyHash: hash, KeyLifetime: time.Hour, Now: time.Now()})
	}
	n, err := reg(mk, "bobkey", h)
	if err != nil {
		t.Fatal(err)
	}

	// Revoke: once, idempotent, unknown IDs are not found.
	k, err := s.RevokePreAuthKey(ctx, "bobkey", time.Unix(100, 0))
	if err != nil || k.Revoked != time.Unix(100, 0) || k.User != "bob" {
		t.Fatalf("revoke: %+v %v", k, err)
	}
	if k, err = s.RevokePreAuthKey(ctx, "bobkey", time.Unix(200, 0)); err != nil || k.Revoked != time.Unix(100, 0) {
		t.Fatalf("second revoke moved the time: %+v %v", k, err)
	}
	if _, err := s.RevokePreAuthKey(ctx, "nope", time.Now()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}
	if _, err := reg(key.NewMachine().Public(), "bobkey", h); !errors.Is(err, ErrKeyRevoked) {
		t.Fatalf("register with revoked key: %v", err)
	}
	// S8: a wrong secret learns nothing, not even that the key is revoked.
	if _, err := reg(key.NewMachine().Public(), "bobkey", sha256Key("wrong")); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("wrong secret for a revoked key: %v", err)
	}
	// The node that joined with it keeps working.
	if _, err := reg(mk, "", nil); err != nil {
		t.Fatalf("known node after its key was revoked: %v", err)
	}
	keys, _ := s.PreAuthKeys(ctx)
	if len(keys) != 1 || keys[0].Revoked.IsZero() {
		t.Fatalf("listed keys: %+v", keys)
	}

	// Disable: no key of bob's, no re-registration, no new key.
	h2 := sha256Key("bobkey2")
	if err := s.CreatePreAuthKey(ctx, PreAuthKey{ID: "bobkey2", Hash: h2, Reusable: true, User: "bob", Expiry: time.Now().Add(time.Hour), Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	u, err := s.SetUserDisabled(ctx, "bob", true)
	if err != nil || !u.Disabled {
		t.Fatalf("disable: %+v %v", u, err)
	}
	if _, err := reg(key.NewMachine().Public(), "bobkey2", h2); !errors.Is(err, ErrUserDisabled) {
		t.Fatalf("register with a disabled user's key: %v", err)
	}
	if _, err := reg(mk, "", nil); !errors.Is(err, ErrUserDisabled) {
		t.Fatalf("disabled user's node re-registers: %v", err)
	}
	if err := s.CreatePreAuthKey(ctx, PreAuthKey{ID: "k3", Hash: h2, User: "bob", Expiry: time.Now().Add(time.Hour)}); !errors.Is(err, ErrUserDisabled) {
		t.Fatalf("key for a disabled user: %v", err)
	}
	if _, err := s.SetUserDisabled(ctx, "nobody", true); !errors.Is(err, ErrNotFound) {
		t.Fatalf("disable unknown: %v", err)
	}
	if u, err = s.SetUserDisabled(ctx, "bob", false); err != nil || u.Disabled {
		t.Fatalf("enable: %+v %v", u, err)
	}
	if _, err := reg(mk, "", nil); err != nil {
		t.Fatalf("enabled user's node: %v", err)
	}

	// Rename moves nodes and keys.
	if _, err := s.RenameUser(ctx, "bob", "admin"); !errors.Is(err, ErrExists) {
		t.Fatalf("rename onto admin: %v", err)
	}
	if _, err := s.RenameUser(ctx, "bob", "Bad Name"); err == nil {
		t.Fatal("bad name accepted")
	}
	if u, err = s.RenameUser(ctx, "bob", "robert"); err != nil || u.Name != "robert" {
		t.Fatalf("rename: %+v %v", u, err)
	}
	nodes, _ := s.Nodes(ctx)
	keys, _ = s.PreAuthKeys(ctx)
	if len(nodes) != 1 || nodes[0].User != "robert" || keys[0].User != "robert" || keys[1].User != "robert" {
		t.Fatalf("after rename: nodes %+v keys %+v", nodes, keys)
	}

	// Expire: now, and never later than an earlier expiry.
	now := time.Now()
	e, err := s.ExpireNode(ctx, n.ID, now)
	if err != nil || !e.Expired(now) {
		t.Fatalf("expire: %+v %v", e, err)
	}
	if e, err = s.ExpireNode(ctx, n.ID, now.Add(time.Hour)); err != nil || !e.KeyExpiry.Equal(time.Unix(0, now.UnixNano())) {
		t.Fatalf("second expire moved the expiry: %v %v", e.KeyExpiry, err)
	}
	if _, err := s.ExpireNode(ctx, 999, now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expire unknown: %v", err)
	}
	var ne *NodeExpiredError
	if _, err := reg(mk, "", nil); !errors.As(err, &ne) {
		t.Fatalf("expired node re-registers without a key: %v", err)
	}

	if err := s.DeletePreAuthKey(ctx, "bobkey"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePreAuthKey(ctx, "bobkey"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
}

func sha256Key(secret string) []byte {
	h := sha256.Sum256([]byte("secret-" + secret))
	return h[:]
}

// TestUserAdminRole: the admin role is set at creation or later, kept
// across a rename and listed; an unknown user is ErrNotFound.
func TestUserAdminRole(t *testing.T) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CreateUser(ctx, User{Name: "alice", Email: "alice@example.com", Admin: true, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUser(ctx, User{Name: "bob", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	roles := func() map[string]bool {
		users, err := s.Users(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]bool{}
		for _, u := range users {
			m[u.Name] = u.Admin
		}
		return m
	}
	if r := roles(); !r["alice"] || r["bob"] || r["admin"] {
		t.Fatalf("roles after create: %v", r)
	}
	if u, err := s.SetUserAdmin(ctx, "bob", true); err != nil || !u.Admin {
		t.Fatalf("make bob admin: %+v %v", u, err)
	}
	if u, err := s.SetUserAdmin(ctx, "alice", false); err != nil || u.Admin {
		t.Fatalf("take alice's role: %+v %v", u, err)
	}
	if u, err := s.RenameUser(ctx, "bob", "robert"); err != nil || !u.Admin {
		t.Fatalf("rename keeps the role: %+v %v", u, err)
	}
	if _, err := s.SetUserAdmin(ctx, "nobody", true); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
	// A login through an IdP that links to an admin-made user keeps the role.
	if _, err := s.CreateUser(ctx, User{Name: "carol", Email: "carol@example.com", Admin: true, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	u, err := s.LoginIdentity(ctx, Identity{Provider: "oidc", Subject: "c1", Email: "carol@example.com", Now: time.Now()})
	if err != nil || u.Name != "carol" || !u.Admin {
		t.Fatalf("login as carol: %+v %v", u, err)
	}
}
