package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
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
