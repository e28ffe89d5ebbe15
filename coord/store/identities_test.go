package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestLoginIdentity(t *testing.T) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "coord.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Unix(1_800_000_000, 0)
	// An admin-made user with the same email is linked at first login.
	if _, err := s.CreateUser(ctx, User{Name: "annie", Email: "ann@example.net", Created: now}); err != nil {
		t.Fatal(err)
	}
	u, err := s.LoginIdentity(ctx, Identity{Provider: "oidc", Subject: "s-ann", Email: "ann@example.net", Groups: []string{"eng"}, Now: now})
	if err != nil || u.Name != "annie" || len(u.Groups) != 1 {
		t.Fatalf("first login: %+v %v", u, err)
	}
	// A second person with the same local part gets a fresh name.
	u2, err := s.LoginIdentity(ctx, Identity{Provider: "oidc", Subject: "s-ann2", Email: "annie@other.net", Now: now})
	if err != nil || u2.Name != "annie-2" {
		t.Fatalf("second person: %+v %v", u2, err)
	}
	// The same subject again is the same user, with the new groups.
	u, err = s.LoginIdentity(ctx, Identity{Provider: "oidc", Subject: "s-ann", Email: "ann@example.net", Groups: []string{"ops"}, Now: now})
	if err != nil || u.Name != "annie" || u.Groups[0] != "ops" {
		t.Fatalf("again: %+v %v", u, err)
	}
	users, _ := s.Users(ctx)
	for _, x := range users {
		if x.Name == "annie" && (len(x.Groups) != 1 || x.Groups[0] != "ops") {
			t.Errorf("stored groups %v", x.Groups)
		}
	}
	// A disabled user cannot log in.
	s.SetUserDisabled(ctx, "annie", true)
	if _, err := s.LoginIdentity(ctx, Identity{Provider: "oidc", Subject: "s-ann", Email: "ann@example.net", Now: now}); !errors.Is(err, ErrUserDisabled) {
		t.Errorf("disabled user logged in: %v", err)
	}
}
