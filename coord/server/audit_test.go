package server

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/coord/store"
)

// lastEvent returns the newest audit event with action.
func lastEvent(t *testing.T, s *Server, action string) store.AuditEvent {
	t.Helper()
	evs, err := s.AuditEvents(context.Background(), store.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Action == action {
			return e
		}
	}
	t.Fatalf("no audit event %q in %+v", action, evs)
	return store.AuditEvent{}
}

// Every state-changing admin action on the socket appends one audit
// event naming the socket's peer, the action, its target and result;
// reads append none.
func TestAuditAdminActions(t *testing.T) {
	logs := &syncBuf{}
	tc, srv := startCoordWith(t, t.TempDir(), "", logs, nil)
	ctx := context.Background()
	ak := tc.newKey(true)
	tc.join("web", ak)
	uid := fmt.Sprintf("uid %d", os.Getuid())
	var key adminapi.Key
	type step struct {
		action, target, result string
		run                    func() error
	}
	steps := []step{
		{"user.create", "bob", ResultOK, func() error {
			return tc.admin.Do(ctx, "POST", adminapi.PathUsers, adminapi.CreateUserRequest{Name: "bob"}, nil)
		}},
		{"user.create", "Bad Name", ResultRefused, func() error {
			return tc.admin.Do(ctx, "POST", adminapi.PathUsers, adminapi.CreateUserRequest{Name: "Bad Name"}, nil)
		}},
		{"preauthkey.create", "", ResultOK, func() error {
			return tc.admin.Do(ctx, "POST", adminapi.PathKeys, adminapi.CreateKeyRequest{User: "bob", Expiry: "1h"}, &key)
		}},
		{"preauthkey.revoke", "$key", ResultOK, func() error { return tc.admin.Do(ctx, "POST", adminapi.KeyPath(key.ID)+"/revoke", nil, nil) }},
		{"preauthkey.delete", "$key", ResultOK, func() error { return tc.admin.Do(ctx, "DELETE", adminapi.KeyPath(key.ID), nil, nil) }},
		{"user.disable", "bob", ResultOK, func() error { return tc.admin.Do(ctx, "POST", adminapi.UserActionPath("bob", "disable"), nil, nil) }},
		{"user.enable", "bob", ResultOK, func() error { return tc.admin.Do(ctx, "POST", adminapi.UserActionPath("bob", "enable"), nil, nil) }},
		{"user.rename", "bob", ResultOK, func() error {
			return tc.admin.Do(ctx, "POST", adminapi.UserActionPath("bob", "rename"), adminapi.RenameRequest{Name: "rob"}, nil)
		}},
		{"node.rename", "web", ResultOK, func() error {
			return tc.admin.Do(ctx, "POST", adminapi.NodeRenamePath("web"), adminapi.RenameRequest{Name: "www"}, nil)
		}},
		{"routes.approve", "www", ResultRefused, func() error {
			return tc.admin.Do(ctx, "POST", adminapi.PathRoutesApprove, adminapi.ApproveRequest{Node: "www", Routes: []string{"192.168.1.0/24"}}, nil)
		}},
		{"policy.set", "p.hujson", ResultOK, func() error {
			return tc.admin.Do(ctx, "POST", adminapi.PathPolicy, adminapi.PolicyRequest{Name: "p.hujson", Body: `{"acls":[{"action":"accept","src":["*"],"dst":["*:*"]}]}`}, nil)
		}},
		{"policy.set", "bad.hujson", ResultRefused, func() error {
			return tc.admin.Do(ctx, "POST", adminapi.PathPolicy, adminapi.PolicyRequest{Name: "bad.hujson", Body: `{"acls":[`}, nil)
		}},
		{"node.expire", "www", ResultOK, func() error { return tc.admin.Do(ctx, "POST", adminapi.NodeExpirePath("www"), nil, nil) }},
		{"node.delete", "www", ResultOK, func() error { return tc.admin.Do(ctx, "DELETE", adminapi.NodePath("www"), nil, nil) }},
		{"node.delete", "nosuch", ResultRefused, func() error { return tc.admin.Do(ctx, "DELETE", adminapi.NodePath("nosuch"), nil, nil) }},
		{"user.delete", "rob", ResultOK, func() error { return tc.admin.Do(ctx, "DELETE", adminapi.UserPath("rob"), nil, nil) }},
		{"apikey.create", "", ResultOK, func() error {
			return tc.admin.Do(ctx, "POST", adminapi.PathAPIKeys, adminapi.CreateAPIKeyRequest{Scope: "read", Expiry: "90d"}, nil)
		}},
		{"apikey.create", "", ResultRefused, func() error {
			return tc.admin.Do(ctx, "POST", adminapi.PathAPIKeys, adminapi.CreateAPIKeyRequest{Scope: "root", Expiry: "90d"}, nil)
		}},
	}
	before, _ := srv.AuditEvents(ctx, store.AuditQuery{})
	for i, st := range steps {
		err := st.run()
		if (err == nil) != (st.result == ResultOK) {
			t.Fatalf("step %d %s %s: err %v, want result %s", i, st.action, st.target, err, st.result)
		}
		// Reads in between add nothing.
		if err := tc.admin.Do(ctx, "GET", adminapi.PathNodes, nil, nil); err != nil {
			t.Fatal(err)
		}
		evs, _ := srv.AuditEvents(ctx, store.AuditQuery{})
		if len(evs) != len(before)+i+1 {
			t.Fatalf("after step %d (%s): %d events, want %d", i, st.action, len(evs), len(before)+i+1)
		}
		e := evs[0]
		target := st.target
		if target == "$key" {
			target = key.ID
		}
		if e.Action != st.action || e.Result != st.result || (target != "" && e.Target != target) ||
			e.ActorKind != "socket" || e.Actor != uid || e.Source != "unix socket" || time.Since(e.Time) > time.Minute {
			t.Errorf("step %d: event %+v, want %s %s %s by socket %s", i, e, st.action, target, st.result, uid)
		}
		if st.result == ResultRefused && e.Detail == "" {
			t.Errorf("step %d: a refused action's event should say why: %+v", i, e)
		}
	}
	// S11: the pre-auth key's secret is in no log line and no event.
	if strings.Contains(logs.String(), key.Key) || key.Key == "" {
		t.Error("the pre-auth key reached coord's log")
	}
	evs, _ := srv.AuditEvents(ctx, store.AuditQuery{})
	for _, e := range evs {
		if strings.Contains(fmt.Sprint(e), key.Key[len(key.Key)-20:]) {
			t.Errorf("secret in audit event %+v", e)
		}
	}
}

