package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

func openTest(t *testing.T) *SQLite {
	t.Helper()
	s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "coord.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestDNSLabel(t *testing.T) {
	for in, want := range map[string]string{
		"Router-A":          "router-a",
		"my_laptop.lan":     "my-laptop",
		"  --weird!!name--": "weird-name",
		"":                  "node",
		"ÄÖÜ":               "node",
		"a..b":              "a",
		"x123456789012345678901234567890123456789012345678901234567890123456789": "x1234567890123456789012345678901234567890123456789012345678",
	} {
		if got := DNSLabel(in); got != want {
			t.Errorf("DNSLabel(%q) = %q, want %q", in, got, want)
		}
	}
}

func newKey(t *testing.T, s Store, id string, reusable bool, exp time.Duration, tags ...string) []byte {
	t.Helper()
	h := sha256.Sum256([]byte("secret-" + id))
	if err := s.CreatePreAuthKey(context.Background(), PreAuthKey{ID: id, Hash: h[:], Reusable: reusable, Tags: tags,
		Expiry: time.Now().Add(exp), Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return h[:]
}

func TestRegister(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	h := newKey(t, s, "k1", true, time.Hour)
	reg := func(host string, mk key.MachinePublic, id string, hash []byte) (Node, error) {
		return s.Register(ctx, Registration{MachineKey: mk, NodeKey: key.NewNode().Public(), Hostname: host,
			AuthKeyID: id, AuthKeyHash: hash, KeyLifetime: time.Hour, Now: time.Now()})
	}
	m1 := key.NewMachine().Public()
	n1, err := reg("Router", m1, "k1", h)
	if err != nil {
		t.Fatal(err)
	}
	if n1.Name != "router" || n1.IPv4.String() != "100.64.0.1" || n1.KeyExpiry.IsZero() {
		t.Fatalf("first node: %+v", n1)
	}
	n2, err := reg("router", key.NewMachine().Public(), "k1", h)
	if err != nil || n2.Name != "router-1" || n2.IPv4.String() != "100.64.0.2" {
		t.Fatalf("second node: %+v %v", n2, err)
	}
	// Same machine again without a key: same node and addresses.
	n1b, err := reg("whatever", m1, "", nil)
	if err != nil || n1b.ID != n1.ID || n1b.IPv4 != n1.IPv4 || n1b.IPv6 != n1.IPv6 || n1b.NodeKey == n1.NodeKey {
		t.Fatalf("re-register: %+v %v", n1b, err)
	}
	if _, err := reg("x", key.NewMachine().Public(), "", nil); !errors.Is(err, ErrNeedAuthKey) {
		t.Fatalf("unknown machine without key: %v", err)
	}
	bad := sha256.Sum256([]byte("wrong"))
	if _, err := reg("x", key.NewMachine().Public(), "k1", bad[:]); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("wrong secret: %v", err)
	}
	if _, err := reg("x", key.NewMachine().Public(), "nope", h); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("unknown key: %v", err)
	}
	he := newKey(t, s, "kexp", false, -time.Minute)
	var ke *KeyExpiredError
	if _, err := reg("x", key.NewMachine().Public(), "kexp", he); !errors.As(err, &ke) {
		t.Fatalf("expired key: %v", err)
	}
	ht := newKey(t, s, "ktag", false, time.Hour, "tag:router")
	n3, err := reg("t", key.NewMachine().Public(), "ktag", ht)
	if err != nil || !n3.KeyExpiry.IsZero() || len(n3.Tags) != 1 {
		t.Fatalf("tagged node: %+v %v", n3, err)
	}

	// Routes: only advertised ones can be approved.
	r := netip.MustParsePrefix("198.19.1.0/24")
	if _, err := s.ApproveRoutes(ctx, n1.ID, []netip.Prefix{r}); !errors.Is(err, ErrNotAdvertised) {
		t.Fatalf("approve unadvertised: %v", err)
	}
	if _, err := s.UpdateNodeStatus(ctx, n1.ID, NodeStatus{AdvertisedRoutes: []netip.Prefix{r}, LastSeen: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ApproveRoutes(ctx, n1.ID, []netip.Prefix{r}); err != nil || len(n.ApprovedRoutes) != 1 {
		t.Fatalf("approve: %+v %v", n, err)
	}
	if err := s.DeleteNode(ctx, n2.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteNode(ctx, n2.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	// A deleted node's address is not reused right away.
	n4, err := reg("y", key.NewMachine().Public(), "k1", h)
	if err != nil || n4.IPv4.String() != "100.64.0.4" {
		t.Fatalf("after delete: %+v %v", n4, err)
	}
}

// S7: a single-use key is checked and consumed in one transaction, so of
// many concurrent registrations exactly one wins.
func TestSingleUseKeyConcurrent(t *testing.T) {
	s := openTest(t)
	h := newKey(t, s, "once", false, time.Hour)
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Register(context.Background(), Registration{MachineKey: key.NewMachine().Public(),
				NodeKey: key.NewNode().Public(), Hostname: "n", AuthKeyID: "once", AuthKeyHash: h, Now: time.Now()})
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrKeyUsed):
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d registrations succeeded with one single-use key, want 1", ok)
	}
}

func TestUsersPolicyRename(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	users, err := s.Users(ctx)
	if err != nil || len(users) != 1 || users[0].Name != DefaultUser || users[0].Login() != "admin@" {
		t.Fatalf("built-in user: %+v %v", users, err)
	}
	for _, tt := range []struct {
		u   User
		err string
	}{
		{User{Name: "alice", Email: "alice@home.example"}, ""},
		{User{Name: "bob"}, ""},
		{User{Name: "alice"}, "already exists"},
		{User{Name: "carol", Email: "ALICE@home.example"}, "already exists"},
		{User{Name: "Bad Name"}, "user name"},
		{User{Name: "dave", Email: "dave"}, "email"},
		{User{Name: "dave", Email: "dave@"}, "email"},
	} {
		_, err := s.CreateUser(ctx, tt.u)
		if (tt.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("CreateUser(%+v) = %v, want %q", tt.u, err, tt.err)
		}
	}
	// A key's nodes belong to its user; unknown users get no key.
	h := sha256.Sum256([]byte("s"))
	if err := s.CreatePreAuthKey(ctx, PreAuthKey{ID: "kb", Hash: h[:], Reusable: true, User: "bob", Expiry: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreatePreAuthKey(ctx, PreAuthKey{ID: "kx", Hash: h[:], User: "nobody", Expiry: time.Now().Add(time.Hour)}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("key for unknown user: %v", err)
	}
	def := newKey(t, s, "kd", true, time.Hour)
	reg := func(host, id string, hash []byte) Node {
		n, err := s.Register(ctx, Registration{MachineKey: key.NewMachine().Public(), NodeKey: key.NewNode().Public(),
			Hostname: host, AuthKeyID: id, AuthKeyHash: hash, Now: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	b1, b2, a1 := reg("b1", "kb", h[:]), reg("b2", "kb", h[:]), reg("a1", "kd", def)
	if b1.User != "bob" || a1.User != DefaultUser {
		t.Fatalf("owners: %q %q", b1.User, a1.User)
	}

	// Rename: a DNS label, unique.
	if _, err := s.RenameNode(ctx, b1.ID, "A1"); err == nil {
		t.Fatal("upper-case name accepted")
	}
	if _, err := s.RenameNode(ctx, b1.ID, "a1"); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("taken name: %v", err)
	}
	if n, err := s.RenameNode(ctx, b1.ID, "bobs-box"); err != nil || n.Name != "bobs-box" {
		t.Fatalf("rename: %+v %v", n, err)
	}

	// LAN hosts round-trip through the node status.
	lh := []wire.LANHost{{Name: "nas", Addr: netip.MustParseAddr("198.19.1.10")}}
	if n, err := s.UpdateNodeStatus(ctx, a1.ID, NodeStatus{LANHosts: lh, LastSeen: time.Now()}); err != nil || len(n.LANHosts) != 1 || n.LANHosts[0] != lh[0] {
		t.Fatalf("lan hosts: %+v %v", n.LANHosts, err)
	}

	// Deleting a user takes their nodes and keys in one go.
	ids, err := s.DeleteUser(ctx, "bob")
	if err != nil || len(ids) != 2 || ids[0] != b1.ID || ids[1] != b2.ID {
		t.Fatalf("delete user: %v %v", ids, err)
	}
	nodes, _ := s.Nodes(ctx)
	keys, _ := s.PreAuthKeys(ctx)
	if len(nodes) != 1 || len(keys) != 1 {
		t.Fatalf("after delete: %d nodes, %d keys", len(nodes), len(keys))
	}
	if _, err := s.DeleteUser(ctx, "bob"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}

	// Policy versions.
	if _, err := s.Policy(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no policy: %v", err)
	}
	for _, body := range []string{"{}", `{"acls": []}`} {
		if _, err := s.SetPolicy(ctx, body, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	p, err := s.Policy(ctx)
	hist, _ := s.PolicyHistory(ctx)
	if err != nil || p.Version != 2 || p.Body != `{"acls": []}` || len(hist) != 2 || hist[0].Body != "{}" {
		t.Fatalf("policy: %+v %v %+v", p, err, hist)
	}
}

// A database made by schema version 1 migrates: its nodes and keys go
// to the built-in user.
func TestMigrateV1(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "coord.db")
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	// Roll the schema back to version 1 by hand, with one v1 node.
	for _, q := range []string{
		`DROP TABLE users`, `DROP TABLE policies`, `DROP INDEX nodes_user`, `DROP INDEX nodes_node_key`, `DROP TABLE identities`, `DROP TABLE audit_events`, `DROP TABLE api_keys`,
		`ALTER TABLE nodes DROP COLUMN lan_hosts`, `ALTER TABLE preauth_keys DROP COLUMN user_name`,
		`ALTER TABLE nodes DROP COLUMN home_region`, `ALTER TABLE preauth_keys DROP COLUMN revoked`,
		`ALTER TABLE preauth_keys DROP COLUMN ephemeral`, `ALTER TABLE nodes DROP COLUMN ephemeral`, `ALTER TABLE nodes DROP COLUMN key_revoked`,
		`DELETE FROM schema_migrations WHERE version >= 2`,
		`INSERT INTO nodes(machine_key, node_key, name, hostname, host, ipv4, ipv6, tags, endpoints, advertised_routes, approved_routes, created)
			VALUES(zeroblob(32), zeroblob(32), 'old', 'old', 1, '100.64.0.1', 'fd00::1', '[]', '[]', '[]', '[]', 0)`,
	} {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	s.Close()
	s, err = OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	nodes, err := s.Nodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].User != DefaultUser {
		t.Fatalf("migrated nodes: %+v %v", nodes, err)
	}
}

// S19: a database from before migration 5 may hold two nodes with one
// node key. Migrating keeps the key with the oldest node, expires the
// others with a key nobody holds, and from then on the key is unique.
func TestMigrateDuplicateNodeKeys(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "coord.db")
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	h := newKey(t, s, "k", true, time.Hour)
	victim, err := s.Register(ctx, Registration{MachineKey: key.NewMachine().Public(), NodeKey: key.NewNode().Public(),
		Hostname: "victim", AuthKeyID: "k", AuthKeyHash: h, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	impostorMK := key.NewMachine().Public()
	if _, err := s.Register(ctx, Registration{MachineKey: impostorMK, NodeKey: key.NewNode().Public(),
		Hostname: "impostor", AuthKeyID: "k", AuthKeyHash: h, Now: now}); err != nil {
		t.Fatal(err)
	}
	// Back to schema 4, where nothing stopped the impostor taking the key.
	for _, q := range []string{`DROP INDEX nodes_node_key`, `DROP TABLE identities`, `DROP TABLE audit_events`, `DROP TABLE api_keys`, `ALTER TABLE users DROP COLUMN idp_groups`,
		`ALTER TABLE users DROP COLUMN admin`, `ALTER TABLE preauth_keys DROP COLUMN ephemeral`, `ALTER TABLE nodes DROP COLUMN ephemeral`, `ALTER TABLE nodes DROP COLUMN key_revoked`,
		`DELETE FROM schema_migrations WHERE version >= 5`,
		`UPDATE nodes SET node_key = (SELECT node_key FROM nodes WHERE name = 'victim') WHERE name = 'impostor'`} {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	s.Close()
	if s, err = OpenSQLite(ctx, path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	nodes, err := s.Nodes(ctx)
	if err != nil || len(nodes) != 2 {
		t.Fatalf("nodes %+v %v", nodes, err)
	}
	v, imp := nodes[0], nodes[1]
	if v.Name != "victim" || v.NodeKey != victim.NodeKey || v.Expired(time.Now()) {
		t.Errorf("the oldest node must keep its key and stay live: %+v", v)
	}
	if imp.NodeKey == victim.NodeKey || !imp.Expired(time.Now().Add(time.Second)) {
		t.Errorf("the later duplicate must get another key and expire: %+v", imp)
	}
	_, err = s.Register(ctx, Registration{MachineKey: impostorMK, NodeKey: victim.NodeKey, AuthKeyID: "k", AuthKeyHash: h, Now: time.Now()})
	if !errors.Is(err, ErrNodeKeyInUse) {
		t.Fatalf("impostor registering the key again: %v, want ErrNodeKeyInUse", err)
	}
}
