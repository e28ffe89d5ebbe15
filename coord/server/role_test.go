package server

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// TestUserRoles: users are created as admin or member, the role changes
// through the admin API, and bad roles are refused with the fix.
func TestUserRoles(t *testing.T) {
	tc := startCoord(t, t.TempDir(), "", &syncBuf{})
	var u adminapi.User
	if err := tc.do("POST", adminapi.PathUsers, adminapi.CreateUserRequest{Name: "alice", Role: "admin"}, &u); err != nil || u.Role != "admin" {
		t.Fatalf("create admin: %+v %v", u, err)
	}
	if err := tc.do("POST", adminapi.PathUsers, adminapi.CreateUserRequest{Name: "bob"}, &u); err != nil || u.Role != "member" {
		t.Fatalf("create member: %+v %v", u, err)
	}
	if err := tc.do("POST", adminapi.PathUsers, adminapi.CreateUserRequest{Name: "carl", Role: "owner"}, nil); err == nil || !strings.Contains(err.Error(), `want "admin" or "member"`) {
		t.Fatalf("bad role at create: %v", err)
	}
	if err := tc.do("POST", adminapi.UserActionPath("bob", "role"), adminapi.RoleRequest{Role: "admin"}, &u); err != nil || u.Role != "admin" {
		t.Fatalf("make bob admin: %+v %v", u, err)
	}
	if err := tc.do("POST", adminapi.UserActionPath("bob", "role"), adminapi.RoleRequest{}, nil); err == nil {
		t.Fatal("empty role accepted")
	}
	if err := tc.do("POST", adminapi.UserActionPath("nobody", "role"), adminapi.RoleRequest{Role: "member"}, nil); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("unknown user: %v", err)
	}
	var users []adminapi.User
	if err := tc.do("GET", adminapi.PathUsers, nil, &users); err != nil {
		t.Fatal(err)
	}
	roles := map[string]string{}
	for _, u := range users {
		roles[u.Name] = u.Role
	}
	if roles["alice"] != "admin" || roles["bob"] != "admin" || roles["admin"] != "member" {
		t.Fatalf("listed roles: %v", roles)
	}
}

// TestAutogroupAdminFollowsRole: autogroup:admin in an ACL selects the
// untagged devices of users with the admin role. Making alice an admin
// gives bob's node her laptop as a peer and a filter admitting it on 22;
// making her a member again takes both away, each within the usual
// netmap push.
func TestAutogroupAdminFollowsRole(t *testing.T) {
	tc := startCoord(t, t.TempDir(), "", &syncBuf{})
	for _, u := range []adminapi.CreateUserRequest{{Name: "alice", Email: "alice@home.example"}, {Name: "bob"}} {
		if err := tc.do("POST", adminapi.PathUsers, u, nil); err != nil {
			t.Fatal(err)
		}
	}
	laptop := tc.join("alice-laptop", tc.userKey("alice"))
	router := tc.join("alice-router", tc.userKey("alice", "tag:router"))
	srv := tc.join("bob-server", tc.userKey("bob"))
	pol := `{"tagOwners": {"tag:router": ["alice@home.example"]},
	"acls": [{"action": "accept", "src": ["autogroup:admin"], "dst": ["bob@:22"]}]}`
	if err := tc.do("POST", adminapi.PathPolicy, adminapi.PolicyRequest{Name: "p.hujson", Body: pol}, nil); err != nil {
		t.Fatal(err)
	}
	la, ra, sa := laptop.self.Addresses[0].Addr(), router.self.Addresses[0].Addr(), srv.self.Addresses[0].Addr()
	bs := srv.openMap(wire.MapRequest{})
	full := bs.waitFor(t, "bob's full map", func(m *wire.MapMessage) bool { return m.Full })
	if len(full.Peers) != 0 || full.PacketFilter == nil || wire.MatchAny(full.PacketFilter.Inbound, la, sa, wire.ProtoTCP, 22) {
		t.Fatalf("alice is no admin yet, but bob sees %v with filter %+v", peerIDs(full.Peers), full.PacketFilter)
	}

	start := time.Now()
	if err := tc.do("POST", adminapi.UserActionPath("alice", "role"), adminapi.RoleRequest{Role: "admin"}, nil); err != nil {
		t.Fatal(err)
	}
	m := bs.waitFor(t, "alice's laptop after she became admin", func(m *wire.MapMessage) bool {
		return peerIn(m.PeersChanged, laptop.self.ID, func(wire.Node) bool { return true })
	})
	t.Logf("role admin -> bob's delta: %v", time.Since(start))
	if m.PacketFilter == nil || !wire.MatchAny(m.PacketFilter.Inbound, la, sa, wire.ProtoTCP, 22) ||
		wire.MatchAny(m.PacketFilter.Inbound, la, sa, wire.ProtoTCP, 80) ||
		wire.MatchAny(m.PacketFilter.Inbound, ra, sa, wire.ProtoTCP, 22) {
		t.Fatalf("bob's filter after alice became admin (her laptop on 22 only, not her tagged router): %+v", m.PacketFilter)
	}
	if peerIn(m.PeersChanged, router.self.ID, func(wire.Node) bool { return true }) {
		t.Fatal("alice's tagged router became bob's peer: autogroup:admin selects untagged devices only")
	}

	start = time.Now()
	if err := tc.do("POST", adminapi.UserActionPath("alice", "role"), adminapi.RoleRequest{Role: "member"}, nil); err != nil {
		t.Fatal(err)
	}
	m = bs.waitFor(t, "alice's laptop gone after she became member", func(m *wire.MapMessage) bool {
		return slices.Contains(m.PeersRemoved, laptop.self.ID)
	})
	t.Logf("role member -> bob's delta: %v", time.Since(start))
	if m.PacketFilter == nil || wire.MatchAny(m.PacketFilter.Inbound, la, sa, wire.ProtoTCP, 22) {
		t.Fatalf("bob's filter still admits alice after she became member: %+v", m.PacketFilter)
	}
}