// The audit list endpoint filters by actor and since, and caps limit.
func TestAuditListEndpoint(t *testing.T) {
	tc, srv := startCoordWith(t, t.TempDir(), "", &syncBuf{}, nil)
	ctx := context.Background()
	srv.Audit(ctx, Actor{Kind: ActorSystem, Name: "expiry"}, "node.expire", "n1", "", nil)
	tc.newKey(false)
	var all, sys, lim []adminapi.AuditEvent
	if err := tc.admin.Do(ctx, "GET", adminapi.PathAudit, nil, &all); err != nil || len(all) < 2 || all[0].Action != "preauthkey.create" {
		t.Fatalf("audit list: %+v %v", all, err)
	}
	if err := tc.admin.Do(ctx, "GET", adminapi.PathAudit+"?actor=system", nil, &sys); err != nil || len(sys) != 1 || sys[0].Actor != "expiry" {
		t.Fatalf("actor=system: %+v %v", sys, err)
	}
	if err := tc.admin.Do(ctx, "GET", adminapi.PathAudit+"?limit=1&since="+time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), nil, &lim); err != nil || len(lim) != 1 {
		t.Fatalf("limit=1: %+v %v", lim, err)
	}
	for _, q := range []string{"?limit=0", "?limit=x", "?since=yesterday", "?before=-1"} {
		err := tc.admin.Do(ctx, "GET", adminapi.PathAudit+q, nil, nil)
		if err == nil {
			t.Errorf("%s accepted", q)
		}
	}
}

// The log is bounded: pruning keeps at most MaxEvents and nothing older
// than Retention.
func TestAuditRetention(t *testing.T) {
	_, srv := startCoordWith(t, t.TempDir(), "", &syncBuf{}, nil)
	srv.cfg.Audit = AuditConfig{Retention: time.Hour, MaxEvents: 5}
	ctx := context.Background()
	for i := range 8 {
		srv.Audit(ctx, Actor{Kind: ActorSystem, Name: "t"}, "x", fmt.Sprint(i), "", nil)
	}
	srv.pruneAudit()
	evs, _ := srv.AuditEvents(ctx, store.AuditQuery{})
	if len(evs) != 5 || evs[0].Target != "7" {
		t.Fatalf("after prune: %d events, newest %+v; want 5, newest 7", len(evs), evs[0])
	}
	srv.cfg.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	srv.pruneAudit()
	if evs, _ = srv.AuditEvents(ctx, store.AuditQuery{}); len(evs) != 0 {
		t.Fatalf("events older than the retention kept: %d", len(evs))
	}
	if _, err := (AuditConfig{Retention: -1}).withDefaults(); err == nil {
		t.Error("negative retention accepted")
	}
}
