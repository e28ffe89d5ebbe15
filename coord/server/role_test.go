package server

import (
	"strings"
	"testing"

	"github.com/lanmesh/lanmesh/coord/adminapi"
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
