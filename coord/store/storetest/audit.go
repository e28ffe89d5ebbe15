package storetest

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/coord/store"
)

// auditLog: events come back newest first with their fields, filtered by
// time and actor, paged by ID; concurrent appends all land with distinct
// IDs; pruning by age and by count keeps the newest; an oversized field
// is cut, not refused.
func auditLog(t *testing.T, s store.Store) {
	ctx := context.Background()
	t0 := time.Unix(1_800_000_000, 0)
	for i := range 10 {
		kind, actor := "socket", "uid 0"
		if i%2 == 1 {
			kind, actor = "apikey", "k1"
		}
		e, err := s.AppendAudit(ctx, store.AuditEvent{Time: t0.Add(time.Duration(i) * time.Minute), ActorKind: kind, Actor: actor,
			Source: "198.18.0.1:5000", Action: "user.create", Target: fmt.Sprintf("u%d", i), Result: "ok", Detail: "d"})
		if err != nil || e.ID == 0 {
			t.Fatalf("append %d: %+v %v", i, e, err)
		}
	}
	all, err := s.AuditEvents(ctx, store.AuditQuery{})
	if err != nil || len(all) != 10 {
		t.Fatalf("all events: %d, %v; want 10", len(all), err)
	}
	if all[0].Target != "u9" || all[9].Target != "u0" || !all[0].Time.Equal(t0.Add(9*time.Minute)) || all[0].Source != "198.18.0.1:5000" || all[0].ActorKind != "apikey" {
		t.Fatalf("want newest first with fields kept, got first %+v last %+v", all[0], all[9])
	}
	if got, _ := s.AuditEvents(ctx, store.AuditQuery{Since: t0.Add(7 * time.Minute)}); len(got) != 3 {
		t.Errorf("since +7m: %d events, want 3", len(got))
	}
	if got, _ := s.AuditEvents(ctx, store.AuditQuery{Actor: "k1"}); len(got) != 5 {
		t.Errorf("actor k1: %d events, want 5", len(got))
	}
	if got, _ := s.AuditEvents(ctx, store.AuditQuery{Actor: "socket", Limit: 2}); len(got) != 2 || got[0].ActorKind != "socket" {
		t.Errorf("actor kind socket, limit 2: %+v", got)
	}
	if got, _ := s.AuditEvents(ctx, store.AuditQuery{BeforeID: all[4].ID, Limit: 3}); len(got) != 3 || got[0].ID != all[5].ID {
		t.Errorf("page before %d: %+v", all[4].ID, got)
	}

	errs := make(chan error, concurrency)
	for range concurrency {
		go func() {
			_, err := s.AppendAudit(ctx, store.AuditEvent{Time: t0.Add(time.Hour), ActorKind: "system", Action: "race", Result: "ok"})
			errs <- err
		}()
	}
	for range concurrency {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent append: %v", err)
		}
	}
	if got, _ := s.AuditEvents(ctx, store.AuditQuery{Actor: "system"}); len(got) != concurrency {
		t.Fatalf("%d of %d concurrent appends stored", len(got), concurrency)
	}

	// By age: the 10 first events are older than +30m.
	n, err := s.PruneAudit(ctx, t0.Add(30*time.Minute), 0)
	if err != nil || n != 10 {
		t.Fatalf("prune by age: %d, %v; want 10", n, err)
	}
	// By count: keep the newest 5.
	if n, err = s.PruneAudit(ctx, time.Time{}, 5); err != nil || n != concurrency-5 {
		t.Fatalf("prune to 5: %d, %v; want %d", n, err, concurrency-5)
	}
	if got, _ := s.AuditEvents(ctx, store.AuditQuery{}); len(got) != 5 {
		t.Fatalf("after prune: %d events, want 5", len(got))
	}

	long := strings.Repeat("é", 2000)
	e, err := s.AppendAudit(ctx, store.AuditEvent{ActorKind: "system", Action: "long", Target: long, Result: "ok"})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := s.AuditEvents(ctx, store.AuditQuery{Limit: 1})
	if len(got) != 1 || got[0].ID != e.ID || len(got[0].Target) > 1024 || !strings.HasPrefix(long, strings.TrimSuffix(got[0].Target, "…")) {
		t.Fatalf("oversized target stored as %d bytes", len(got[0].Target))
	}
}

// apiKeys: a key is read back with its hash by ID; revoked keys say so
// at once (no cache) and revoking keeps the first time; expiry is
// reported; lists carry no hashes; unknown IDs are ErrNotFound; bad
// scopes are refused.
func apiKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)
	k := store.APIKey{ID: "abc123", Hash: []byte("0123456789abcdef0123456789abcdef"), Scope: store.ScopeAdmin, Description: "ci",
		CreatedBy: "socket:uid 0", Expiry: now.Add(time.Hour), Created: now}
	if err := s.CreateAPIKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAPIKey(ctx, k); err == nil {
		t.Fatal("a second key with the same ID was stored")
	}
	if err := s.CreateAPIKey(ctx, store.APIKey{ID: "bad", Hash: k.Hash, Scope: "root", Expiry: now, Created: now}); err == nil {
		t.Fatal("scope root accepted")
	}
	got, err := s.APIKey(ctx, k.ID)
	if err != nil || subtle.ConstantTimeCompare(got.Hash, k.Hash) != 1 || got.Scope != store.ScopeAdmin || !got.Expiry.Equal(k.Expiry) || got.Description != "ci" {
		t.Fatalf("read back: %+v, %v", got, err)
	}
	if err := got.Usable(now); err != nil {
		t.Fatalf("fresh key not usable: %v", err)
	}
	if err := got.Usable(now.Add(time.Hour)); !errors.Is(err, store.ErrAPIKeyExpired) {
		t.Fatalf("at expiry: %v, want ErrAPIKeyExpired", err)
	}
	if _, err := s.APIKey(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown key: %v", err)
	}
	if err := s.TouchAPIKey(ctx, k.ID, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	list, err := s.APIKeys(ctx)
	if err != nil || len(list) != 1 || list[0].Hash != nil || !list[0].LastUsed.Equal(now.Add(time.Minute)) {
		t.Fatalf("list: %+v, %v", list, err)
	}
	r, err := s.RevokeAPIKey(ctx, k.ID, now.Add(2*time.Minute))
	if err != nil || !r.Revoked.Equal(now.Add(2*time.Minute)) {
		t.Fatalf("revoke: %+v, %v", r, err)
	}
	if r, _ = s.RevokeAPIKey(ctx, k.ID, now.Add(3*time.Minute)); !r.Revoked.Equal(now.Add(2 * time.Minute)) {
		t.Fatalf("second revoke moved the time to %v", r.Revoked)
	}
	got, _ = s.APIKey(ctx, k.ID)
	if err := got.Usable(now); !errors.Is(err, store.ErrAPIKeyRevoked) {
		t.Fatalf("revoked key: %v, want ErrAPIKeyRevoked", err)
	}
	if _, err := s.RevokeAPIKey(ctx, "nope", now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}
}
