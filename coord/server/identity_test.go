package server

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/internal/wire"
)

func (tc *testCoord) userKey(user string, tags ...string) wire.AuthKey {
	tc.t.Helper()
	var k adminapi.Key
	if err := tc.admin.Do(context.Background(), "POST", adminapi.PathKeys,
		adminapi.CreateKeyRequest{Reusable: true, Tags: tags, Expiry: "1h", User: user}, &k); err != nil {
		tc.t.Fatal(err)
	}
	ak, err := wire.ParseAuthKey(k.Key)
	if err != nil {
		tc.t.Fatal(err)
	}
	return ak
}

func (tc *testCoord) do(method, path string, in, out any) error {
	return tc.admin.Do(context.Background(), method, path, in, out)
}

func peerIDs(nodes []wire.Node) []wire.NodeID {
	var out []wire.NodeID
	for _, n := range nodes {
		out = append(out, n.ID)
	}
	slices.Sort(out)
	return out
}

// TestIdentityACLs drives users, keys, policy versions, renames and LAN
// hosts through the admin API and watches real map streams.
func TestIdentityACLs(t *testing.T) {
	tc := startCoord(t, t.TempDir(), "", &syncBuf{})
	for _, u := range []adminapi.CreateUserRequest{{Name: "alice", Email: "alice@home.example"}, {Name: "bob"}} {
		if err := tc.do("POST", adminapi.PathUsers, u, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := tc.do("POST", adminapi.PathUsers, adminapi.CreateUserRequest{Name: "alice"}, nil); err == nil {
		t.Fatal("duplicate user accepted")
	}
	if err := tc.do("POST", adminapi.PathUsers, adminapi.CreateUserRequest{Name: "Bad Name"}, nil); err == nil {
		t.Fatal("bad user name accepted")
	}
	if err := tc.do("POST", adminapi.PathKeys, adminapi.CreateKeyRequest{Expiry: "1h", User: "nobody"}, nil); err == nil || !strings.Contains(err.Error(), "nobody") {
		t.Fatalf("key for unknown user: %v", err)
	}

	laptop := tc.join("alice-laptop", tc.userKey("alice"))
	phone := tc.join("alice-phone", tc.userKey("alice"))
	router := tc.join("router-a", tc.userKey("alice", "tag:router"))
	bobLaptop := tc.join("bob-laptop", tc.userKey("bob"))
	lan := netip.MustParsePrefix("198.19.1.0/24")

	// S4 under the default policy: each user's devices (their routers
	// included) see each other, never another user's.
	ms := laptop.openMap(wire.MapRequest{})
	full := ms.waitFor(t, "alice's full map", func(m *wire.MapMessage) bool { return m.Full })
	if got, want := peerIDs(full.Peers), []wire.NodeID{phone.self.ID, router.self.ID}; !slices.Equal(got, want) {
		t.Fatalf("alice's laptop sees %v, want %v", got, want)
	}
	if full.PacketFilter == nil || len(full.PacketFilter.Inbound) == 0 || full.Domain != "mesh.internal" {
		t.Fatalf("full map without filter or domain: %+v %q", full.PacketFilter, full.Domain)
	}
	if full.Self.User != "alice@home.example" {
		t.Fatalf("self user %q", full.Self.User)
	}
	bs := bobLaptop.openMap(wire.MapRequest{})
	bfull := bs.waitFor(t, "bob's full map", func(m *wire.MapMessage) bool { return m.Full })
	if len(bfull.Peers) != 0 || bfull.PacketFilter == nil {
		t.Fatalf("bob sees %v (filter %+v)", peerIDs(bfull.Peers), bfull.PacketFilter)
	}

	// The router publishes LAN hosts: only alice's devices, which may
	// reach the LAN, learn them; nothing outside its approved route.
	rs := router.openMap(wire.MapRequest{AdvertiseRoutes: []netip.Prefix{lan}, LANHosts: []wire.LANHost{
		{Name: "nas", Addr: netip.MustParseAddr("198.19.1.10")},
		{Name: "elsewhere", Addr: netip.MustParseAddr("198.19.9.9")},
	}})
	rs.waitFor(t, "router full map", func(m *wire.MapMessage) bool { return m.Full })
	if err := tc.do("POST", adminapi.PathRoutesApprove, adminapi.ApproveRequest{Node: "router-a", Routes: []string{lan.String()}}, nil); err != nil {
		t.Fatal(err)
	}
	ms.waitFor(t, "router's LAN host", func(m *wire.MapMessage) bool {
		return peerIn(m.PeersChanged, router.self.ID, func(n wire.Node) bool {
			return len(n.LANHosts) == 1 && n.LANHosts[0].Name == "nas" && slices.Contains(n.Routes, lan)
		})
	})

	// A failing policy is refused, with its position, and stores nothing.
	bad := `{"acls": [{"action": "accept", "src": ["alice@home.example"], "dst": ["bob@:22"]}],
		"tests": [{"src": "alice@home.example", "deny": ["bob@:22"]}]}`
	err := tc.do("POST", adminapi.PathPolicy, adminapi.PolicyRequest{Name: "bad.hujson", Body: bad}, nil)
	if err == nil || !strings.Contains(err.Error(), "bad.hujson:2:") || !strings.Contains(err.Error(), "test failed") {
		t.Fatalf("failing policy: %v", err)
	}
	if err := tc.do("POST", adminapi.PathPolicy, adminapi.PolicyRequest{Name: "x", Body: "{"}, nil); err == nil {
		t.Fatal("malformed policy accepted")
	}
	var cur adminapi.Policy
	if err := tc.do("GET", adminapi.PathPolicy, nil, &cur); err != nil || !cur.Default {
		t.Fatalf("after refusals: %+v %v", cur, err)
	}

	// A policy where alice's laptop reaches bob's laptop on 22 only, and
	// the phone is cut off from everything.
	pol := `{"tagOwners": {"tag:router": ["alice@home.example"]},
	"acls": [
		{"action": "accept", "src": ["alice@home.example"], "dst": ["bob@:22"]},
		{"action": "accept", "src": ["alice@home.example"], "dst": ["tag:router:*", "198.19.1.0/24:445"]},
	],
	"tests": [{"src": "alice@home.example", "accept": ["bob@:22", "198.19.1.10:445"], "deny": ["bob@:80", "198.19.1.10:22"]}]}`
	var res adminapi.PolicyResult
	if err := tc.do("POST", adminapi.PathPolicyCheck, adminapi.PolicyRequest{Name: "p.hujson", Body: pol}, &res); err != nil || res.Tests != 1 {
		t.Fatalf("check: %+v %v", res, err)
	}
	start := time.Now()
	if err := tc.do("POST", adminapi.PathPolicy, adminapi.PolicyRequest{Name: "p.hujson", Body: pol}, &res); err != nil || res.Version != 1 {
		t.Fatalf("set: %+v %v", res, err)
	}
	// bob gains alice's laptop as a peer (it may send to him) with a new
	// filter admitting port 22 from it.
	m := bs.waitFor(t, "bob's delta", func(m *wire.MapMessage) bool { return m.PacketFilter != nil })
	t.Logf("policy set -> bob's delta: %v", time.Since(start))
	if !peerIn(m.PeersChanged, laptop.self.ID, func(wire.Node) bool { return true }) {
		t.Fatalf("bob did not get alice's laptop: %+v", m)
	}
	la := laptop.self.Addresses[0].Addr()
	ba := bobLaptop.self.Addresses[0].Addr()
	if !wire.MatchAny(m.PacketFilter.Inbound, la, ba, wire.ProtoTCP, 22) || wire.MatchAny(m.PacketFilter.Inbound, la, ba, wire.ProtoTCP, 80) {
		t.Fatalf("bob's filter: %+v", m.PacketFilter)
	}
	// The phone is alice's too, so it gets the same rights: but the laptop
	// has no rule toward the phone any more, and neither has the phone
	// toward the laptop, so they lose each other.
	m = ms.waitFor(t, "laptop's delta", func(m *wire.MapMessage) bool { return m.PacketFilter != nil })
	if !slices.Contains(m.PeersRemoved, phone.self.ID) {
		t.Fatalf("laptop still sees the phone: %+v", m)
	}
	// LAN hosts: reachable on 445 by alice, so still visible.
	var hist []adminapi.Policy
	if err := tc.do("GET", adminapi.PathPolicyHistory, nil, &hist); err != nil || len(hist) != 1 || hist[0].Body != pol {
		t.Fatalf("history: %+v %v", hist, err)
	}

	// Rename: peers get the new name at once.
	if err := tc.do("POST", adminapi.NodeRenamePath("bob-laptop"), adminapi.RenameRequest{Name: "Bad_Name"}, nil); err == nil {
		t.Fatal("bad name accepted")
	}
	if err := tc.do("POST", adminapi.NodeRenamePath("bob-laptop"), adminapi.RenameRequest{Name: "router-a"}, nil); err == nil {
		t.Fatal("taken name accepted")
	}
	if err := tc.do("POST", adminapi.NodeRenamePath("bob-laptop"), adminapi.RenameRequest{Name: "bobs-box"}, nil); err != nil {
		t.Fatal(err)
	}
	ms.waitFor(t, "renamed peer", func(m *wire.MapMessage) bool {
		return peerIn(m.PeersChanged, bobLaptop.self.ID, func(n wire.Node) bool { return n.Name == "bobs-box" })
	})

	// S15: deleting bob removes his node from every netmap in one delta
	// and ends his stream.
	start = time.Now()
	var del adminapi.DeletedUser
	if err := tc.do("DELETE", adminapi.UserPath("bob"), nil, &del); err != nil || len(del.Nodes) != 1 {
		t.Fatalf("delete bob: %+v %v", del, err)
	}
	ms.waitFor(t, "bob's node removed", func(m *wire.MapMessage) bool { return slices.Contains(m.PeersRemoved, bobLaptop.self.ID) })
	t.Logf("user delete -> peer's PeersRemoved: %v", time.Since(start))
	select {
	case <-bs.done:
	case <-time.After(5 * time.Second):
		t.Fatal("deleted user's stream still open")
	}
	var users []adminapi.User
	if err := tc.do("GET", adminapi.PathUsers, nil, &users); err != nil || len(users) != 2 {
		t.Fatalf("users: %+v %v", users, err)
	}
}
